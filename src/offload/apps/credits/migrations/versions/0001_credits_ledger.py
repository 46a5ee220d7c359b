"""credits ledger: accounts, transactions, holds, usage rates

Revision ID: 0001
Revises:
Create Date: 2026-01-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
ACCOUNT_FK = (["tenant", "user_id"], ["credit_accounts.tenant", "credit_accounts.user_id"])


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "credit_accounts",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("subscription_tier", sa.String(16), nullable=False),
        sa.Column("credits_balance", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(
            "subscription_tier IN ('free', 'standard', 'premium')",
            name="ck_credit_accounts_tier",
        ),
        sa.CheckConstraint("credits_balance >= 0", name="ck_credit_accounts_balance_not_negative"),
        sa.PrimaryKeyConstraint("tenant", "user_id", name="pk_credit_accounts"),
    )
    op.create_table(
        "credit_usage_rates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("endpoint_path", sa.String(255), nullable=False),
        sa.Column("credits_per_request", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("credits_per_request > 0", name="ck_credit_usage_rates_cost_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_credit_usage_rates"),
        sa.UniqueConstraint("endpoint_path", name="uq_credit_usage_rates_endpoint_path"),
    )
    op.create_table(
        "credit_holds",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(255), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "(status = 'active' AND is_active) OR (status <> 'active' AND NOT is_active)",
            name="ck_credit_holds_active_flag",
        ),
        sa.CheckConstraint(
            "status IN ('active', 'committed', 'released', 'expired')",
            name="ck_credit_holds_status",
        ),
        sa.CheckConstraint("amount > 0", name="ck_credit_holds_amount_positive"),
        sa.ForeignKeyConstraint(
            *ACCOUNT_FK, name="fk_credit_holds_tenant_credit_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credit_holds"),
    )
    op.create_index("ix_credit_holds_account", "credit_holds", ["tenant", "user_id"])
    op.create_index(
        "ix_credit_holds_expiring",
        "credit_holds",
        ["expires_at"],
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "credit_transactions",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("synced_to_analytics", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reference_id", sa.String(64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status <> 'pending' OR amount <= 0", name="ck_credit_transactions_pending_is_debit"
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'failed')", name="ck_credit_transactions_status"
        ),
        sa.CheckConstraint(
            "type IN ('addition', 'deduction', 'hold', 'release', 'monthly_allocation', "
            "'api_usage', 'feature_access', 'refund')",
            name="ck_credit_transactions_type",
        ),
        sa.CheckConstraint(
            "balance_after >= 0", name="ck_credit_transactions_balance_after_not_negative"
        ),
        sa.ForeignKeyConstraint(
            *ACCOUNT_FK, name="fk_credit_transactions_tenant_credit_accounts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credit_transactions"),
        sa.UniqueConstraint(
            "tenant", "user_id", "idempotency_key", name="uq_credit_transactions_idempotency"
        ),
    )
    op.create_index(
        "ix_credit_transactions_account", "credit_transactions", ["tenant", "user_id", "id"]
    )
    op.create_index(
        "ix_credit_transactions_pending",
        "credit_transactions",
        ["created_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_credit_transactions_reference", "credit_transactions", ["reference_id"])
    op.create_index(
        "ix_credit_transactions_unsynced",
        "credit_transactions",
        ["id"],
        postgresql_where=sa.text("status = 'completed' AND NOT synced_to_analytics"),
        sqlite_where=sa.text("status = 'completed' AND NOT synced_to_analytics"),
    )


def downgrade() -> None:
    op.drop_table("credit_transactions")
    op.drop_table("credit_holds")
    op.drop_table("credit_usage_rates")
    op.drop_table("credit_accounts")
