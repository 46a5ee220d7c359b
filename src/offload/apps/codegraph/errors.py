"""codegraph's errors, under offload's tree (see :mod:`offload.errors`).

    NonRetriableTaskError
    ├── TenantValidationError     the tenant id is missing or malformed
    └── RepositoryParseError      the repository cannot be ingested as given (path outside the
                                  allowed roots, not a directory, not readable, ...)
"""

from __future__ import annotations

from offload.errors import NonRetriableTaskError


class TenantValidationError(NonRetriableTaskError):
    """The tenant id is missing or malformed."""


class RepositoryParseError(NonRetriableTaskError):
    """The repository cannot be ingested as given."""
