"""The dedup claim API the framework calls: ``claim(key, owner, ttl)`` / ``release(key, owner)``."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from .conftest import run_together


@pytest.fixture
def key():
    return f"offload:dedup:t.task:{uuid.uuid4().hex}"


def test_the_first_claim_wins_and_others_learn_the_owner(backend, key):
    assert backend.claim(key, "task-a", 60) is None
    assert backend.claim(key, "task-b", 60) == "task-a"
    assert backend.owner(key) == "task-a"


def test_claiming_again_as_the_owner_keeps_it(backend, key):
    assert backend.claim(key, "task-a", 60) is None
    assert backend.claim(key, "task-a", 60) is None  # a retried call is not a rival


def test_only_the_owner_releases(backend, key):
    backend.claim(key, "task-a", 60)
    assert backend.release(key, "task-b") is False
    assert backend.owner(key) == "task-a"
    assert backend.release(key, "task-a") is True
    assert backend.release(key, "task-a") is False
    assert backend.claim(key, "task-b", 60) is None


def test_an_expired_claim_can_be_taken_over(backend, key):
    assert backend.claim(key, "task-a", 0.05) is None
    time.sleep(0.1)
    assert backend.owner(key) is None
    assert backend.claim(key, "task-b", 60) is None
    assert backend.release(key, "task-a") is False  # the old owner cannot free the new claim
    assert backend.owner(key) == "task-b"


def test_refresh_extends_only_a_live_claim_of_the_owner(backend, key):
    backend.claim(key, "task-a", 0.3)
    assert backend.refresh(key, "task-b", 60) is False
    assert backend.refresh(key, "task-a", 60) is True
    time.sleep(0.4)
    assert backend.owner(key) == "task-a"


def test_hostile_keys_are_just_keys(backend):
    keys = ["x'; DELETE dedup; --", "dedup:other", "⟨k⟩", "`k`", "k" * 2000]
    for number, hostile in enumerate(keys):
        assert backend.claim(hostile, f"owner-{number}", 60) is None
    for number, hostile in enumerate(keys):
        assert backend.owner(hostile) == f"owner-{number}"


def test_fifty_concurrent_claimers_make_exactly_one_winner(app, key):
    answers: dict[str, str | None] = {}
    lock = threading.Lock()

    def contend(owner: str) -> None:
        backend = app.backend  # each thread has its own backend instance, as in a worker
        answer = backend.claim(key, owner, 60)
        with lock:
            answers[owner] = answer

    run_together(contend, [(f"task-{n}",) for n in range(50)], timeout=30)
    winners = [owner for owner, answer in answers.items() if answer is None]
    assert len(answers) == 50 and len(winners) == 1
    assert Counter(answers.values()) == Counter({None: 1, winners[0]: 49})


def test_fifty_claimers_through_a_server_connection_pool(make_app, relay, key):
    app = make_app(relay.backend_url)
    answers = []
    lock = threading.Lock()

    def contend(owner: str) -> None:
        answer = app.backend.claim(key, owner, 60)
        with lock:
            answers.append(answer)

    run_together(contend, [(f"task-{n}",) for n in range(50)], timeout=60)
    assert answers.count(None) == 1 and len(answers) == 50


def test_expired_claims_are_swept_by_cleanup(backend, key):
    backend.claim(key, "task-a", 0.01)
    time.sleep(0.05)
    backend.cleanup()
    rows = backend.store.query("SELECT * FROM dedup WHERE owner = 'task-a'")[0]
    assert rows == []
