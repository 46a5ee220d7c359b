"""Storage of the code graph: bulk writes, tenant scoping, repository state.

Every function takes the SQLAlchemy ``AsyncConnection`` of the caller's transaction; the
caller decides when to commit, which is how a re-index stays atomic (one transaction per
repository: readers see the old graph or the new one, never half of it).

PostgreSQL: each transaction first runs ``set_config('app.current_tenant_id', tenant, true)``
(the ``SET LOCAL`` the row-level-security policies key on). Rows go in with ``COPY`` into a
temporary staging table, then one ``INSERT ... SELECT`` per table: ``COPY FROM`` into a table
with row-level security is refused by PostgreSQL for roles the policies apply to, while the
``INSERT`` is checked against them. SQLite: ``executemany`` in the same transaction.
Buffers are flushed every ``batch_rows`` rows, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, any_, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from offload.apps.codegraph.graph import dumps
from offload.apps.codegraph.model import CodeEdge, CodeFile, CodeNode, CodeRepository
from offload.apps.codegraph.resolve import EdgeRow, NodeRow, node_id_bytes

NODE_COLUMNS = ("id", "tenant_id", "repo_id", "qualified_name", "node_type", "name", "path",
                "start_line", "end_line", "language", "content_hash", "properties")
EDGE_COLUMNS = ("from_node", "edge_type", "to_name", "tenant_id", "repo_id", "to_node", "path",
                "properties")
FILE_COLUMNS = ("tenant_id", "repo_id", "path", "language", "content_hash", "size_bytes",
                "line_count", "extractor_version", "interface_digest", "output_digest",
                "interface", "extraction")
SQLITE_MAX_VARIABLES = 900


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def scope_tenant(conn: AsyncConnection, tenant_id: str) -> None:
    """Bind the current transaction to ``tenant_id`` for row-level security (PostgreSQL)."""
    if is_postgres(conn):
        await conn.execute(text("SELECT set_config('app.current_tenant_id', :t, true)"),
                           {"t": tenant_id})


async def bypasses_rls(conn: AsyncConnection) -> bool:
    """True when the connected PostgreSQL role escapes row-level security (superuser or
    BYPASSRLS): tenant isolation then rests on the WHERE clauses alone."""
    if not is_postgres(conn):
        return False
    row = (await conn.execute(text(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"))).first()
    return bool(row and row[0])


# --- state ---------------------------------------------------------------------------------


@dataclass(slots=True)
class FileState:
    content_hash: str
    language: str
    extractor_version: int
    interface_digest: str
    output_digest: str
    size_bytes: int
    line_count: int


@dataclass(slots=True)
class RepoState:
    generation: int
    interface_digest: str | None
    root_path: str | None
    files: dict[str, FileState]


async def load_state(conn: AsyncConnection, tenant_id: str, repo_id: str) -> RepoState:
    """What is stored for a repository (an empty state when it was never indexed)."""
    repo = (await conn.execute(
        select(CodeRepository.generation, CodeRepository.interface_digest,
               CodeRepository.root_path)
        .where(CodeRepository.tenant_id == tenant_id, CodeRepository.repo_id == repo_id)
    )).first()
    rows = await conn.execute(
        select(CodeFile.path, CodeFile.content_hash, CodeFile.language, CodeFile.extractor_version,
               CodeFile.interface_digest, CodeFile.output_digest, CodeFile.size_bytes,
               CodeFile.line_count)
        .where(CodeFile.tenant_id == tenant_id, CodeFile.repo_id == repo_id)
    )
    files = {row[0]: FileState(*row[1:]) for row in rows}
    if repo is None:
        return RepoState(0, None, None, files)
    return RepoState(repo[0], repo[1], repo[2], files)


async def load_blobs(
    conn: AsyncConnection, tenant_id: str, repo_id: str, paths: Sequence[str], column: str,
    batch: int = 200,
) -> AsyncIterator[tuple[str, bytes]]:
    """(path, blob) of stored files' ``interface`` or ``extraction``, ``batch`` at a time."""
    attribute = getattr(CodeFile, column)
    for start in range(0, len(paths), batch):
        chunk = list(paths[start:start + batch])
        rows = await conn.execute(
            select(CodeFile.path, attribute).where(
                CodeFile.tenant_id == tenant_id, CodeFile.repo_id == repo_id,
                CodeFile.path.in_(chunk))
        )
        for path, blob in rows:
            yield path, blob


async def lock_repository(conn: AsyncConnection, tenant_id: str, repo_id: str,
                          root_path: str) -> int:
    """Take the repository's write lock for this transaction; return its generation.

    The first statement writes (an upsert), so on SQLite the transaction holds the database's
    write lock from here on; PostgreSQL locks the row.
    """
    table = CodeRepository.__table__
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    await conn.execute(
        insert(table).values(tenant_id=tenant_id, repo_id=repo_id, root_path=root_path,
                             generation=0).on_conflict_do_nothing()
    )
    query = select(CodeRepository.generation).where(
        CodeRepository.tenant_id == tenant_id, CodeRepository.repo_id == repo_id)
    if is_postgres(conn):
        query = query.with_for_update()
    return int((await conn.execute(query)).scalar_one())


