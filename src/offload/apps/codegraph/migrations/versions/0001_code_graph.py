"""code graph tables, indexes, and row-level security on PostgreSQL

Revision ID: cg0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "cg0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("code_repositories", "code_files", "code_nodes", "code_edges")
SETTING = "app.current_tenant_id"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _timestamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(),
                     nullable=False)


def upgrade() -> None:
    op.create_table(
        "code_repositories",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("repo_id", sa.String(128), primary_key=True),
        sa.Column("root_path", sa.Text, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("interface_digest", sa.String(32)),
        sa.Column("stats", _json()),
        sa.Column("last_task_id", sa.String(255)),
        sa.Column("indexed_at", sa.DateTime(timezone=True)),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    op.create_table(
        "code_files",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("repo_id", sa.String(128), primary_key=True),
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("line_count", sa.Integer, nullable=False),
        sa.Column("extractor_version", sa.Integer, nullable=False),
        sa.Column("interface_digest", sa.String(32), nullable=False),
        sa.Column("output_digest", sa.String(32), nullable=False),
        sa.Column("interface", sa.LargeBinary, nullable=False),
        sa.Column("extraction", sa.LargeBinary, nullable=False),
        _timestamp("updated_at"),
    )
    op.create_table(
        "code_nodes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("repo_id", sa.String(128), nullable=False),
        sa.Column("qualified_name", sa.Text, nullable=False),
        sa.Column("node_type", sa.String(16), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("start_line", sa.Integer),
        sa.Column("end_line", sa.Integer),
        sa.Column("language", sa.String(16)),
        sa.Column("content_hash", sa.String(32)),
        sa.Column("properties", _json()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
    )
    op.create_index("uq_code_nodes_tenant_repo_qn", "code_nodes",
                    ["tenant_id", "repo_id", "qualified_name"], unique=True)
    op.create_index("ix_code_nodes_tenant_repo_path", "code_nodes",
                    ["tenant_id", "repo_id", "path"])
    op.create_table(
        "code_edges",
        sa.Column("from_node", sa.Uuid, primary_key=True),
        sa.Column("edge_type", sa.String(16), primary_key=True),
        sa.Column("to_name", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("repo_id", sa.String(128), nullable=False),
        sa.Column("to_node", sa.Uuid),
        sa.Column("path", sa.Text),
        sa.Column("properties", _json()),
        _timestamp("created_at"),
    )
    # to_name first: a bare tenant filter (the row-level security policy adds one to every
    # query) can then never pick this index over the primary key
    op.create_index("ix_code_edges_to_name_tenant_repo", "code_edges",
                    ["to_name", "tenant_id", "repo_id"])

    if op.get_bind().dialect.name == "postgresql":
        # Every row is visible to, and writable by, only the tenant named in the transaction's
        # app.current_tenant_id setting. FORCE applies the policy to the table owner too; only
        # superusers and BYPASSRLS roles escape it, so the service must not connect as one.
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_tenant_isolation ON {table} "
                f"USING (tenant_id = current_setting('{SETTING}', true)) "
                f"WITH CHECK (tenant_id = current_setting('{SETTING}', true))"
            )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
