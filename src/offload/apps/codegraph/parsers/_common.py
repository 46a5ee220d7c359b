"""What every language's extractor shares: parsing and querying a file, the scope stack, and a
few text helpers."""

from __future__ import annotations

import re
from typing import Any

from offload.apps.codegraph.graph import Extraction, Symbol
from offload.apps.codegraph.languages import parser_for, query

#: a dotted chain of identifiers (unicode identifiers included)
DOTTED = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")
#: a ``::`` path (Rust)
PATH = re.compile(r"[^\W\d]\w*(?:::[^\W\d]\w*)*")
_SPACE = re.compile(r"\s+")

#: Longest callee text kept; longer chains are cut to their last part.
MAX_NAME = 200
#: Longest text kept of a callee that is no name (``handlers[kind]``, ``make()``, a lambda).
MAX_WRITTEN = 80


def line_count(source: bytes) -> int:
    if not source:
        return 0
    return source.count(b"\n") + (0 if source.endswith(b"\n") else 1)


def text(node: Any) -> str:
    return node.text.decode("utf-8", "replace")


def dotted_callee(raw: str) -> str | None:
    """``raw`` as a dotted name (spaces and optional chaining removed), or None."""
    if "?" in raw:
        raw = raw.replace("?.", ".")
    if DOTTED.fullmatch(raw):
        return raw if len(raw) <= MAX_NAME else "?." + raw.rsplit(".", 1)[-1]
    raw = _SPACE.sub("", raw)
    if DOTTED.fullmatch(raw):
        return raw if len(raw) <= MAX_NAME else "?." + raw.rsplit(".", 1)[-1]
    return None


def written(raw: str) -> str:
    """A callee that is no name, kept as written: ``?`` and its text, spaces collapsed, cut to
    MAX_WRITTEN (the call is unresolved, never dropped)."""
    raw = " ".join(raw.split())
    return "?" + (raw if len(raw) <= MAX_WRITTEN else raw[: MAX_WRITTEN - 3] + "...")


class Builder:
    """Collects one file's extraction while its items are visited in source order.

    Items must be fed sorted by start byte (outer before inner at equal starts); the scope
    stack then tells each item which definition encloses it.
    """

    def __init__(self, language: str, source: bytes, sep: str = ".") -> None:
        self.x = Extraction(language=language, lines=line_count(source))
        self.sep = sep
        self._stack: list[tuple[int, int]] = []  # (end byte, symbol index)
        self._taken: dict[str, int] = {}

    @property
    def symbols(self) -> list[Symbol]:
        return self.x.symbols

    def scope(self, start_byte: int) -> int:
        """Index of the innermost open definition at ``start_byte`` (-1: module level)."""
        stack = self._stack
        while stack and stack[-1][0] <= start_byte:
            stack.pop()
        return stack[-1][1] if stack else -1

    def unique(self, qn: str) -> str:
        count = self._taken.get(qn, 0) + 1
        self._taken[qn] = count
        if count == 1:
            return qn
        candidate = f"{qn}#{count}"
        while candidate in self._taken:  # a literal "x#2" name cannot be written, but be safe
            count += 1
            candidate = f"{qn}#{count}"
        self._taken[candidate] = 1
        return candidate

    def add(
        self,
        kind: str,
        name: str,
        node: Any,
        parent: int,
        props: dict[str, Any] | None = None,
        prefix: str | None = None,
        scope_node: Any = None,
    ) -> int:
        """Record a definition spanning ``node`` inside ``parent``; it becomes the open scope
        until ``scope_node`` (default ``node``) ends. ``prefix`` overrides the parent's
        qualified name (a Go method's receiver type)."""
        if prefix is None:
            prefix = self.x.symbols[parent].local_qn if parent >= 0 else ""
        qn = self.unique(f"{prefix}{self.sep}{name}" if prefix else name)
        index = len(self.x.symbols)
        self.x.symbols.append(
            Symbol(kind, name, qn, node.start_point[0] + 1, _end_line(node), parent, props)
        )
        self._stack.append(((scope_node or node).end_byte, index))
        return index

    def call(self, caller: int, callee: str | None, node: Any) -> None:
        if callee:
            self.x.calls.append((caller, callee, node.start_point[0] + 1))


def _end_line(node: Any) -> int:
    row, column = node.end_point
    return row + 1 if column or row == node.start_point[0] else row


def begin(language: str, source: bytes, query_source: str,
          sep: str = ".") -> tuple[Builder, list[tuple[int, int, Any, dict[str, list[Any]]]]]:
    """Parse ``source``: a :class:`Builder` for its extraction (syntax errors counted) and the
    matches of ``query_source`` in source order, outer before inner, as (start byte, pattern,
    the ``@item`` node, captures)."""
    import tree_sitter

    tree = parser_for(language).parse(source)
    b = Builder(language, source, sep)
    b.x.errors = int(tree.root_node.has_error)
    found = []
    for pattern, captures in tree_sitter.QueryCursor(query(language, query_source)).matches(
            tree.root_node):
        node = captures["item"][0]
        found.append((node.start_byte, -node.end_byte, pattern, node, captures))
    found.sort(key=lambda m: (m[0], m[1]))
    return b, [(start, pattern, node, caps) for start, _end, pattern, node, caps in found]
