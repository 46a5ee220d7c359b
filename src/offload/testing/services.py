"""Real services for test sessions and benchmarks, shared safely on one machine.

:func:`claimed_redis_db`: a Redis logical database (1-15) nobody else uses right now. Each
user takes a lock key ``offload:test-db-lock:<n>`` in database 0 (``SET NX EX``), flushes its
database before and after, and deletes the lock only if it still holds it. So several test
suites and benchmarks can run at once against one Redis without consuming each other's
queue messages. :func:`reachable` tells whether a service answers at all. No pytest here: the test-suite's ``redis_url`` fixture and ``bench/`` both
use it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from offload.errors import ConfigurationError

__all__ = ["LOCK_KEY", "claimed_redis_db", "reachable"]

LOCK_KEY = "offload:test-db-lock:{db}"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def claimed_redis_db(
    host: str = "127.0.0.1", port: int = 6379, *, ttl: int = 4 * 3600, owner: str = "test"
) -> Iterator[str]:
    """Claim a free logical database, flush it, yield its URL, flush and release it.

    ``ttl`` (seconds) bounds how long a crashed owner keeps the database; ``owner`` prefixes
    the lock's token (shown to whoever finds every database taken). Raises
    :class:`~offload.errors.ConfigurationError` when databases 1-15 are all claimed.
    """
    import redis

    locks = redis.Redis(host=host, port=port, db=0)
    token = f"{owner}-{os.getpid()}-{uuid.uuid4().hex}"
    for db in range(1, 16):
        if locks.set(LOCK_KEY.format(db=db), token, nx=True, ex=ttl):
            break
    else:
        locks.close()
        raise ConfigurationError(
            f"all Redis logical databases 1-15 on {host}:{port} are claimed by other test "
            "sessions or benchmarks; try again when one ends"
        )
    client = redis.Redis(host=host, port=port, db=db)
    try:
        client.flushdb()
        yield f"redis://{host}:{port}/{db}"
    finally:
        try:
            client.flushdb()
            if locks.get(LOCK_KEY.format(db=db)) == token.encode():
                locks.delete(LOCK_KEY.format(db=db))
        finally:
            client.close()
            locks.close()
