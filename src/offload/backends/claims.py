"""Deduplication claims in the result store (table ``dedup``), for ``offload.tasks.dedup``.

``claim`` is one atomic statement whose TTL runs on the server's clock; only the owner
releases or refreshes. See ``queries.CLAIM``.
"""

from __future__ import annotations

from surrealdb import RecordID

from offload.backends import queries

__all__ = ["DedupClaims"]


def _ttl(seconds: float) -> str:
    return f"{max(1, round(float(seconds) * 1000))}ms"


class DedupClaims:
    """Claim methods of :class:`~offload.backends.surrealdb.SurrealDBBackend`."""

    def claim(self, key: str, owner: str, ttl_seconds: float) -> str | None:
        """Atomically claim ``key`` for ``owner`` for ``ttl_seconds``.

        Returns ``None`` when the caller holds the claim afterwards (it was free, expired, or
        already ``owner``'s: then its TTL is renewed), else the current owner.
        """
        rows = self._one(queries.CLAIM, rid=RecordID("dedup", key), owner=owner, ttl=_ttl(ttl_seconds))
        holder = rows[0] if rows else None
        return None if holder == owner else holder

    def release(self, key: str, owner: str) -> bool:
        """Release ``key`` if ``owner`` holds it; True if something was released."""
        return bool(self._one(queries.RELEASE, rid=RecordID("dedup", key), owner=owner))

    def refresh(self, key: str, owner: str, ttl_seconds: float) -> bool:
        """Extend ``owner``'s unexpired claim on ``key`` by ``ttl_seconds`` from now."""
        rows = self._one(queries.REFRESH, rid=RecordID("dedup", key), owner=owner, ttl=_ttl(ttl_seconds))
        return bool(rows)

    def owner(self, key: str) -> str | None:
        """Who holds an unexpired claim on ``key`` (``None``: nobody)."""
        rows = self._one(queries.OWNER, rid=RecordID("dedup", key))
        return rows[0] if rows else None