async def finish_repository(conn: AsyncConnection, tenant_id: str, repo_id: str, *,
                            generation: int, root_path: str, interface_digest: str,
                            stats: dict[str, Any], task_id: str | None) -> None:
    now = datetime.now(UTC)
    await conn.execute(
        update(CodeRepository)
        .where(CodeRepository.tenant_id == tenant_id, CodeRepository.repo_id == repo_id)
        .values(generation=generation, root_path=root_path, interface_digest=interface_digest,
                stats=stats, last_task_id=task_id, indexed_at=now, updated_at=now)
    )


# --- deletes -------------------------------------------------------------------------------


def _from_owned_nodes(tenant_id: str, repo_id: str, condition: Any) -> Any:
    """``from_node = ANY(ARRAY(SELECT id ...))``: one primary-key lookup per owned node,
    whatever the planner's statistics say (right after a bulk load they are stale)."""
    ids = select(CodeNode.id).where(CodeNode.tenant_id == tenant_id,
                                    CodeNode.repo_id == repo_id, condition)
    return CodeEdge.from_node == any_(func.array(ids.scalar_subquery()))


async def delete_owned(conn: AsyncConnection, tenant_id: str, repo_id: str,
                       paths: Sequence[str], *, files_too: bool) -> None:
    """Delete the nodes ``paths`` own, every edge starting at them, and (``files_too``) their
    code_files rows. An edge always belongs to the file of its ``from_node``."""
    pg = is_postgres(conn)
    step = max(1, len(paths)) if pg else SQLITE_MAX_VARIABLES
    for start in range(0, len(paths), step):
        chunk = list(paths[start:start + step])

        def among(column: Any, chunk: list[str] = chunk) -> Any:
            if pg:  # one array parameter, however many paths
                return column == any_(bindparam("paths", chunk, type_=ARRAY(Text)))
            return column.in_(chunk)

        await conn.execute(delete(CodeEdge).where(
            _from_owned_nodes(tenant_id, repo_id, among(CodeNode.path)) if pg else
            CodeEdge.from_node.in_(select(CodeNode.id).where(
                CodeNode.tenant_id == tenant_id, CodeNode.repo_id == repo_id,
                among(CodeNode.path)))))
        await conn.execute(delete(CodeNode).where(
            CodeNode.tenant_id == tenant_id, CodeNode.repo_id == repo_id, among(CodeNode.path)))
        if files_too:
            await conn.execute(delete(CodeFile).where(
                CodeFile.tenant_id == tenant_id, CodeFile.repo_id == repo_id,
                among(CodeFile.path)))


async def delete_repo_level(conn: AsyncConnection, tenant_id: str, repo_id: str) -> None:
    """Delete the rows no file owns (repository, packages, external modules, their edges)."""
    repo_level = CodeNode.path.is_(None)
    await conn.execute(delete(CodeEdge).where(
        _from_owned_nodes(tenant_id, repo_id, repo_level) if is_postgres(conn) else
        CodeEdge.from_node.in_(select(CodeNode.id).where(
            CodeNode.tenant_id == tenant_id, CodeNode.repo_id == repo_id, repo_level))))
    await conn.execute(delete(CodeNode).where(
        CodeNode.tenant_id == tenant_id, CodeNode.repo_id == repo_id, CodeNode.path.is_(None)))


async def delete_repository(conn: AsyncConnection, tenant_id: str, repo_id: str) -> int:
    """Remove a repository's whole graph; return the number of node rows deleted."""
    count = 0
    for model in (CodeEdge, CodeNode, CodeFile, CodeRepository):
        result = await conn.execute(delete(model).where(
            model.tenant_id == tenant_id, model.repo_id == repo_id))
        if model is CodeNode:
            count = result.rowcount or 0
    return count


# --- bulk writes ---------------------------------------------------------------------------


