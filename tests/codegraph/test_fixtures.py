"""Each language's fixture repository yields exactly the graph written out by hand in its
EXPECTED file: every node with its lines, every CONTAINS, IMPORTS, INHERITS and CALLS edge,
resolved where the repository defines the target, external or unresolved otherwise."""

from __future__ import annotations

import pytest

from .graphkit import FIXTURES, build_graph, expected, render

LANGUAGES = ["python", "javascript", "typescript", "go", "rust", "java"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_fixture_graph_matches_hand_written_expectation(language: str) -> None:
    want_nodes, want_edges = expected(language)
    got_nodes, got_edges = render(*build_graph(FIXTURES / language))
    assert (sorted(got_nodes - want_nodes), sorted(want_nodes - got_nodes)) == ([], [])
    assert (sorted(got_edges - want_edges), sorted(want_edges - got_edges)) == ([], [])


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_duplicate_rows(language: str) -> None:
    nodes, edges = build_graph(FIXTURES / language)
    assert len({n[0] for n in nodes}) == len(nodes)
    assert len({(e[0], e[2], e[3]) for e in edges}) == len(edges)
