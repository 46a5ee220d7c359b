"""The credit ledger's operations: plain async functions over an ``AsyncSession``.

Each function is one transaction on the session it is given: it commits what it did, or rolls
back and raises a :mod:`~offload.apps.credits.errors` domain error. Call it on a session with
no unfinished work of your own. Concurrency:

* PostgreSQL: rows are locked with ``SELECT ... FOR UPDATE`` always in the order
  hold -> account, so two calls on one account queue behind each other instead of
  racing, and the sweeps (which lock holds with ``SKIP LOCKED`` first, then accounts sorted by
  key) can never deadlock with them.
* SQLite: every writing call is an :func:`offload.db.write_transaction` (``BEGIN IMMEDIATE``);
  SQLite lets one writer in at a time, so a read-then-write is never interleaved with another
  writer.

Idempotency: a key is unique per account (a database constraint). A retried call with the same
key and the same arguments returns the first result (``replayed=True``) and changes nothing;
the same key with different arguments raises :class:`IdempotencyConflict`.

Modules: :mod:`.accounts` (accounts, rates, reads), :mod:`.holds` (hold, consume, release),
:mod:`.movements` (deduct, add, allocate), :mod:`.config` (tunables, amount and period rules),
:mod:`.core` (results, locks, replay, posting).
"""

from offload.apps.credits.service.accounts import balance, open_account, set_rate, transactions
from offload.apps.credits.service.config import (
    CreditsConfig,
    allocation_key,
    check_amount,
    check_period,
    current_period,
)
from offload.apps.credits.service.core import Account, Hold, Transaction
from offload.apps.credits.service.holds import consume, hold, release
from offload.apps.credits.service.movements import add, allocate, deduct

__all__ = [
    "Account",
    "CreditsConfig",
    "Hold",
    "Transaction",
    "add",
    "allocate",
    "allocation_key",
    "balance",
    "check_amount",
    "check_period",
    "consume",
    "current_period",
    "deduct",
    "hold",
    "open_account",
    "release",
    "set_rate",
    "transactions",
]
