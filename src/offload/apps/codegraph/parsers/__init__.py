"""One extractor per language, each built on its tree-sitter grammar wheel.

``extract(source, language)`` is the single entry point; it never raises on bad input
(tree-sitter recovers from syntax errors and :attr:`Extraction.errors` counts them).
"""

from __future__ import annotations

from collections.abc import Callable

from offload.apps.codegraph.graph import Extraction


def _extractor(language: str) -> Callable[[bytes, str], Extraction]:
    if language == "python":
        from offload.apps.codegraph.parsers.python import extract
    elif language in ("javascript", "typescript", "tsx"):
        from offload.apps.codegraph.parsers.javascript import extract
    elif language == "go":
        from offload.apps.codegraph.parsers.go import extract
    elif language == "rust":
        from offload.apps.codegraph.parsers.rust import extract
    elif language == "java":
        from offload.apps.codegraph.parsers.java import extract
    else:
        raise ValueError(f"no extractor for language {language!r}")
    return extract


def extract(source: bytes, language: str) -> Extraction:
    """The symbols, imports, calls and bases of one file of ``language``."""
    return _extractor(language)(source, language)


def preload() -> None:
    """Import every extractor and load every grammar (before forking workers)."""
    from offload.apps.codegraph.languages import LANGUAGES, grammar

    for language in LANGUAGES:
        _extractor(language)
        grammar(language)


__all__ = ["extract", "preload"]
