"""Python: classes, functions and methods (nested ones included), imports, calls, bases.

Qualified names follow the nesting of definitions, ``Class.method`` and ``outer.inner``;
a function directly inside a class body (also under ``if``/``try`` there) is a method. This is
exactly what :mod:`ast` finds, which tests/codegraph/test_python_vs_ast.py checks.
"""

from __future__ import annotations

from offload.apps.codegraph.graph import CLASS, FUNCTION, METHOD, Extraction, Import
from offload.apps.codegraph.parsers._common import Builder, begin, dotted_callee, text, written

QUERY = """
(class_definition name: (identifier) @name) @item
(function_definition name: (identifier) @name) @item
(call function: (_) @callee) @item
(import_statement) @item
(import_from_statement) @item
(future_import_statement) @item
(type_alias_statement left: (_) @left) @item
"""
_CLASS, _FUNCTION, _CALL, _TYPE_ALIAS = 0, 1, 2, 6


def extract(source: bytes, language: str = "python") -> Extraction:
    b, found = begin("python", source, QUERY)
    symbols = b.symbols
    for start, pattern, node, caps in found:
        if pattern == _CALL:
            b.call(b.scope(start), _callee(caps["callee"][0]), node)
        elif pattern == _FUNCTION:
            parent = b.scope(start)
            kind = METHOD if parent >= 0 and symbols[parent].kind == CLASS else FUNCTION
            index = b.add(kind, text(caps["name"][0]), node, parent, _props(node))
            _trim_comments(b, index, node, source)
        elif pattern == _CLASS:
            index = b.add(CLASS, text(caps["name"][0]), node, b.scope(start), _props(node))
            _trim_comments(b, index, node, source)
            bases = node.child_by_field_name("superclasses")
            if bases is not None:
                for base in bases.named_children:
                    if base.type in ("identifier", "attribute"):
                        name = dotted_callee(text(base))
                        if name:
                            b.x.bases.append((index, "", name, "extends",
                                              base.start_point[0] + 1))
        elif pattern == _TYPE_ALIAS:
            # the grammar reads `type(obj).attr = value` as a PEP 695 alias `type X = ...`
            left = caps["left"][0]
            if left.named_child_count and left.named_children[0].type not in (
                    "identifier", "generic_type"):
                b.call(b.scope(start), "type", node)
        else:
            b.x.imports.extend(_imports(node))
    if b.x.errors:
        from offload.apps.codegraph.parsers.python_ast import extract_with_ast

        fallback = extract_with_ast(source)
        if fallback is not None:
            return fallback
    return b.x


def _trim_comments(b: Builder, index: int, node, source: bytes) -> None:
    """tree-sitter lets a block swallow the comment lines after its last statement; the
    definition really ends at its last token that is not a comment (as in ``ast``)."""
    end = node.end_byte
    line_start = source.rfind(b"\n", 0, end) + 1
    if not source[line_start:end].lstrip().startswith(b"#"):
        return
    n = node
    while n.child_count:
        i = n.child_count - 1
        child = n.child(i)
        while child.type == "comment" and i > 0:
            i -= 1
            child = n.child(i)
        n = child
    b.symbols[index].end_line = n.end_point[0] + 1


def _props(node) -> dict | None:
    props = {}
    first = node.child(0)
    if first is not None and first.type == "async":
        props["async"] = True
    parent = node.parent
    if parent is not None and parent.type == "decorated_definition":
        decorators = []
        for child in parent.named_children:
            if child.type == "decorator" and child.named_child_count:
                expr = child.named_children[0]
                if expr.type == "call":
                    expr = expr.child_by_field_name("function") or expr
                name = dotted_callee(text(expr))
                if name:
                    decorators.append(name)
        if decorators:
            props["decorators"] = decorators
    return props or None


def _callee(node) -> str:
    name = dotted_callee(text(node))
    if name is not None:
        return name
    attribute = node.child_by_field_name("attribute") if node.type == "attribute" else None
    if attribute is None:
        return written(text(node))
    obj = node.child_by_field_name("object")
    if obj is not None and obj.type == "call":
        function = obj.child_by_field_name("function")
        if function is not None and function.type == "identifier" and text(function) == "super":
            return "super()." + text(attribute)
    return "?." + text(attribute)


def _imports(node) -> list[Import]:
    line = node.start_point[0] + 1
    if node.type == "import_statement":
        out = []
        for child in node.children_by_field_name("name"):
            if child.type == "aliased_import":
                name = child.child_by_field_name("name")
                alias = child.child_by_field_name("alias")
                out.append(Import(_dotted(name), line, alias=text(alias) if alias else None))
            else:
                out.append(Import(_dotted(child), line))
        return out
    level, target, wildcard = 0, "", False
    if node.type == "future_import_statement":
        target = "__future__"
    else:
        module = node.child_by_field_name("module_name")
        if module is not None and module.type == "relative_import":
            for child in module.named_children:
                if child.type == "import_prefix":
                    level = text(child).count(".")
                else:
                    target = _dotted(child)
        elif module is not None:
            target = _dotted(module)
    names = []
    for child in node.children_by_field_name("name"):
        if child.type == "aliased_import":
            name = _dotted(child.child_by_field_name("name"))
            alias = child.child_by_field_name("alias")
            names.append((name, text(alias) if alias else name))
        else:
            name = _dotted(child)
            names.append((name, name))
    for child in node.named_children:
        if child.type == "wildcard_import":
            wildcard = True
    return [Import(target, line, tuple(names), level=level, wildcard=wildcard)]


def _dotted(node) -> str:
    return "".join(text(node).split()) if node is not None else ""
