"""Java: classes, interfaces, enums, records, annotation types (nested ones as ``Outer.Inner``),
methods and constructors (overloads numbered ``#2`` ...), method calls, ``new``, imports
(static ones as members of their class), ``extends``/``implements``. Methods of anonymous
classes are not symbols: their calls count for the enclosing method."""

from __future__ import annotations

from offload.apps.codegraph.graph import (
    CLASS,
    ENUM,
    INTERFACE,
    METHOD,
    TYPE_KINDS,
    Extraction,
    Import,
)
from offload.apps.codegraph.parsers._common import Builder, begin, dotted_callee, text, written

QUERY = """
(class_declaration name: (identifier) @name) @item
(interface_declaration name: (identifier) @name) @item
(enum_declaration name: (identifier) @name) @item
(record_declaration name: (identifier) @name) @item
(annotation_type_declaration name: (identifier) @name) @item
(method_declaration name: (identifier) @name) @item
(constructor_declaration name: (identifier) @name) @item
(method_invocation name: (identifier) @name) @item
(object_creation_expression type: (_) @type) @item
(explicit_constructor_invocation) @item
(import_declaration) @item
(package_declaration) @item
"""
(_CLASS, _INTERFACE, _ENUM, _RECORD, _ANNOTATION, _METHOD, _CTOR, _CALL, _NEW, _EXPLICIT,
 _IMPORT, _PACKAGE) = range(12)
_KINDS = {_CLASS: CLASS, _INTERFACE: INTERFACE, _ENUM: ENUM, _RECORD: CLASS,
          _ANNOTATION: INTERFACE}


def extract(source: bytes, language: str = "java") -> Extraction:
    b, found = begin("java", source, QUERY)
    symbols = b.symbols
    for start, pattern, node, caps in found:
        if pattern == _CALL:
            b.call(b.scope(start), _invocation(node, caps["name"][0]), node)
        elif pattern == _NEW:
            created = caps["type"][0]
            b.call(b.scope(start), _type_name(created) or written(text(created)), node)
        elif pattern == _EXPLICIT:
            ctor = node.child_by_field_name("constructor")
            if ctor is not None and ctor.type in ("super", "this"):
                b.call(b.scope(start), text(ctor), node)
        elif pattern in _KINDS:
            index = b.add(_KINDS[pattern], text(caps["name"][0]), node, b.scope(start))
            _bases(b, index, node)
        elif pattern in (_METHOD, _CTOR):
            parent = b.scope(start)
            if parent < 0 or symbols[parent].kind not in TYPE_KINDS:
                continue  # a method of an anonymous class
            props = {"constructor": True} if pattern == _CTOR else None
            b.add(METHOD, text(caps["name"][0]), node, parent, props)
        elif pattern == _IMPORT:
            _import(b, node)
        elif pattern == _PACKAGE:
            for child in node.named_children:
                if child.type in ("scoped_identifier", "identifier"):
                    b.x.package = "".join(text(child).split())
    return b.x


def _invocation(node, name_node) -> str | None:
    name = text(name_node)
    obj = node.child_by_field_name("object")
    if obj is None:
        return name
    if obj.type in ("this", "super"):
        return f"{text(obj)}.{name}"
    if obj.type in ("identifier", "field_access", "scoped_identifier"):
        dotted = dotted_callee(text(obj))
        if dotted is not None:
            return f"{dotted}.{name}"
    return "?." + name


def _type_name(node) -> str | None:
    if node.type == "generic_type":
        node = node.named_children[0] if node.named_child_count else None
    if node is None or node.type not in ("type_identifier", "scoped_type_identifier"):
        return None
    return dotted_callee(text(node))


def _bases(b: Builder, index: int, node) -> None:
    for child in node.named_children:
        if child.type == "superclass":
            via = "extends"
        elif child.type == "super_interfaces":
            via = "implements"
        elif child.type == "extends_interfaces":
            via = "extends"
        else:
            continue
        for part in child.named_children:
            types = part.named_children if part.type == "type_list" else [part]
            for type_node in types:
                name = _type_name(type_node)
                if name:
                    b.x.bases.append((index, "", name, via, type_node.start_point[0] + 1))


def _import(b: Builder, node) -> None:
    path = None
    static = wildcard = False
    for child in node.children:
        if child.type == "static":
            static = True
        elif child.type == "asterisk":
            wildcard = True
        elif child.type in ("scoped_identifier", "identifier"):
            path = "".join(text(child).split())
    if path is None:
        return
    line = node.start_point[0] + 1
    if static and not wildcard and "." in path:
        owner, member = path.rsplit(".", 1)
        b.x.imports.append(Import(owner, line, ((member, member),)))
    else:
        b.x.imports.append(Import(path, line, wildcard=wildcard))
