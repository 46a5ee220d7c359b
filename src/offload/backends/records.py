"""Celery's result meta <-> SurrealDB records, with native values.

A task record keeps Celery's meta as real fields: ``status``, ``result``, ``traceback``,
``children``, ``date_done`` (a datetime), and with ``result_extended`` also ``name``, ``args``,
``kwargs``, ``worker``, ``retries``, ``queue`` (a field whose value is None is left out and
reads back as None). Keys Celery adds that we do not know (stamps, ``stamped_headers``) live
under ``extra``. ``updated_at`` (UTC datetime, indexed) drives ``cleanup()`` and marks the
format: rows without it were written by the older package.

Values are what Celery's JSON serializer makes of them (so ``result_serializer='json'``
semantics hold exactly: tuples become lists, kombu's ``__type__`` markers carry datetimes,
UUIDs, decimals, bytes). With another serializer or with compression the encoded payload is
stored as is, in ``payload``.

Rows written by ``surrealdb-celery-backend`` (the whole meta as a JSON string in ``result``,
or that string already parsed into an object) have no ``updated_at`` and read back as they
were.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from kombu.utils.json import object_hook

__all__ = ["Payload", "from_document", "is_legacy", "parse_date", "revive"]

_TOP_LEVEL = frozenset({
    "status", "result", "traceback", "children", "date_done", "task_id", "group_id",
    "parent_id", "name", "args", "kwargs", "worker", "retries", "queue",
})
_INTERNAL = frozenset({"id", "updated_at", "typed", "extra", "payload",
                       "content_type", "content_encoding"})
#: Keys Celery's meta always has: a record leaves them out when they are None.
_DEFAULTS = {"result": None, "traceback": None, "children": None, "date_done": None}


#: SurrealDB integers are 64-bit; bigger ones (fine in JSON) are stored as a marked string.
_BIG_INT = "__offload_int__"
_LONG_DIGITS = re.compile(r"\d{19}")


def _parse_int(text: str) -> Any:
    value = int(text)
    return value if -(2**63) <= value < 2**63 else {_BIG_INT: text}


class Payload:
    """A record body ready to store, built from Celery's encoded meta."""

    __slots__ = ("document",)

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    @classmethod
    def from_json(cls, text: str) -> Payload:
        """Celery's JSON-encoded meta as native fields."""
        long_ints = _LONG_DIGITS.search(text) is not None
        meta = json.loads(text, parse_int=_parse_int) if long_ints else json.loads(text)
        document: dict[str, Any] = {}
        extra = {}
        for key, value in meta.items():
            if key in _TOP_LEVEL:
                if value is not None:  # absent reads back as None: smaller records
                    document[key] = value
            else:
                extra[key] = value
        if extra:
            document["extra"] = extra
        if long_ints or "__type__" in text:  # markers inside: revive them when reading
            document["typed"] = True
        if isinstance(document.get("date_done"), str):
            document["date_done"] = parse_date(document["date_done"])
        return cls(document)

    @classmethod
    def from_blob(cls, blob: bytes | str, content_type: str, meta: dict[str, Any]) -> Payload:
        """A payload of another serializer (or compressed): stored as it is, with the meta's
        ``status`` and ``task_id`` beside it."""
        document = {"status": meta.get("status"), "payload": blob, "content_type": content_type}
        if meta.get("task_id") is not None:
            document["task_id"] = meta["task_id"]
        return cls(document)

    def stamped(self, now: datetime) -> dict[str, Any]:
        return {**self.document, "updated_at": now}


def from_document(row: dict[str, Any]) -> dict[str, Any]:
    """A record written by this backend, as the dict Celery's JSON decoder would give."""
    meta = {**_DEFAULTS, **row}
    if not _INTERNAL.isdisjoint(row):
        for key in _INTERNAL.intersection(row):
            del meta[key]
    extra = row.get("extra")
    if extra:
        meta.update(extra)
    date_done = meta["date_done"]
    if date_done.__class__ is datetime:
        meta["date_done"] = date_done.isoformat()
    return revive(meta) if row.get("typed") else meta


def is_legacy(row: dict[str, Any]) -> bool:
    """Rows of surrealdb-celery-backend have neither ``updated_at`` (every row of ours has it)
    nor ``task_id`` (every task row of ours has it; group joins read rows without
    ``updated_at``). Rows holding a ``payload`` are ours and are checked for first."""
    return "updated_at" not in row and "task_id" not in row


def revive(value: Any) -> Any:
    """Apply kombu's JSON object hook throughout (``{"__type__": ...}`` -> Python values),
    and turn big-integer markers back into integers."""
    if isinstance(value, dict):
        if len(value) == 1 and _BIG_INT in value:
            return int(value[_BIG_INT])
        return object_hook({key: revive(item) for key, item in value.items()})
    if isinstance(value, list):
        return [revive(item) for item in value]
    return value


def parse_date(text: str) -> datetime | None:
    """An ISO date as an aware UTC datetime (naive ones are taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
