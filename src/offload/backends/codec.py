"""The SurrealDB RPC wire format: CBOR requests and responses.

Requests are encoded here, by a small CBOR encoder (RFC 8949) for the values a result backend
moves: maps, arrays, text, bytes, numbers, booleans, null, datetimes, record ids, decimals and
UUIDs, with SurrealDB's tags; other SurrealDB types go through the SDK's encoder, value by
value. Replies are decoded by cbor2's C decoder with SurrealDB's tags added. The SDK's own
codec (``surrealdb.cbor``, pure Python) is several times slower on both sides, and the
backend does one encode and one decode per call.

One deliberate difference from the SDK: Python ``None`` is sent as SurrealDB ``NULL``, not
``NONE``. SurrealDB drops object fields whose value is ``NONE``, so with the SDK's encoding a
task returning ``{"error": None}`` would read back as ``{}``; with ``NULL`` every value comes
back as it was stored.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from cbor2 import CBORDecodeError, CBORTag
from cbor2 import loads as _loads
from surrealdb import Duration, RecordID, Table
from surrealdb.data.cbor import encode as _sdk_encode
from surrealdb.data.cbor import tag_decoder as _sdk_tag

from offload.errors import ResultStoreError

__all__ = ["RecordIDs", "decode", "encode", "encode_request", "record_id"]

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_pack_double = struct.Struct(">d").pack

# SurrealDB's CBOR tags (https://surrealdb.com/docs/surrealdb/integration/cbor)
TAG_DATETIME = 0
TAG_NONE = 6
TAG_TABLE = 7
TAG_RECORD_ID = 8
TAG_UUID_STRING = 9
TAG_DECIMAL = 10
TAG_DATETIME_COMPACT = 12
TAG_DURATION = 13
TAG_DURATION_COMPACT = 14
TAG_UUID = 37


# --- encoding ------------------------------------------------------------------------------


class RecordIDs:
    """The ids ``keys`` of records of ``table``, sent as an array of record ids: what
    ``[RecordID(table, key) for key in keys]`` sends, without building the objects."""

    __slots__ = ("keys", "table")

    def __init__(self, table: str, keys: list[Any]) -> None:
        self.table = table
        self.keys = keys


def _head(out: bytearray, major: int, value: int) -> None:
    if value < 24:
        out.append(major | value)
    elif value < 0x100:
        out.append(major | 24)
        out.append(value)
    elif value < 0x10000:
        out.append(major | 25)
        out += value.to_bytes(2, "big")
    elif value < 0x100000000:
        out.append(major | 26)
        out += value.to_bytes(4, "big")
    elif value < 0x10000000000000000:
        out.append(major | 27)
        out += value.to_bytes(8, "big")
    else:
        raise ValueError(f"integer {value} does not fit in 64 bits (SurrealDB's int is i64)")


def _encode(out: bytearray, value: Any) -> None:
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        _head(out, 0x60, len(data))
        out += data
    elif kind is dict:
        _head(out, 0xA0, len(value))
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TypeError(f"SurrealDB object keys must be strings, not {key!r}")
                key = str(key)
            _encode(out, key)
            _encode(out, item)
    elif value is None:
        out.append(0xF6)  # NULL: keeps the field (NONE would delete it)
    elif kind is bool:
        out.append(0xF5 if value else 0xF4)
    elif kind is int:
        if value >= 0:
            _head(out, 0x00, value)
        else:
            _head(out, 0x20, -1 - value)
    elif kind is float:
        out.append(0xFB)
        out += _pack_double(value)
    elif kind is list or kind is tuple:
        _head(out, 0x80, len(value))
        for item in value:
            _encode(out, item)
    elif kind is RecordID:
        out.append(0xC0 | TAG_RECORD_ID)
        out.append(0x82)
        _encode(out, value.table_name)
        _encode(out, value.id)
    elif kind is RecordIDs:
        _head(out, 0x80, len(value.keys))
        prefix = bytes((0xC0 | TAG_RECORD_ID, 0x82)) + encode(value.table)
        for key in value.keys:
            out += prefix
            _encode(out, key)
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_UTC)
        out.append(0xC0 | TAG_DATETIME)
        _encode(out, value.astimezone(_UTC).isoformat().replace("+00:00", "Z"))
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = bytes(value)
        _head(out, 0x40, len(data))
        out += data
    elif isinstance(value, Decimal):
        out.append(0xC0 | TAG_DECIMAL)
        _encode(out, str(value))
    elif isinstance(value, UUID):
        out += b"\xd8\x25"  # tag 37
        _encode(out, value.bytes)
    elif isinstance(value, bool):  # subclasses of the plain types, in a safe order
        _encode(out, bool(value))
    elif isinstance(value, int):
        _encode(out, int(value))
    elif isinstance(value, float):
        _encode(out, float(value))
    elif isinstance(value, str):
        _encode(out, str(value))
    elif isinstance(value, dict):
        _encode(out, dict(value))
    elif isinstance(value, (list, tuple)):
        _encode(out, list(value))
    else:  # SurrealDB types the fast path does not know: the SDK's encoder
        out += _sdk_encode(value)


def encode(value: Any) -> bytes:
    """One value as CBOR bytes."""
    out = bytearray()
    _encode(out, value)
    return bytes(out)


def encode_request(request_id: str, method: str, params: list[Any]) -> bytes:
    """One RPC request as CBOR bytes (the WebSocket and embedded transports take the same)."""
    return encode({"id": request_id, "method": method, "params": params})


# --- decoding ------------------------------------------------------------------------------


def record_id(table: str, key: Any) -> RecordID:
    """``RecordID(table, key)`` without the import its ``__init__`` runs on every call."""
    rid = object.__new__(RecordID)
    rid.table_name = table
    rid.id = key
    return rid


def _tag(tag: CBORTag, immutable: bool = False) -> Any:
    """SurrealDB's tags (cbor2 decodes the standard ones itself); the SDK's own types
    (geometries, ranges) through the SDK's decoder."""
    number, value = tag.tag, tag.value
    if number == TAG_DATETIME_COMPACT:  # how SurrealDB sends every datetime
        seconds = value[0] if value else 0
        nanos = value[1] if len(value) > 1 else 0
        return _EPOCH + timedelta(0, seconds, nanos // 1000)
    if number == TAG_RECORD_ID:
        return record_id(value[0], value[1])
    if number == TAG_NONE:
        return None
    if number == TAG_DECIMAL:
        return Decimal(value)
    if number == TAG_UUID_STRING:
        return UUID(value)
    if number == TAG_TABLE:
        return Table(value)
    if number == TAG_DURATION_COMPACT:
        return Duration.parse(value[0] if value else 0, value[1] if len(value) > 1 else 0)
    if number == TAG_DURATION:
        return Duration.parse(value) if isinstance(value, str) else Duration.parse(*value)
    return _sdk_tag(None, tag)


def decode(data: bytes) -> Any:
    """One CBOR message from the server or the engine (cbor2's C decoder)."""
    try:
        return _loads(data, tag_hook=_tag)
    except CBORDecodeError as exc:
        raise ResultStoreError(f"SurrealDB sent a message that is not valid CBOR: {exc}") from exc
