"""The ledger's tunables and the rules every amount and period must follow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from offload.apps.credits.errors import InvalidAmount, InvalidRequest
from offload.apps.credits.model import TIERS, utcnow
from offload.settings import Settings

#: The largest single movement of credits the ledger accepts.
MAX_AMOUNT = 10**15
#: The largest balance a ``BIGINT`` column holds.
MAX_BALANCE = 2**63 - 1
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: Idempotency keys the ledger writes itself; a client's key never starts with this.
ALLOCATION_PREFIX = "monthly_allocation:"
#: The longest idempotency key (the column's width).
MAX_KEY = 200


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class CreditsConfig:
    """The ledger's tunables, taken from :class:`~offload.settings.Settings` (``credits_*``)."""

    hold_ttl: float = _default("credits_hold_ttl")
    allowances: Mapping[str, int] = field(
        default_factory=lambda: {t: _default(f"credits_allowance_{t}") for t in TIERS}
    )
    pending_max_age: float = _default("credits_pending_max_age")
    batch_size: int = _default("credits_batch_size")

    @classmethod
    def from_settings(cls, settings: Settings) -> CreditsConfig:
        return cls(
            hold_ttl=settings.credits_hold_ttl,
            allowances={t: getattr(settings, f"credits_allowance_{t}") for t in TIERS},
            pending_max_age=settings.credits_pending_max_age,
            batch_size=settings.credits_batch_size,
        )

    def allowance(self, tier: str) -> int:
        """The monthly allowance of ``tier`` (0: none)."""
        return int(self.allowances.get(tier, 0))


def check_amount(amount: Any) -> int:
    """A positive whole number of credits up to :data:`MAX_AMOUNT` (``int`` or an integral
    ``Decimal``; never a float, a bool or a string)."""
    if isinstance(amount, Decimal) and amount.is_finite() and amount == amount.to_integral_value():
        amount = int(amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount(
            f"credit amounts are whole numbers from 1 to {MAX_AMOUNT}, got {amount!r}"
        )
    return amount


def check_period(period: str) -> str:
    """A month, ``'YYYY-MM'``."""
    if not isinstance(period, str) or not PERIOD.match(period):
        raise InvalidRequest(f"a period is 'YYYY-MM', got {period!r}", period=period)
    return period


def current_period(now: datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


def allocation_key(period: str) -> str:
    """The idempotency key of an account's allocation for ``period``."""
    return f"{ALLOCATION_PREFIX}{period}"


def check_key(key: str | None) -> str | None:
    """A client's idempotency key: None, or 1 to :data:`MAX_KEY` characters not starting with
    the prefix of the ledger's own allocation keys (a client key could otherwise pass for a
    month's allocation and suppress it)."""
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or "\x00" in key:
        raise InvalidRequest(f"an idempotency key is 1 to {MAX_KEY} characters", key=key)
    if key.startswith(ALLOCATION_PREFIX):
        raise InvalidRequest(f"idempotency keys starting {ALLOCATION_PREFIX!r} are reserved",
                             key=key)
    return key


__all__ = [
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "CreditsConfig",
    "allocation_key",
    "check_amount",
    "check_key",
    "check_period",
    "current_period",
]
