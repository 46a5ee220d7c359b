"""Go: functions, methods (qualified by their receiver type: ``Server.Start``), struct,
interface and other named types, embedding (as INHERITS), imports and calls."""

from __future__ import annotations

from offload.apps.codegraph.graph import (
    FUNCTION,
    INTERFACE,
    METHOD,
    STRUCT,
    TYPE,
    Extraction,
    Import,
)
from offload.apps.codegraph.parsers._common import Builder, begin, dotted_callee, text, written

QUERY = """
(function_declaration name: (identifier) @name) @item
(method_declaration receiver: (parameter_list) @recv name: (field_identifier) @name) @item
(type_spec name: (type_identifier) @name type: (_) @type) @item
(call_expression function: (_) @callee) @item
(import_spec) @item
(package_clause) @item
"""
_FUNC, _METHOD, _TYPE, _CALL, _IMPORT, _PACKAGE = range(6)
_TYPE_KINDS = {"struct_type": STRUCT, "interface_type": INTERFACE}


def extract(source: bytes, language: str = "go") -> Extraction:
    b, found = begin("go", source, QUERY)
    for start, pattern, node, caps in found:
        if pattern == _CALL:
            b.call(b.scope(start), _callee(caps["callee"][0]), node)
        elif pattern == _FUNC:
            b.add(FUNCTION, text(caps["name"][0]), node, b.scope(start))
        elif pattern == _METHOD:
            receiver_type, receiver_var = _receiver(caps["recv"][0])
            props = {"receiver": receiver_type}
            if receiver_var:
                props["receiver_var"] = receiver_var
            b.add(METHOD, text(caps["name"][0]), node, -1, props, prefix=receiver_type)
        elif pattern == _TYPE:
            type_node = caps["type"][0]
            kind = _TYPE_KINDS.get(type_node.type, TYPE)
            index = b.add(kind, text(caps["name"][0]), node, b.scope(start))
            _embedded(b, index, type_node)
        elif pattern == _IMPORT:
            path = node.child_by_field_name("path")
            if path is None:
                continue
            target = text(path).strip('"`')
            name = node.child_by_field_name("name")
            alias = text(name) if name is not None else None
            b.x.imports.append(Import(target, node.start_point[0] + 1,
                                      alias=None if alias in (".", "_") else alias,
                                      wildcard=alias == "."))
        elif pattern == _PACKAGE:
            for child in node.named_children:
                if child.type == "package_identifier":
                    b.x.package = text(child)
    return b.x


def _callee(node) -> str:
    name = dotted_callee(text(node)) if node.type in ("identifier", "selector_expression") else None
    if name is None and node.type == "selector_expression":
        field = node.child_by_field_name("field")
        name = "?." + text(field) if field is not None else None
    return name or written(text(node))


def _receiver(params) -> tuple[str, str | None]:
    for decl in params.named_children:
        if decl.type != "parameter_declaration":
            continue
        type_node = decl.child_by_field_name("type")
        name = decl.child_by_field_name("name")
        while type_node is not None and type_node.type in ("pointer_type", "generic_type",
                                                            "parenthesized_type"):
            inner = type_node.child_by_field_name("type")
            type_node = inner if inner is not None else (
                type_node.named_children[0] if type_node.named_child_count else None)
        if type_node is not None:
            return text(type_node), (text(name) if name is not None else None)
    return "?", None


def _embedded(b: Builder, index: int, type_node) -> None:
    if type_node.type == "struct_type":
        for fields in type_node.named_children:
            if fields.type != "field_declaration_list":
                continue
            for field in fields.named_children:
                if field.type == "field_declaration" and field.child_by_field_name("name") is None:
                    _base(b, index, field.child_by_field_name("type"))
    elif type_node.type == "interface_type":
        for elem in type_node.named_children:
            if elem.type == "type_elem" and elem.named_child_count == 1:
                _base(b, index, elem.named_children[0])


def _base(b: Builder, index: int, node) -> None:
    while node is not None and node.type in ("pointer_type", "generic_type"):
        node = node.child_by_field_name("type") or (
            node.named_children[0] if node.named_child_count else None)
    if node is None or node.type not in ("type_identifier", "qualified_type"):
        return
    name = dotted_callee(text(node))
    if name:
        b.x.bases.append((index, "", name, "embeds", node.start_point[0] + 1))
