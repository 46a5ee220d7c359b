"""Analytics sinks: where ``sync_usage`` mirrors completed transactions.

A sink has one coroutine, ``send(rows)``: returning means the sink acknowledged every row;
raising :class:`SinkUnavailable` (retry later) or :class:`SinkRejected` (fix the configuration)
means nothing may be marked synced. Rows carry the transaction ``id``, and both sinks ignore a
row whose id they already hold, so a batch resent after a crash is never counted twice.

* :class:`HttpSink`: a PostgREST-compatible endpoint (what Supabase exposes):
  ``POST <url>/rest/v1/<table>`` with the API key in ``apikey`` and ``Authorization: Bearer``.
* :class:`TableSink`: a table in a SQL database (the ledger's own or another one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import httpx
from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from offload.apps.credits.errors import SinkRejected, SinkUnavailable
from offload.db import create_engine
from offload.settings import Settings

#: The columns every sink receives, in this order.
ROW_FIELDS = (
    "id",
    "tenant",
    "user_id",
    "amount",
    "balance_after",
    "type",
    "status",
    "reference_id",
    "created_at",
)


@runtime_checkable
class AnalyticsSink(Protocol):
    async def send(self, rows: list[dict[str, Any]]) -> None: ...

    async def aclose(self) -> None: ...


def to_json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in row.items()
    }


class HttpSink:
    """POST rows as one JSON array to ``<base_url>/rest/v1/<table>`` (PostgREST / Supabase).

    2xx is an acknowledgement. 408, 429, 5xx and network errors are passing trouble
    (:class:`SinkUnavailable`, retried); any other status is :class:`SinkRejected`.
    """

    def __init__(
        self,
        base_url: str,
        table: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/rest/v1/{table}"
        headers = {
            "Content-Type": "application/json",
            # Resent rows (same primary key) are ignored instead of failing the batch.
            "Prefer": "return=minimal,resolution=ignore-duplicates",
        }
        if api_key:
            headers |= {"apikey": api_key, "Authorization": f"Bearer {api_key}"}
        self._headers = headers
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        payload = [to_json_row(row) for row in rows]
        try:
            response = await self._client.post(self.url, json=payload, headers=self._headers)
        except httpx.HTTPError as exc:
            raise SinkUnavailable(
                f"analytics sink {self.url} unreachable: {exc!r}", url=self.url
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = response.text[:300]
        if status in (408, 425, 429) or status >= 500:
            raise SinkUnavailable(
                f"analytics sink answered {status}: {detail}", url=self.url, status=status
            )
        raise SinkRejected(
            f"analytics sink refused the rows ({status}): {detail}", url=self.url, status=status
        )

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def usage_table(name: str, metadata: MetaData | None = None) -> Table:
    """The shape of the analytics table (created by :class:`TableSink` if missing)."""
    return Table(
        name,
        metadata or MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("tenant", String(128), nullable=False),
        Column("user_id", String(128), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("balance_after", BigInteger, nullable=False),
        Column("type", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        Column("reference_id", String(64)),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


class TableSink:
    """INSERT rows into a table, skipping ids already there (one transaction per batch)."""

    def __init__(self, engine: AsyncEngine, table: str, *, own_engine: bool = False) -> None:
        self.engine = engine
        self.table = usage_table(table)
        self._own_engine = own_engine
        self._ready = False

    async def send(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(self.table).on_conflict_do_nothing(index_elements=["id"])
        values = [{key: row[key] for key in ROW_FIELDS} for row in rows]
        if dialect == "sqlite":  # aware datetimes are stored naive in UTC, like the ledger's
            values = [v | {"created_at": v["created_at"].replace(tzinfo=None)} for v in values]
        try:
            async with self.engine.begin() as connection:
                if not self._ready:
                    await connection.run_sync(self.table.metadata.create_all, checkfirst=True)
                await connection.execute(statement, values)
            self._ready = True
        except DBAPIError as exc:
            raise SinkUnavailable(
                f"analytics table {self.table.name!r} write failed: {exc.orig!r}",
                table=self.table.name,
            ) from exc
        except SQLAlchemyError as exc:
            raise SinkRejected(
                f"analytics table {self.table.name!r} refused the rows: {exc!r}",
                table=self.table.name,
            ) from exc

    async def aclose(self) -> None:
        if self._own_engine:
            await self.engine.dispose()


def sink_from_settings(settings: Settings) -> AnalyticsSink | None:
    """The sink ``settings.analytics_sink`` names, or None for ``none``.

    ``http``: ``analytics_url`` is the PostgREST base URL, ``analytics_api_key`` its key.
    ``table``: ``analytics_url`` is a database URL (default: the ledger's own database).
    Both write to ``analytics_table``.
    """
    if settings.analytics_sink == "http":
        key = settings.analytics_api_key.get_secret_value() if settings.analytics_api_key else None
        return HttpSink(settings.analytics_url or "", settings.analytics_table, key)
    if settings.analytics_sink == "table":
        url = settings.analytics_url or settings.database
        return TableSink(create_engine(url), settings.analytics_table, own_engine=True)
    return None


__all__ = [
    "ROW_FIELDS",
    "AnalyticsSink",
    "HttpSink",
    "TableSink",
    "sink_from_settings",
    "usage_table",
]
