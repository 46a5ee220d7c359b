"""Errors of the credits app, under one root.

    offload.errors.NonRetriableTaskError
    └── CreditsError                  a ledger rule refused the call (HTTP 4xx, never retried)
        ├── AccountNotFound           (also TaskNotFoundError)            404
        ├── HoldNotFound              (also TaskNotFoundError)            404
        ├── UnknownOperation          (also TaskNotFoundError)            404
        ├── InvalidRequest            (also TaskValidationError)          422
        │   └── InvalidAmount         not a positive whole number of credits
        ├── InsufficientCredits                                           402
        ├── IdempotencyConflict       key reused for a different call     409
        └── HoldNotActive             the hold is no longer active        409
            ├── HoldAlreadyConsumed
            ├── HoldAlreadyReleased
            └── HoldExpired
    offload.errors.RetriableTaskError
    └── SinkUnavailable               the analytics sink did not acknowledge (retried)
    offload.errors.NonRetriableTaskError
    └── SinkRejected                  the sink refused the rows (4xx: fix the configuration)

Each error carries structured context (``user_id``, ``hold_id``, ``balance``...) in
``.context``; :attr:`http_status` is what the HTTP API answers.
"""

from __future__ import annotations

from offload.errors import (
    NonRetriableTaskError,
    RetriableTaskError,
    TaskNotFoundError,
    TaskValidationError,
)


class CreditsError(NonRetriableTaskError):
    """The credit ledger refused the operation."""

    http_status = 400


class AccountNotFound(CreditsError, TaskNotFoundError):
    """No credit account exists for this user."""

    http_status = 404


class HoldNotFound(CreditsError, TaskNotFoundError):
    """No such credit hold."""

    http_status = 404


class UnknownOperation(CreditsError, TaskNotFoundError):
    """The operation has no active usage rate, so its cost is unknown."""

    http_status = 404


class InvalidRequest(CreditsError, TaskValidationError):
    """The request is malformed (unknown tier, period, kind, or a missing key)."""

    http_status = 422


class InvalidAmount(InvalidRequest):
    """Credit amounts are positive whole numbers."""


class InsufficientCredits(CreditsError):
    """The account does not hold enough credits."""

    http_status = 402


class IdempotencyConflict(CreditsError):
    """This idempotency key was already used for a different call."""

    http_status = 409


class HoldNotActive(CreditsError):
    """The hold is no longer active."""

    http_status = 409


class HoldAlreadyConsumed(HoldNotActive):
    """The hold was already consumed."""


class HoldAlreadyReleased(HoldNotActive):
    """The hold was already released."""


class HoldExpired(HoldNotActive):
    """The hold has expired; its credits are (or will be) returned by the cleanup sweep."""


class SinkUnavailable(RetriableTaskError):
    """The analytics sink did not acknowledge the rows; they stay unsynced for a retry."""


class SinkRejected(NonRetriableTaskError):
    """The analytics sink refused the rows (bad URL, key or table); they stay unsynced."""


__all__ = [
    "AccountNotFound",
    "CreditsError",
    "HoldAlreadyConsumed",
    "HoldAlreadyReleased",
    "HoldExpired",
    "HoldNotActive",
    "HoldNotFound",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidAmount",
    "InvalidRequest",
    "SinkRejected",
    "SinkUnavailable",
    "UnknownOperation",
]
