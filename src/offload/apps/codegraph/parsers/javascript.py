"""JavaScript, TypeScript and TSX: classes, interfaces, enums, namespaces, functions (also
``const f = () => ...``), methods, ES imports/exports, ``require``, calls and ``new``.

Methods of object literals are not symbols (their calls count for the enclosing definition);
TypeScript overload signatures and interface method signatures have no body and are skipped.
"""

from __future__ import annotations

from offload.apps.codegraph.graph import (
    CLASS,
    ENUM,
    FUNCTION,
    INTERFACE,
    METHOD,
    MODULE,
    Extraction,
    Import,
)
from offload.apps.codegraph.parsers._common import Builder, begin, dotted_callee, text, written

_COMMON = """
(class_declaration name: (_) @name) @item
(class name: (_) @name) @item
(function_declaration name: (identifier) @name) @item
(generator_function_declaration name: (identifier) @name) @item
(method_definition name: (_) @name) @item
(variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression) (generator_function)] @fn) @item
(call_expression function: (_) @callee) @item
(new_expression constructor: (_) @callee) @item
(import_statement) @item
(export_statement) @item
"""
_JS = _COMMON + """
(field_definition property: (_) @name value: [(arrow_function) (function_expression)] @fn) @item
"""
_TS = _COMMON + """
(public_field_definition name: (_) @name value: [(arrow_function) (function_expression)] @fn)
  @item
(abstract_class_declaration name: (_) @name) @item
(interface_declaration name: (_) @name) @item
(enum_declaration name: (_) @name) @item
(internal_module name: (_) @name) @item
"""
(_CLASS_DECL, _CLASS_EXPR, _FUNC, _GEN, _METHOD, _VAR_FN, _CALL, _NEW, _IMPORT, _EXPORT,
 _FIELD_FN, _ABSTRACT, _INTERFACE, _ENUM, _NAMESPACE) = range(15)

_CLASSLIKE = {_CLASS_DECL: CLASS, _CLASS_EXPR: CLASS, _ABSTRACT: CLASS, _INTERFACE: INTERFACE,
              _ENUM: ENUM, _NAMESPACE: MODULE}


def extract(source: bytes, language: str = "javascript") -> Extraction:
    b, found = begin(language, source, _JS if language == "javascript" else _TS)
    symbols = b.symbols
    for start, pattern, node, caps in found:
        if pattern in (_CALL, _NEW):
            callee = caps["callee"][0]
            name = _callee(callee)
            if name == "require" and pattern == _CALL:
                _require(b, node)
            else:
                b.call(b.scope(start), name or written(text(callee)), node)
        elif pattern in _CLASSLIKE:
            name = _name(caps["name"][0])
            index = b.add(_CLASSLIKE[pattern], name, node, b.scope(start))
            _heritage(b, index, node)
            _mark_export(b, index, node)
        elif pattern in (_FUNC, _GEN, _VAR_FN):
            parent = b.scope(start)
            scope_node = caps["fn"][0] if pattern == _VAR_FN else node
            index = b.add(FUNCTION, text(caps["name"][0]), node, parent, _async(scope_node),
                          scope_node=scope_node)
            _mark_export(b, index, node.parent if pattern == _VAR_FN else node)
        elif pattern in (_METHOD, _FIELD_FN):
            owner = node.parent
            if owner is None or owner.type != "class_body":
                continue  # object literal method: not a symbol
            parent = b.scope(start)
            if parent < 0 or symbols[parent].kind not in (CLASS, INTERFACE):
                continue
            fn = caps["fn"][0] if pattern == _FIELD_FN else node
            b.add(METHOD, _name(caps["name"][0]), node, parent, _async(fn))
        elif pattern == _IMPORT:
            _import(b, node)
        elif pattern == _EXPORT:
            _export(b, node, start)
    return b.x


def _name(node) -> str:
    return text(node)


def _async(node) -> dict | None:
    first = node.child(0)
    return {"async": True} if first is not None and first.type == "async" else None


def _callee(node) -> str | None:
    kind = node.type
    if kind in ("identifier", "this", "super"):
        return text(node)
    if kind == "member_expression":
        name = dotted_callee(text(node))
        if name is not None:
            return name
        prop = node.child_by_field_name("property")
        return "?." + text(prop) if prop is not None else None
    return None


def _string(node) -> str | None:
    if node is None or node.type not in ("string", "template_string"):
        return None
    for child in node.named_children:
        if child.type == "string_fragment":
            return text(child)
    return None


