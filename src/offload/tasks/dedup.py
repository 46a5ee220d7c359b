"""Deduplication that really deduplicates: one atomic claim per key, taken *before* publishing.

``task.apply_async(..., dedup_key="verify-email-42")`` claims ``offload:dedup:<task>:<key>``
for the new task id. If another task already holds the claim, nothing is published and the
caller gets that task's ``AsyncResult``. The worker releases the claim when the task ends
(success, or failure after its last retry; a retry keeps it and refreshes its TTL). A claim
whose worker vanished expires after ``settings.dedup_ttl`` seconds; a redelivered message
still runs (the claim is only checked when publishing).

Where claims live (first that applies):

1. the result store when it is Redis (``SET key owner NX PX ttl``; release is a
   compare-and-delete script, so a late release never frees somebody else's claim);
2. the result store when it offers ``claim``/``release`` (the SurrealDB backend, table
   ``dedup``);
3. the broker when it is Redis;
4. this process, when the broker is in-process (``memory://``) and so is everything else;
5. otherwise dedup is refused with :class:`~offload.errors.TaskConfigurationError`, because a
   claim nobody else can see would deduplicate nothing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from typing import Any, Protocol

from offload.errors import TaskConfigurationError
from offload.settings import Settings, url_scheme

__all__ = [
    "DEDUP_HEADER",
    "BackendClaimStore",
    "ClaimStore",
    "MemoryClaimStore",
    "RedisClaimStore",
    "claim_store_for",
    "dedup_key_of",
    "derived_key",
    "owner_token",
    "task_id_of",
]

#: Message headers carrying the claimed key and the claim's owner token, so the worker knows
#: what to release (and a retry knows it already holds the claim).
DEDUP_HEADER = "offload_dedup"
OWNER_HEADER = "offload_dedup_owner"
KEY_PREFIX = "offload:dedup:"


def owner_token(task_id: str) -> str:
    """A claim owner unique to one send: ``<task id>#<nonce>``. Two sends with the same
    ``task_id`` thus never both hold the claim (stores may treat a claim by its current owner
    as a renewal)."""
    return f"{task_id}#{uuid.uuid4().hex[:12]}"


def task_id_of(owner: str) -> str:
    """The task id inside an owner token (a bare task id stays as it is)."""
    task_id, sep, _nonce = owner.rpartition("#")
    return task_id if sep else owner


class ClaimStore(Protocol):
    def claim(self, key: str, owner: str, ttl_seconds: float) -> str | None:
        """Take ``key`` for ``owner``: None if taken now, else the current owner."""

    def release(self, key: str, owner: str) -> bool:
        """Free ``key`` if ``owner`` still holds it."""

    def owner(self, key: str) -> str | None:
        """The owner token holding ``key`` now (None: free)."""


def dedup_key_of(task_name: str, key: str) -> str:
    return f"{KEY_PREFIX}{task_name}:{key}"


def derived_key(args: Any, kwargs: Any) -> str:
    """A key for ``dedup=True`` sends with neither ``dedup_key`` nor ``task_id``: the hash of
    the arguments (JSON, keys sorted)."""
    payload = json.dumps([list(args or ()), kwargs or {}], sort_keys=True, default=str)
    return "args:" + hashlib.sha256(payload.encode()).hexdigest()[:32]


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_REFRESH = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


class RedisClaimStore:
    """Claims as Redis keys: ``SET NX PX`` to take, compare-and-delete to release."""

    def __init__(self, url: str, socket_timeout: float = 30.0,
                 socket_connect_timeout: float = 10.0) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout
        )
        self._release = self.client.register_script(_RELEASE)
        self._refresh = self.client.register_script(_REFRESH)

    def claim(self, key: str, owner: str, ttl_seconds: float) -> str | None:
        ttl_ms = max(1, int(ttl_seconds * 1000))
        for _ in range(5):
            if self.client.set(key, owner, nx=True, px=ttl_ms):
                return None
            current = self.client.get(key)
            if current is not None:
                return current.decode()
        raise TaskConfigurationError(f"dedup claim of {key!r} did not settle", key=key)

    def release(self, key: str, owner: str) -> bool:
        return bool(self._release(keys=[key], args=[owner]))

    def refresh(self, key: str, owner: str, ttl_seconds: float) -> bool:
        return bool(self._refresh(keys=[key], args=[owner, max(1, int(ttl_seconds * 1000))]))

    def owner(self, key: str) -> str | None:
        value = self.client.get(key)
        return value.decode() if value is not None else None


class BackendClaimStore:
    """Claims through a result backend that implements ``claim``/``release`` (SurrealDB)."""

    def __init__(self, app: Any) -> None:
        self.app = app  # app.backend is per thread in Celery: look it up on each call

    def claim(self, key: str, owner: str, ttl_seconds: float) -> str | None:
        return self.app.backend.claim(key, owner, ttl_seconds)

    def release(self, key: str, owner: str) -> bool:
        return bool(self.app.backend.release(key, owner))

    def refresh(self, key: str, owner: str, ttl_seconds: float) -> bool:
        refresh = getattr(self.app.backend, "refresh", None)
        return bool(refresh(key, owner, ttl_seconds)) if refresh is not None else False

    def owner(self, key: str) -> str | None:
        return self.app.backend.owner(key)


class MemoryClaimStore:
    """Claims in this process only: right for the in-process broker, nothing else."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, owner: str, ttl_seconds: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[1] > now:
                return held[0]
            self._claims[key] = (owner, now + ttl_seconds)
            return None

    def release(self, key: str, owner: str) -> bool:
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[0] == owner:
                del self._claims[key]
                return True
            return False

    def refresh(self, key: str, owner: str, ttl_seconds: float) -> bool:
        with self._lock:
            held = self._claims.get(key)
            if held is not None and held[0] == owner:
                self._claims[key] = (owner, time.monotonic() + ttl_seconds)
                return True
            return False

    def owner(self, key: str) -> str | None:
        with self._lock:
            held = self._claims.get(key)
            return held[0] if held is not None and held[1] > time.monotonic() else None


def _is_redis(url: str) -> bool:
    return url_scheme(url) in {"redis", "rediss"}


_store_lock = threading.Lock()
_STORE_ATTR = "_offload_claim_store"


def _choose(app: Any, settings: Settings) -> ClaimStore:
    results, broker = settings.results, settings.broker
    if _is_redis(results):
        return RedisClaimStore(results, settings.socket_timeout, settings.socket_connect_timeout)
    backend = app.backend
    if callable(getattr(backend, "claim", None)) and callable(getattr(backend, "release", None)):
        return BackendClaimStore(app)
    if _is_redis(broker):
        return RedisClaimStore(broker, settings.socket_timeout, settings.socket_connect_timeout)
    if settings.broker_in_process:
        return MemoryClaimStore()
    raise TaskConfigurationError(
        "deduplication needs a store every worker sees: use Redis as broker or result "
        f"backend, or SurrealDB results (broker {url_scheme(broker)!r}, results "
        f"{url_scheme(results)!r})"
    )


def claim_store_for(app: Any, settings: Settings) -> ClaimStore:
    """The claim store of ``app`` (chosen once per app, see the module docstring)."""
    store = getattr(app, _STORE_ATTR, None)
    if store is None:
        with _store_lock:
            store = getattr(app, _STORE_ATTR, None)
            if store is None:
                store = _choose(app, settings)
                setattr(app, _STORE_ATTR, store)
    return store
