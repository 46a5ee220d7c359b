"""codegraph: ingest a source repository into a per-tenant code graph.

A background task (:mod:`.tasks`) scans a repository (:mod:`.scanner`), parses every source
file with tree-sitter (:mod:`.parsers`, one extractor per language), resolves imports, calls and
inheritance across files (:mod:`.resolve`) and stores nodes and edges per tenant in PostgreSQL
or SQLite (:mod:`.store`), incrementally and atomically per repository. :mod:`.api` serves the
graph over HTTP, :mod:`.cli` from the ``offload`` command.

Built only on offload's public API; see docs/codegraph.md.
"""
