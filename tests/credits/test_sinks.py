"""Analytics sinks against real receivers: a local PostgREST-compatible HTTP server that
fails on demand, and database tables."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select

from offload.apps.credits import service as ledger
from offload.apps.credits import sweeps
from offload.apps.credits.devsink import LocalPostgrest
from offload.apps.credits.errors import SinkRejected, SinkUnavailable
from offload.apps.credits.model import utcnow
from offload.apps.credits.sinks import HttpSink, TableSink, sink_from_settings, usage_table
from offload.db import create_engine

from .conftest import count_unsynced

ROW = {"id": 1, "tenant": "t", "user_id": "u", "amount": -3, "balance_after": 7,
       "type": "api_usage", "status": "completed", "reference_id": None,
       "created_at": utcnow()}


@pytest.fixture
def receiver():
    with LocalPostgrest(api_key="secret") as server:
        yield server


@pytest.fixture
async def http_sink(receiver):
    sink = HttpSink(receiver.url, "credit_usage", "secret", timeout=5)
    yield sink
    await sink.aclose()


async def test_http_sink_posts_rows_postgrest_style(receiver, http_sink):
    await http_sink.send([ROW, ROW | {"id": 2}])
    await http_sink.send([ROW])  # a resend is ignored, not doubled
    stored = receiver.rows("credit_usage")
    assert sorted(stored) == [1, 2]
    assert stored[1]["created_at"] == ROW["created_at"].isoformat()
    assert receiver.requests == 2


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_http_sink_server_trouble_is_retriable(receiver, http_sink, status):
    receiver.fail_with = status
    with pytest.raises(SinkUnavailable) as caught:
        await http_sink.send([ROW])
    assert caught.value.context["status"] == status
    assert receiver.rows("credit_usage") == {}


async def test_http_sink_wrong_key_is_rejected(receiver):
    sink = HttpSink(receiver.url, "credit_usage", "wrong")
    with pytest.raises(SinkRejected) as caught:
        await sink.send([ROW])
    await sink.aclose()
    assert caught.value.context["status"] == 401
    assert not caught.value.retriable


async def test_http_sink_unreachable_is_retriable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = HttpSink(f"http://127.0.0.1:{port}", "credit_usage", "k", timeout=2)
    with pytest.raises(SinkUnavailable):
        await sink.send([ROW])
    await sink.aclose()


async def test_sync_through_a_failing_http_sink_loses_nothing(engine, session, tenant, receiver,
                                                              http_sink):
    # Given 6 completed transactions
    await ledger.open_account(session, tenant, "u", "standard")
    for n in range(6):
        await ledger.add(session, tenant, "u", 1 + n, f"k{n}")
    # When the sink is down, the sync fails retriably and nothing is marked synced
    receiver.fail_with = 503
    with pytest.raises(SinkUnavailable):
        await sweeps.sync_usage(session, http_sink, batch_size=4)
    assert await count_unsynced(engine) == 6
    assert receiver.rows("credit_usage") == {}
    # When it is back, the next run syncs everything, once
    receiver.fail_with = None
    assert await sweeps.sync_usage(session, http_sink, batch_size=4) == {"synced": 6,
                                                                         "skipped": 0}
    assert await count_unsynced(engine) == 0
    stored = receiver.rows("credit_usage")
    assert sorted(r["amount"] for r in stored.values()) == [1, 2, 3, 4, 5, 6]
    assert {r["tenant"] for r in stored.values()} == {tenant}
    assert await sweeps.sync_usage(session, http_sink) == {"synced": 0, "skipped": 0}


async def test_table_sink_writes_rows_once(engine, tmp_path):
    sink = TableSink(engine, "usage_sink_test")
    await sink.send([ROW, ROW | {"id": 2}])
    await sink.send([ROW | {"amount": 99}])  # same id: ignored
    table = usage_table("usage_sink_test")
    async with engine.connect() as connection:
        rows = (await connection.execute(select(table).order_by(table.c.id))).all()
        await connection.run_sync(table.drop)
        await connection.commit()
    assert [(r.id, r.amount) for r in rows] == [(1, -3), (2, -3)]


async def test_sync_into_a_table_sink(engine, session, tenant):
    await ledger.open_account(session, tenant, "u", "free")
    for n in range(3):
        await ledger.add(session, tenant, "u", 5, f"k{n}")
    other = create_engine(f"sqlite+aiosqlite:///{session.bind.url.database}-analytics"
                          if engine.dialect.name == "sqlite" else str(engine.url))
    sink = TableSink(other, "usage_sync_test", own_engine=True)
    try:
        assert (await sweeps.sync_usage(session, sink))["synced"] == 3
        async with other.connect() as connection:
            count = await connection.scalar(select(func.count()).select_from(sink.table))
            await connection.run_sync(sink.table.drop)
            await connection.commit()
        assert count == 3
    finally:
        await sink.aclose()


def test_sink_from_settings(make_settings):
    assert sink_from_settings(make_settings()) is None
    http = sink_from_settings(make_settings(analytics_sink="http",
                                            analytics_url="https://x.supabase.co/",
                                            analytics_api_key="k"))
    assert isinstance(http, HttpSink)
    assert http.url == "https://x.supabase.co/rest/v1/credit_usage"
    table = sink_from_settings(make_settings(analytics_sink="table", analytics_table="usage"))
    assert isinstance(table, TableSink) and table.table.name == "usage"
