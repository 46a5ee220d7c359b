"""Which languages codegraph reads, how files map to them, and their tree-sitter grammars.

Grammars come from the installed wheels (``tree-sitter-python`` ...); nothing is downloaded at
run time. Parsers are cached per thread: a tree-sitter parser must not be shared between
threads, and building one is cheap but not free.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

#: file extension (lower case, with the dot) -> language name
EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}

LANGUAGES = ("python", "javascript", "typescript", "tsx", "go", "rust", "java")


def family(language: str) -> str:
    """Languages that share modules and names: JavaScript, TypeScript and TSX are ``js``."""
    return "js" if language in ("javascript", "typescript", "tsx") else language


def language_of(path: str) -> str | None:
    """The language of ``path`` by its extension, or None when codegraph does not read it."""
    dot = path.rfind(".")
    if dot <= path.rfind("/"):
        return None
    return EXTENSIONS.get(path[dot:].lower())


@cache
def grammar(language: str) -> Any:
    """The tree-sitter ``Language`` of ``language`` (from its grammar wheel)."""
    import tree_sitter

    if language == "python":
        import tree_sitter_python as module

        return tree_sitter.Language(module.language())
    if language == "javascript":
        import tree_sitter_javascript as module

        return tree_sitter.Language(module.language())
    if language in ("typescript", "tsx"):
        import tree_sitter_typescript as module

        raw = module.language_tsx() if language == "tsx" else module.language_typescript()
        return tree_sitter.Language(raw)
    if language == "go":
        import tree_sitter_go as module

        return tree_sitter.Language(module.language())
    if language == "rust":
        import tree_sitter_rust as module

        return tree_sitter.Language(module.language())
    if language == "java":
        import tree_sitter_java as module

        return tree_sitter.Language(module.language())
    raise ValueError(f"unsupported language {language!r}; known: {', '.join(LANGUAGES)}")


_local = threading.local()


def parser_for(language: str) -> Any:
    """A tree-sitter parser for ``language``, private to the calling thread."""
    parsers = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        import tree_sitter

        parser = parsers[language] = tree_sitter.Parser(grammar(language))
    return parser


@cache
def query(language: str, source: str) -> Any:
    import tree_sitter

    return tree_sitter.Query(grammar(language), source)
