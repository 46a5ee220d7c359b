"""Storage errors are retried, after a real ~60 s (not Celery's ~1 s backoff), and what travels
in the task's messages is ids and a path only: no credential, in the message or in the error.

(Its own module: a second in-process worker must not run beside another module's.)"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from celery.signals import before_task_publish

from offload.apps.codegraph import tasks

from .conftest import embedded_stack
from .graphkit import FIXTURES

TASK = tasks.parse_and_index_repository
PASSWORD = "s3cret-Pa55word"


def test_storage_errors_are_retried_after_60_s_with_no_credential_anywhere(tmp_path: Path):
    published: list[tuple[datetime, object, dict]] = []

    def capture(sender=None, body=None, headers=None, **_):
        if sender == TASK.name:
            published.append((datetime.now(UTC), body, dict(headers or {})))

    # Given a database that refuses connections, named with a password in the settings
    url = f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:9/{uuid.uuid4().hex[:8]}"
    before_task_publish.connect(capture)
    try:
        with embedded_stack(tmp_path, "codegraph-retry", migrate=False,
                            database_url=url) as (_settings, celery, _api):
            result = TASK.on_app(celery).apply_async(kwargs={
                "tenant_id": "acme", "repo_id": "r", "repo_path": str(FIXTURES / "go")})
            deadline = time.monotonic() + 30
            while result.state not in ("RETRY", "FAILURE", "SUCCESS"):
                assert time.monotonic() < deadline, result.state
                time.sleep(0.05)
            # Then the task is scheduled again, not failed
            assert result.state == "RETRY"
            error = f"{result.info!r} {result.traceback}"
    finally:
        before_task_publish.disconnect(capture)
    (_sent, first, _headers), (retried, again, headers) = published
    # ... about 60 s later (±10 % jitter), as retry 1
    delay = (datetime.fromisoformat(headers["eta"]) - retried).total_seconds()
    assert 53 <= delay <= 67, delay
    assert headers["retries"] == 1
    # and every message carries the three arguments, ids and a path, nothing else
    for body in (first, again):
        args, kwargs, _embed = body
        assert args == [] or args == ()
        assert sorted(kwargs) == ["repo_id", "repo_path", "tenant_id"]
    assert PASSWORD not in repr(published)
    assert "Connect" in error or "connect" in error
    assert PASSWORD not in error
