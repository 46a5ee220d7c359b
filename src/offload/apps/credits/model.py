"""The credit ledger's tables (SQLAlchemy 2), one consistent model.

Accounts are keyed by ``(tenant, user_id)``: ``user_id`` is the tenant's own name for its user,
so two tenants may both have a user ``"42"`` and still never share an account. Every other row
carries the same pair (with a foreign key to the account), so each query can filter by tenant.

Money is an integer count of credits (``BigInteger``), never a float. The database itself
refuses a negative balance, a non-positive hold, a pending credit, and unknown enum values.

Ledger invariant (tests check it after every scenario)::

    account.credits_balance == sum(t.amount for t in account's transactions
                                   if t.status in ("pending", "completed"))   and   >= 0

A ``failed`` transaction has been reverted (its amount returned to the balance), so it no
longer counts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

TIERS = ("free", "standard", "premium")
TRANSACTION_TYPES = (
    "addition",
    "deduction",
    "hold",
    "release",
    "monthly_allocation",
    "api_usage",
    "feature_access",
    "refund",
)
TRANSACTION_STATUSES = ("pending", "completed", "failed")
HOLD_STATUSES = ("active", "committed", "released", "expired")
#: Pending transactions of these types are completed when they grow old; others are reverted.
SETTLE_AS_COMPLETED = ("api_usage", "feature_access")

# Only these statuses count towards the balance (see the module docstring).
COUNTED_STATUSES = ("pending", "completed")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Credits = BigInteger


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class CreditAccount(_Timestamps, Base):
    """One user's balance within one tenant."""

    __tablename__ = "credit_accounts"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subscription_tier: Mapped[str] = mapped_column(String(16), default="free", nullable=False)
    credits_balance: Mapped[int] = mapped_column(Credits, default=0, nullable=False)
    #: Bumped on every change of the row; clients may use it as an ETag.
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    __table_args__ = (
        CheckConstraint("credits_balance >= 0", name="balance_not_negative"),
        CheckConstraint(_in("subscription_tier", TIERS), name="tier"),
    )


class CreditTransaction(_Timestamps, Base):
    """One signed movement of credits; ``balance_after`` is the balance right after it."""

    __tablename__ = "credit_transactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    amount: Mapped[int] = mapped_column(Credits, nullable=False)
    balance_after: Mapped[int] = mapped_column(Credits, nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="completed", nullable=False)
    synced_to_analytics: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
    #: What this movement refers to, e.g. the hold it places, commits or releases.
    reference_id: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    #: Client-chosen key, unique per account: a retried call finds its first result here.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "user_id"],
            ["credit_accounts.tenant", "credit_accounts.user_id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("tenant", "user_id", "idempotency_key", name="uq_credit_transactions_idempotency"),
        CheckConstraint(_in("type", TRANSACTION_TYPES), name="type"),
        CheckConstraint(_in("status", TRANSACTION_STATUSES), name="status"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        # A pending transaction is always a debit: reverting it can only give credits back.
        CheckConstraint("status <> 'pending' OR amount <= 0", name="pending_is_debit"),
        Index("ix_credit_transactions_account", "tenant", "user_id", "id"),
        Index(
            "ix_credit_transactions_pending",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_credit_transactions_unsynced",
            "id",
            postgresql_where=text("status = 'completed' AND NOT synced_to_analytics"),
            sqlite_where=text("status = 'completed' AND NOT synced_to_analytics"),
        ),
        Index("ix_credit_transactions_reference", "reference_id"),
    )


class CreditHold(_Timestamps, Base):
    """Credits reserved for an operation: taken from the balance when placed, then either
    committed (kept) or released/expired (given back) exactly once."""

    __tablename__ = "credit_holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(String(128), nullable=False)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    amount: Mapped[int] = mapped_column(Credits, nullable=False)
    operation: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant", "user_id"],
            ["credit_accounts.tenant", "credit_accounts.user_id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(_in("status", HOLD_STATUSES), name="status"),
        CheckConstraint(
            "(status = 'active' AND is_active) OR (status <> 'active' AND NOT is_active)",
            name="active_flag",
        ),
        Index(
            "ix_credit_holds_expiring",
            "expires_at",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index("ix_credit_holds_account", "tenant", "user_id"),
    )


class CreditUsageRate(_Timestamps, Base):
    """What one request of an operation (an endpoint path) costs, for every tenant."""

    __tablename__ = "credit_usage_rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_path: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    credits_per_request: Mapped[int] = mapped_column(
        Credits, default=1, server_default="1", nullable=False
    )
    is_active: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true(), nullable=False
    )

    __table_args__ = (CheckConstraint("credits_per_request > 0", name="cost_positive"),)


__all__ = [
    "HOLD_STATUSES",
    "SETTLE_AS_COMPLETED",
    "TIERS",
    "TRANSACTION_STATUSES",
    "TRANSACTION_TYPES",
    "Base",
    "CreditAccount",
    "CreditHold",
    "CreditTransaction",
    "CreditUsageRate",
    "utcnow",
]