def _heritage(b: Builder, index: int, node) -> None:
    for child in node.named_children:
        if child.type in ("class_heritage", "extends_type_clause"):
            for part in child.named_children:
                if part.type == "extends_clause":
                    for value in part.children_by_field_name("value"):
                        _base(b, index, value, "extends")
                elif part.type == "implements_clause":
                    for value in part.named_children:
                        _base(b, index, value, "implements")
                else:
                    _base(b, index, part, "extends")


def _base(b: Builder, index: int, node, via: str) -> None:
    if node.type == "generic_type":
        node = node.child_by_field_name("name") or node.named_children[0]
    name = dotted_callee(text(node))
    if name:
        b.x.bases.append((index, "", name, via, node.start_point[0] + 1))


def _mark_export(b: Builder, index: int, node) -> None:
    parent = node.parent if node is not None else None
    if parent is not None and parent.type == "lexical_declaration":
        parent = parent.parent
    if parent is None or parent.type != "export_statement":
        return
    symbol = b.symbols[index]
    if symbol.parent != -1:
        return
    symbol.props = {**(symbol.props or {}), "exported": True}
    if any(child.type == "default" for child in parent.children):
        b.x.exports["default"] = symbol.local_qn


def _import(b: Builder, node) -> None:
    line = node.start_point[0] + 1
    target = _string(node.child_by_field_name("source"))
    names: list[tuple[str, str]] = []
    alias = None
    for child in node.named_children:
        if child.type == "import_require_clause":  # TS: import fs = require("fs")
            ident = child.named_children[0]
            target = _string(child.child_by_field_name("source"))
            alias = text(ident)
        elif child.type == "import_clause":
            for part in child.named_children:
                if part.type == "identifier":
                    names.append(("default", text(part)))
                elif part.type == "namespace_import":
                    alias = text(part.named_children[0]) if part.named_child_count else None
                elif part.type == "named_imports":
                    for spec in part.named_children:
                        if spec.type == "import_specifier":
                            name = spec.child_by_field_name("name")
                            local = spec.child_by_field_name("alias") or name
                            if name is not None:
                                names.append((text(name), text(local)))
    if target is not None:
        b.x.imports.append(Import(target, line, tuple(names), alias=alias))


def _export(b: Builder, node, start: int) -> None:
    source = _string(node.child_by_field_name("source"))
    line = node.start_point[0] + 1
    clause = next((c for c in node.named_children if c.type == "export_clause"), None)
    if source is not None:  # re-export: export {a as b} from "./x" / export * from "./x"
        names: list[tuple[str, str]] = []
        alias = None
        if clause is not None:
            for spec in clause.named_children:
                name = spec.child_by_field_name("name")
                local = spec.child_by_field_name("alias") or name
                if name is not None:
                    names.append((text(name), text(local)))
        else:
            ns = next((c for c in node.named_children if c.type == "namespace_export"), None)
            if ns is not None and ns.named_child_count:
                alias = text(ns.named_children[-1])
        b.x.imports.append(Import(source, line, tuple(names), alias=alias,
                                  wildcard=clause is None and alias is None))
        return
    if clause is not None:  # export {a, b as c}
        for spec in clause.named_children:
            name = spec.child_by_field_name("name")
            local = spec.child_by_field_name("alias") or name
            if name is not None:
                b.x.exports[text(local)] = text(name)
        return
    value = node.child_by_field_name("value")
    if value is None:
        return
    if value.type == "identifier":
        b.x.exports["default"] = text(value)
    elif value.type in ("function_expression", "arrow_function", "class", "generator_function"):
        if value.type == "class" and value.child_by_field_name("name") is not None:
            return  # a named class expression is a symbol of its own
        kind = CLASS if value.type == "class" else FUNCTION
        index = b.add(kind, "default", value, b.scope(start))
        b.x.exports["default"] = b.symbols[index].local_qn


def _require(b: Builder, node) -> None:
    args = node.child_by_field_name("arguments")
    target = _string(args.named_children[0]) if args is not None and args.named_child_count else None
    if target is None:
        return
    line = node.start_point[0] + 1
    parent = node.parent
    names: list[tuple[str, str]] = []
    alias = None
    if parent is not None and parent.type == "variable_declarator":
        bound = parent.child_by_field_name("name")
        if bound is not None and bound.type == "identifier":
            alias = text(bound)
        elif bound is not None and bound.type == "object_pattern":
            for part in bound.named_children:
                if part.type == "shorthand_property_identifier_pattern":
                    names.append((text(part), text(part)))
                elif part.type == "pair_pattern":
                    key, value = part.child_by_field_name("key"), part.child_by_field_name("value")
                    if key is not None and value is not None and value.type == "identifier":
                        names.append((text(key), text(value)))
    b.x.imports.append(Import(target, line, tuple(names), alias=alias))
