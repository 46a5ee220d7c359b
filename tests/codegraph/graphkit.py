"""Helpers for codegraph tests: build a repository's graph in memory, render graphs as the
lines of a fixture's EXPECTED file, read those files back."""

from __future__ import annotations

from pathlib import Path

from offload.apps.codegraph.graph import Extraction
from offload.apps.codegraph.naming import name_files
from offload.apps.codegraph.parsers import extract
from offload.apps.codegraph.resolve import FileData, Index, file_rows, repo_rows
from offload.apps.codegraph.scanner import read_source, scan

FIXTURES = Path(__file__).parent / "fixtures"


def build_graph(root: Path) -> tuple[list[tuple], list[tuple]]:
    """All node rows and edge rows of ``root`` (no database involved)."""
    found = scan(root, 2_000_000)
    files, full = {}, extractions(root)
    for source in found.files:
        data, digest = read_source(root, source.path, 2_000_000)
        assert data is not None
        files[source.path] = FileData(source.path, source.language, digest, len(data),
                                      full[source.path])
    naming = name_files({p: f.language for p, f in files.items()},
                        {p: f.x.package for p, f in files.items()}, found.manifests,
                        root.name)
    index = Index(files, naming)
    nodes, edges = repo_rows(index, "fixture", str(root))
    for path in sorted(files):
        n, e = file_rows(index, path, full[path])
        nodes += n
        edges += e
    return nodes, edges


def extractions(root: Path) -> dict[str, Extraction]:
    """What the parsers find in each source file of ``root``."""
    out = {}
    for source in scan(root, 2_000_000).files:
        data, _digest = read_source(root, source.path, 2_000_000)
        assert data is not None
        out[source.path] = extract(data, source.language)
    return out


def render_node(qn: str, kind: str, start: int | None, end: int | None) -> str:
    return f"{kind} {qn}" + (f" {start}-{end}" if start is not None else "")


def render_edge(kind: str, from_qn: str, to_qn: str | None, to_name: str,
                props: dict | None) -> str:
    if props and props.get("resolution") == "external":
        target = f"ext:{to_name}"
    elif to_qn is None:
        target = to_name if to_name.startswith("?") else f"?{to_name}"
    else:
        target = to_qn
    return f"{kind} {from_qn} -> {target}"


def render(nodes: list[tuple], edges: list[tuple]) -> tuple[set[str], set[str]]:
    node_lines = {render_node(qn, kind, start, end)
                  for qn, kind, _name, _path, start, end, *_ in nodes}
    edge_lines = {render_edge(kind, from_qn, to_qn, to_name, props)
                  for from_qn, to_qn, kind, to_name, _path, props in edges}
    return node_lines, edge_lines


def expected(name: str) -> tuple[set[str], set[str]]:
    nodes, edges = set(), set()
    for line in (FIXTURES / name / "EXPECTED").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        (edges if " -> " in line else nodes).add(line)
    return nodes, edges
