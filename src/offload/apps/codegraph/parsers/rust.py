"""Rust: functions, methods of ``impl`` blocks (``Type::method``), structs, unions, enums,
traits (with their method signatures), inline modules, ``use`` trees, calls; ``impl Trait for
Type`` and supertraits become INHERITS. Names are joined with ``::``. Macro invocations are
not calls."""

from __future__ import annotations

import re

from offload.apps.codegraph.graph import (
    ENUM,
    FUNCTION,
    METHOD,
    MODULE,
    STRUCT,
    TRAIT,
    Extraction,
    Import,
)
from offload.apps.codegraph.parsers._common import (
    MAX_NAME,
    PATH,
    Builder,
    begin,
    dotted_callee,
    text,
    written,
)

QUERY = """
(function_item name: (identifier) @name) @item
(function_signature_item name: (identifier) @name) @item
(struct_item name: (type_identifier) @name) @item
(union_item name: (type_identifier) @name) @item
(enum_item name: (type_identifier) @name) @item
(trait_item name: (type_identifier) @name) @item
(impl_item type: (_) @type) @item
(mod_item name: (identifier) @name body: (declaration_list)) @item
(call_expression function: (_) @callee) @item
(use_declaration argument: (_) @arg) @item
(extern_crate_declaration) @item
"""
(_FN, _FN_SIG, _STRUCT, _UNION, _ENUM, _TRAIT, _IMPL, _MOD, _CALL, _USE, _EXTERN) = range(11)
_GENERIC_ARGS = re.compile(r"::<[^<>]*(?:<[^<>]*>[^<>]*)*>")
_KINDS = {_STRUCT: STRUCT, _UNION: STRUCT, _ENUM: ENUM, _TRAIT: TRAIT, _MOD: MODULE}


def extract(source: bytes, language: str = "rust") -> Extraction:
    b, found = begin("rust", source, QUERY, sep="::")
    symbols = b.symbols
    impls: list[tuple[int, int, str]] = []  # (start byte, end byte, type local name) open impls
    for start, pattern, node, caps in found:
        while impls and impls[-1][1] <= start:
            impls.pop()
        if pattern == _CALL:
            callee = caps["callee"][0]
            b.call(b.scope(start), _callee(callee) or written(text(callee)), node)
        elif pattern in (_FN, _FN_SIG):
            parent = b.scope(start)
            name = text(caps["name"][0])
            holder = node.parent.parent if node.parent is not None else None
            if holder is not None and holder.type == "impl_item" and impls:
                prefix = impls[-1][2]
                if parent >= 0:
                    prefix = f"{symbols[parent].local_qn}::{prefix}"
                b.add(METHOD, name, node, -1, {"receiver": impls[-1][2]}, prefix=prefix)
            elif holder is not None and holder.type == "trait_item" and parent >= 0:
                b.add(METHOD, name, node, parent)
            elif pattern == _FN:
                b.add(FUNCTION, name, node, parent)
        elif pattern in _KINDS:
            index = b.add(_KINDS[pattern], text(caps["name"][0]), node, b.scope(start))
            if pattern == _TRAIT:
                bounds = node.child_by_field_name("bounds")
                for bound in bounds.named_children if bounds is not None else ():
                    _base(b, index, "", bound, "extends")
        elif pattern == _IMPL:
            type_name = _type_name(caps["type"][0])
            if type_name is None:
                continue
            parent = b.scope(start)
            impls.append((start, node.end_byte, type_name))
            trait = node.child_by_field_name("trait")
            if trait is not None:
                owner = f"{symbols[parent].local_qn}::{type_name}" if parent >= 0 else type_name
                _base(b, -1, owner, trait, "implements")
        elif pattern == _USE:
            line = node.start_point[0] + 1
            for path, alias, wildcard in _use_tree(caps["arg"][0], ""):
                b.x.imports.append(Import(path, line, alias=alias, wildcard=wildcard))
        elif pattern == _EXTERN:
            name = node.child_by_field_name("name")
            alias = node.child_by_field_name("alias")
            if name is not None:
                b.x.imports.append(Import(text(name), node.start_point[0] + 1,
                                          alias=text(alias) if alias is not None else None))
    return b.x


def _type_name(node) -> str | None:
    while node is not None and node.type in ("generic_type", "reference_type", "pointer_type"):
        node = node.child_by_field_name("type")
    if node is None or node.type not in ("type_identifier", "scoped_type_identifier"):
        return None
    name = text(node)
    return name.rsplit("::", 1)[-1]


def _callee(node) -> str | None:
    kind = node.type
    if kind == "generic_function":
        inner = node.child_by_field_name("function")
        return _callee(inner) if inner is not None else None
    if kind in ("identifier", "scoped_identifier", "self"):
        raw = "".join(text(node).split())
        if "<" in raw:
            raw = _GENERIC_ARGS.sub("", raw)
        if PATH.fullmatch(raw) and len(raw) <= MAX_NAME:
            return raw
        name = node.child_by_field_name("name")
        return "?::" + text(name) if name is not None else None
    if kind == "field_expression":
        name = dotted_callee(text(node))
        if name is not None:
            return name
        field = node.child_by_field_name("field")
        return "?." + text(field) if field is not None else None
    return None


def _base(b: Builder, index: int, owner: str, node, via: str) -> None:
    while node is not None and node.type == "generic_type":
        node = node.child_by_field_name("type")
    if node is None or node.type not in ("type_identifier", "scoped_type_identifier"):
        return
    b.x.bases.append((index, owner, "".join(text(node).split()), via, node.start_point[0] + 1))


def _use_tree(node, prefix: str) -> list[tuple[str, str | None, bool]]:
    kind = node.type
    if kind in ("identifier", "scoped_identifier", "crate", "self", "super", "metavariable"):
        path = prefix + "".join(text(node).split())
        if path.endswith("::self"):
            path = path[: -len("::self")]
            return [(path, path.rsplit("::", 1)[-1], False)]
        return [(path, None, False)]
    if kind == "use_as_clause":
        path = node.child_by_field_name("path")
        alias = node.child_by_field_name("alias")
        if path is None:
            return []
        return [(prefix + "".join(text(path).split()), text(alias) if alias else None, False)]
    if kind == "use_wildcard":
        inner = node.named_children[0] if node.named_child_count else None
        path = prefix + ("".join(text(inner).split()) if inner is not None else "")
        return [(path.rstrip(":"), None, True)]
    if kind == "scoped_use_list":
        path = node.child_by_field_name("path")
        listing = node.child_by_field_name("list")
        inner_prefix = prefix + ("".join(text(path).split()) + "::" if path is not None else "")
        return _use_tree(listing, inner_prefix) if listing is not None else []
    if kind == "use_list":
        out: list[tuple[str, str | None, bool]] = []
        for child in node.named_children:
            out.extend(_use_tree(child, prefix))
        return out
    return []