class RowEncoder:
    """Turns graph rows into the tuples the database takes: ids derived from qualified names,
    properties as JSON text. Pure CPU work, safe to run in a producer thread."""

    def __init__(self, tenant_id: str, repo_id: str, postgres: bool) -> None:
        self.tenant_id, self.repo_id = tenant_id, repo_id
        self.postgres = postgres
        self._ids: dict[str, Any] = {}

    def id(self, qn: str) -> Any:
        found = self._ids.get(qn)
        if found is None:
            # hex text for both: SQLite stores it as is (SQLAlchemy's Uuid on SQLite), asyncpg
            # parses it in C; it also pickles cheaply (the producer may be another process)
            found = node_id_bytes(self.tenant_id, self.repo_id, qn).hex()
            if len(self._ids) < 500_000:
                self._ids[qn] = found
        return found

    def nodes(self, rows: Iterable[NodeRow]) -> list[tuple]:
        t, r, ident = self.tenant_id, self.repo_id, self.id
        return [(ident(qn), t, r, qn, kind, name, path, start, end, language, chash,
                 dumps(props) if props is not None else None)
                for qn, kind, name, path, start, end, language, chash, props in rows]

    def edges(self, rows: Iterable[EdgeRow]) -> list[tuple]:
        t, r, ident = self.tenant_id, self.repo_id, self.id
        return [(ident(from_qn), kind, to_name, t, r,
                 ident(to_qn) if to_qn is not None else None, path,
                 dumps(props) if props is not None else None)
                for from_qn, to_qn, kind, to_name, path, props in rows]

    def file(self, row: tuple) -> tuple:
        """A code_files row given FILE_COLUMNS[2:]."""
        return (self.tenant_id, self.repo_id, *row)


class BulkWriter:
    """Writes encoded batches: COPY into a staging table then INSERT (PostgreSQL), executemany
    (SQLite). Counts what it wrote."""

    def __init__(self, conn: AsyncConnection, tenant_id: str, repo_id: str) -> None:
        self.conn = conn
        self.tenant_id, self.repo_id = tenant_id, repo_id
        self.pg = is_postgres(conn)
        self._staged = False
        self._raw: Any = None
        self.nodes_written = 0
        self.edges_written = 0

    async def write_nodes(self, rows: list[tuple]) -> None:
        if rows:
            await self._write("code_nodes", NODE_COLUMNS, rows)
            self.nodes_written += len(rows)

    async def write_edges(self, rows: list[tuple]) -> None:
        if rows:
            await self._write("code_edges", EDGE_COLUMNS, rows)
            self.edges_written += len(rows)

    async def write_files(self, rows: list[tuple]) -> None:
        if not rows:
            return
        columns = ", ".join(FILE_COLUMNS)
        if self.pg:
            driver = await self._driver()
            placeholders = ", ".join(f"${i}" for i in range(1, len(FILE_COLUMNS) + 1))
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in FILE_COLUMNS[3:])
            await driver.executemany(
                f"INSERT INTO code_files ({columns}) VALUES ({placeholders}) "
                f"ON CONFLICT (tenant_id, repo_id, path) DO UPDATE SET {updates}, "
                "updated_at = now()", rows)
        else:
            placeholders = ", ".join("?" for _ in FILE_COLUMNS)
            await self.conn.exec_driver_sql(
                f"INSERT OR REPLACE INTO code_files ({columns}) VALUES ({placeholders})", rows)

    async def set_output_digests(self, digests: dict[str, str]) -> None:
        if not digests:
            return
        stmt = (update(CodeFile.__table__)
                .where(CodeFile.tenant_id == bindparam("t"), CodeFile.repo_id == bindparam("r"),
                       CodeFile.path == bindparam("p"))
                .values(output_digest=bindparam("d")))
        await self.conn.execute(stmt, [{"t": self.tenant_id, "r": self.repo_id, "p": p, "d": d}
                                       for p, d in digests.items()])

    async def _driver(self) -> Any:
        if self._raw is None:
            raw = await self.conn.get_raw_connection()
            self._raw = raw.driver_connection
        return self._raw

    async def _write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not self.pg:
            placeholders = ", ".join("?" for _ in columns)
            await self.conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)
            return
        driver = await self._driver()
        stage = f"codegraph_stage_{table}"
        if not self._staged:
            # temporary tables have no row-level security; the INSERT below is checked.
            # Only the copied columns, no constraints: the real table checks on INSERT.
            await driver.execute(
                "CREATE TEMP TABLE IF NOT EXISTS codegraph_stage_code_nodes ON COMMIT DROP AS "
                f"SELECT {', '.join(NODE_COLUMNS)} FROM code_nodes WITH NO DATA;"
                "CREATE TEMP TABLE IF NOT EXISTS codegraph_stage_code_edges ON COMMIT DROP AS "
                f"SELECT {', '.join(EDGE_COLUMNS)} FROM code_edges WITH NO DATA")
            self._staged = True
        await driver.copy_records_to_table(stage, records=rows, columns=list(columns))
        names = ", ".join(columns)
        await driver.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}; "
                             f"TRUNCATE {stage}")




__all__ = [
    "BulkWriter",
    "FileState",
    "RepoState",
    "RowEncoder",
    "bypasses_rls",
    "delete_owned",
    "delete_repo_level",
    "delete_repository",
    "dumps",
    "finish_repository",
    "load_blobs",
    "load_state",
    "lock_repository",
    "scope_tenant",
]
