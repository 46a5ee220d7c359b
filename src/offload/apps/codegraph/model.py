"""The tables of the code graph (SQLAlchemy 2). The schema itself is owned by the Alembic
migrations in ``migrations/``; these models describe it for queries.

``code_nodes`` and ``code_edges`` keep the table and column names users of the original
ingestion service already query (``tenant_id``, ``repo_id``, ``qualified_name``, ``node_type``,
``properties``, ``from_node``, ``to_node``, ``edge_type``), with real columns for what gets
queried. ``code_files`` and ``code_repositories`` are codegraph's bookkeeping for incremental
re-indexing.

Node ids are derived from (tenant, repository, qualified name), so a symbol keeps its id across
re-indexing and edges from unchanged files stay valid. Edges have no foreign keys: the writer
replaces a file's rows in one transaction and keeps references whole (checked by the tests);
FK triggers on ~300k edge rows would cost more than the insert itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = JSON().with_variant(JSONB(), "postgresql")
TENANT_LEN, REPO_LEN = 64, 128


class Base(DeclarativeBase):
    pass


class CodeRepository(Base):
    __tablename__ = "code_repositories"

    tenant_id: Mapped[str] = mapped_column(String(TENANT_LEN), primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(REPO_LEN), primary_key=True)
    root_path: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    interface_digest: Mapped[str | None] = mapped_column(String(32))
    stats: Mapped[dict | None] = mapped_column(JSONType)
    last_task_id: Mapped[str | None] = mapped_column(String(255))
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CodeFile(Base):
    __tablename__ = "code_files"

    tenant_id: Mapped[str] = mapped_column(String(TENANT_LEN), primary_key=True)
    repo_id: Mapped[str] = mapped_column(String(REPO_LEN), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    language: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    line_count: Mapped[int] = mapped_column(Integer)
    extractor_version: Mapped[int] = mapped_column(Integer)
    interface_digest: Mapped[str] = mapped_column(String(32))
    output_digest: Mapped[str] = mapped_column(String(32))
    interface: Mapped[bytes] = mapped_column(LargeBinary)
    extraction: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CodeNode(Base):
    __tablename__ = "code_nodes"
    __table_args__ = (
        Index("uq_code_nodes_tenant_repo_qn", "tenant_id", "repo_id", "qualified_name",
              unique=True),
        Index("ix_code_nodes_tenant_repo_path", "tenant_id", "repo_id", "path"),
    )

    id: Mapped[object] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_LEN))
    repo_id: Mapped[str] = mapped_column(String(REPO_LEN))
    qualified_name: Mapped[str] = mapped_column(Text)
    node_type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(Text)
    path: Mapped[str | None] = mapped_column(Text)
    start_line: Mapped[int | None] = mapped_column(Integer)
    end_line: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(16))
    content_hash: Mapped[str | None] = mapped_column(String(32))
    properties: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CodeEdge(Base):
    __tablename__ = "code_edges"
    __table_args__ = (
        Index("ix_code_edges_to_name_tenant_repo", "to_name", "tenant_id", "repo_id"),
    )

    from_node: Mapped[object] = mapped_column(Uuid, primary_key=True)
    edge_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    to_name: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(TENANT_LEN))
    repo_id: Mapped[str] = mapped_column(String(REPO_LEN))
    to_node: Mapped[object | None] = mapped_column(Uuid)
    path: Mapped[str | None] = mapped_column(Text)
    properties: Mapped[dict | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


TENANT_TABLES = ("code_repositories", "code_files", "code_nodes", "code_edges")
