"""Python through :mod:`ast`, for the rare file that tree-sitter's grammar misreads.

tree-sitter-python recovers from what it takes for syntax errors; on valid code that trips the
grammar (about one file of the 1,800 in the standard library: a continuation line dedented
inside parentheses) that recovery loses definitions. When the tree has an error and Python
itself can parse the file, this extractor produces the same :class:`Extraction` from ``ast``.
"""

from __future__ import annotations

import ast
import warnings

from offload.apps.codegraph.graph import CLASS, FUNCTION, METHOD, Extraction, Import, Symbol
from offload.apps.codegraph.parsers._common import MAX_NAME, line_count, written

_DEFS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def extract_with_ast(source: bytes) -> Extraction | None:
    """The extraction of ``source`` by :mod:`ast`, or None if Python cannot parse it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    x = Extraction(language="python", lines=line_count(source))
    x.errors = 0
    taken: dict[str, int] = {}
    # Definitions first, in source order, so numbering of repeated names matches tree-sitter.
    defs: list[tuple[int, int, ast.AST, int]] = []

    def collect(node: ast.AST, parent: int) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _DEFS):
                defs.append((child.lineno, child.col_offset, child, parent))
                collect(child, id(child))
            else:
                collect(child, parent)

    collect(tree, -1)
    defs.sort(key=lambda d: (d[0], d[1]))
    index_of: dict[int, int] = {}
    for _line, _col, node, parent_key in defs:
        parent = index_of.get(parent_key, -1)
        if isinstance(node, ast.ClassDef):
            kind = CLASS
        else:
            in_class = parent >= 0 and x.symbols[parent].kind == CLASS
            kind = METHOD if in_class else FUNCTION
        base = f"{x.symbols[parent].local_qn}.{node.name}" if parent >= 0 else node.name
        count = taken.get(base, 0) + 1
        taken[base] = count
        props = {}
        if isinstance(node, ast.AsyncFunctionDef):
            props["async"] = True
        decorators = [_name(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list]
        if any(decorators):
            props["decorators"] = [d for d in decorators if d]
        index_of[id(node)] = len(x.symbols)
        x.symbols.append(Symbol(kind, node.name, base if count == 1 else f"{base}#{count}",
                                node.lineno, node.end_lineno or node.lineno, parent,
                                props or None))
        if isinstance(node, ast.ClassDef):
            for b in node.bases:
                name = _name(b)
                if name:
                    x.bases.append((index_of[id(node)], "", name, "extends", b.lineno))

    text = source.decode("utf-8", "replace")

    def visit(node: ast.AST, scope: int) -> None:
        if isinstance(node, ast.Call):
            name = _callee(node.func) or written(
                ast.get_source_segment(text, node.func) or ast.unparse(node.func))
            x.calls.append((scope, name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                x.imports.append(Import(alias.name, node.lineno, alias=alias.asname))
        elif isinstance(node, ast.ImportFrom):
            names = tuple((a.name, a.asname or a.name) for a in node.names if a.name != "*")
            wildcard = any(a.name == "*" for a in node.names)
            x.imports.append(Import(node.module or "", node.lineno, names, level=node.level,
                                    wildcard=wildcard))
        if isinstance(node, _DEFS):
            # decorators run in the enclosing scope; the rest lies inside the definition
            decorators = {id(d) for d in node.decorator_list}
            for d in node.decorator_list:
                visit(d, scope)
            scope = index_of[id(node)]
            for child in ast.iter_child_nodes(node):
                if id(child) not in decorators:
                    visit(child, scope)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, -1)
    x.calls.sort(key=lambda c: c[2])
    return x


def _name(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        name = ".".join(reversed(parts))
        return name if len(name) <= MAX_NAME else None
    return None


def _callee(func: ast.AST) -> str | None:
    name = _name(func)
    if name:
        return name
    if isinstance(func, ast.Attribute):
        value = func.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "super"):
            return "super()." + func.attr
        return "?." + func.attr
    return None
