"""The code graph's vocabulary: what a parser extracts from one file.

A parser turns one file's bytes into an :class:`Extraction`: its symbols (classes, functions,
methods, ... with names *local* to the file's module, e.g. ``Class.method``), its imports, the
calls made inside each symbol and the base classes each class names. Nothing here knows the
file's path, module or repository; :mod:`offload.apps.codegraph.resolve` turns extractions of a
whole repository into stored nodes and edges. An extraction is a pure function of the file's
content and language, which is what makes incremental re-indexing by content hash sound.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

#: Bump when extraction output changes: stored extractions of an older version are re-parsed.
EXTRACTOR_VERSION = 2

REPOSITORY, PACKAGE, MODULE, FILE = "repository", "package", "module", "file"
CLASS, STRUCT, INTERFACE, TRAIT, ENUM, TYPE = "class", "struct", "interface", "trait", "enum", "type"
FUNCTION, METHOD = "function", "method"

#: Every node type, in the order the docs list them.
NODE_TYPES = (REPOSITORY, PACKAGE, MODULE, FILE, CLASS, STRUCT, INTERFACE, TRAIT, ENUM, TYPE,
              FUNCTION, METHOD)
#: Node types that can own methods and be inherited from.
TYPE_KINDS = frozenset({CLASS, STRUCT, INTERFACE, TRAIT, ENUM, TYPE})
#: Node types whose body is a call scope.
CALLABLE_KINDS = frozenset({FUNCTION, METHOD})

CONTAINS, IMPORTS, CALLS, INHERITS = "CONTAINS", "IMPORTS", "CALLS", "INHERITS"
EDGE_TYPES = (CONTAINS, IMPORTS, CALLS, INHERITS)


@dataclass(slots=True)
class Symbol:
    """A definition in a file. ``local_qn`` is unique within the file: a repeated name in the
    same scope (a property setter, a Java overload, a Go ``init``) gets ``#2``, ``#3``, ..."""

    kind: str
    name: str
    local_qn: str
    start_line: int
    end_line: int
    parent: int = -1  # index of the enclosing symbol in Extraction.symbols, -1 = the file
    props: dict[str, Any] | None = None


@dataclass(slots=True)
class Import:
    """One imported module or item, as written.

    ``target`` is the module path in the language's own spelling (``os.path``, ``./util``,
    ``fmt``, ``crate::a::b``, ``java.util.List``); ``names`` are ``(name, local alias)`` pairs
    for ``from m import a as b`` style imports; ``alias`` the local name bound to the module
    itself; ``level`` the leading dots of a Python relative import.
    """

    target: str
    line: int
    names: tuple[tuple[str, str], ...] = ()
    alias: str | None = None
    level: int = 0
    wildcard: bool = False


@dataclass(slots=True)
class Extraction:
    """Everything a parser found in one file."""

    language: str
    lines: int
    symbols: list[Symbol] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    #: (caller symbol index or -1 for module level, callee as written, line)
    calls: list[tuple[int, str, int]] = field(default_factory=list)
    #: (class symbol index or -1, class name when the index is -1, base as written, via, line)
    bases: list[tuple[int, str, str, str, int]] = field(default_factory=list)
    #: declared package (Go ``package x``, Java ``package a.b;``)
    package: str | None = None
    #: exported name -> local qualified name (JavaScript/TypeScript ``export default`` etc.)
    exports: dict[str, str] = field(default_factory=dict)
    #: syntax errors tree-sitter recovered from (the file was still extracted)
    errors: int = 0

    # --- compact storage form (a stored extraction lets unchanged files skip parsing) --------
    def interface(self) -> dict[str, Any]:
        """What resolving *other* files depends on: names, kinds, nesting, imports, bases,
        exports, package; no line numbers, so an edit that only moves code leaves it alone."""
        return {
            "language": self.language,
            "package": self.package,
            "symbols": [[s.kind, s.name, s.local_qn, s.parent, _receiver(s)] for s in self.symbols],
            "imports": [[i.target, [list(n) for n in i.names], i.alias, i.level, i.wildcard]
                        for i in self.imports],
            "bases": [list(b[:4]) for b in self.bases],
            "exports": self.exports,
        }

    def to_data(self) -> dict[str, Any]:
        """Plain lists and dicts (what :meth:`to_blob` stores and workers send back)."""
        return {
            "v": EXTRACTOR_VERSION,
            "language": self.language,
            "lines": self.lines,
            "package": self.package,
            "exports": self.exports,
            "errors": self.errors,
            "symbols": [[s.kind, s.name, s.local_qn, s.start_line, s.end_line, s.parent, s.props]
                        for s in self.symbols],
            "imports": [[i.target, i.line, [list(n) for n in i.names], i.alias, i.level,
                         i.wildcard] for i in self.imports],
            "calls": self.calls,
            "bases": self.bases,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Extraction:
        return cls(
            language=data["language"],
            lines=data["lines"],
            package=data["package"],
            exports=data["exports"],
            errors=data["errors"],
            symbols=[Symbol(*row) for row in data["symbols"]],
            imports=[Import(t, ln, tuple(tuple(n) for n in names), alias, level, wild)
                     for t, ln, names, alias, level, wild in data["imports"]],
            calls=_tuples(data["calls"]),
            bases=_tuples(data["bases"]),
        )

    def to_blob(self) -> bytes:
        """The stored form: compressed JSON (portable, safe to load)."""
        return zlib.compress(json.dumps(self.to_data(), separators=(",", ":")).encode(), 1)

    @classmethod
    def from_blob(cls, blob: bytes) -> Extraction:
        return cls.from_data(json.loads(zlib.decompress(blob)))


def _json_encoder() -> Any:
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    quote = getattr(encoder, "c_encode_basestring", None)
    if make is None or quote is None:  # pragma: no cover - no C accelerator
        plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        return plain
    # the C encoder json.dumps builds on every call, built once (no cycle check: our values
    # are plain dicts of ints, strings and lists)
    c_encode = make(None, None, quote, None, ":", ",", False, False, True)

    def fast(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return fast


dumps = _json_encoder()


def _tuples(rows: list) -> list:
    """JSON gives lists where the pickled form already has tuples."""
    if rows and isinstance(rows[0], tuple):
        return rows
    return [tuple(row) for row in rows]


def _receiver(symbol: Symbol) -> list[str | None] | None:
    if not symbol.props or "receiver" not in symbol.props:
        return None
    return [symbol.props["receiver"], symbol.props.get("receiver_var")]
