"""The SurrealDB RPC wire format: CBOR requests and responses.

A small CBOR codec (RFC 8949) for the values a result backend moves: maps, arrays, text,
bytes, numbers, booleans, null, datetimes, record ids, decimals and UUIDs, with SurrealDB's
tags. The SDK's general-purpose codec (``surrealdb.cbor``) is several times slower on these
small documents, and the backend does one encode and one decode per call, so the hot path
has its own; anything outside that set falls back to the SDK's codec, value by value on the
way out and message by message on the way back.

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

from surrealdb import Duration, RecordID, Table
from surrealdb.data.cbor import decode as _sdk_decode
from surrealdb.data.cbor import encode as _sdk_encode

__all__ = ["decode", "encode", "encode_request"]

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_pack_double = struct.Struct(">d").pack
_unpack_double = struct.Struct(">d").unpack_from
_unpack_single = struct.Struct(">f").unpack_from
_unpack_half = struct.Struct(">e").unpack_from

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


class _Unsupported(Exception):
    """The message holds something the fast decoder does not know: use the SDK's."""


_BREAK = object()


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    initial = data[pos]
    major, info = initial >> 5, initial & 31
    pos += 1
    if major == 7:
        if info == 22 or info == 23:
            return None, pos
        if info == 20:
            return False, pos
        if info == 21:
            return True, pos
        if info == 27:
            return _unpack_double(data, pos)[0], pos + 8
        if info == 26:
            return _unpack_single(data, pos)[0], pos + 4
        if info == 25:
            return _unpack_half(data, pos)[0], pos + 2
        if info == 31:
            return _BREAK, pos
        raise _Unsupported(f"simple value {info}")
    if info < 24:
        arg = info
    elif info == 24:
        arg = data[pos]
        pos += 1
    elif info == 25:
        arg = int.from_bytes(data[pos:pos + 2], "big")
        pos += 2
    elif info == 26:
        arg = int.from_bytes(data[pos:pos + 4], "big")
        pos += 4
    elif info == 27:
        arg = int.from_bytes(data[pos:pos + 8], "big")
        pos += 8
    elif info == 31 and 2 <= major <= 5:
        return _decode_indefinite(data, pos, major)
    else:
        raise _Unsupported(f"additional information {info}")
    if major == 0:
        return arg, pos
    if major == 3:
        end = pos + arg
        return data[pos:end].decode("utf-8", "surrogatepass"), end
    if major == 5:
        result = {}
        for _ in range(arg):
            first = data[pos]
            if 0x60 <= first < 0x78:  # a short text key: the usual case, decoded inline
                end = pos + 1 + first - 0x60
                key = data[pos + 1:end].decode("utf-8", "surrogatepass")
                pos = end
            else:
                key, pos = _decode(data, pos)
            result[key], pos = _small(data, pos)
        return result, pos
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _small(data, pos)
            items.append(item)
        return items, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2:
        end = pos + arg
        return bytes(data[pos:end]), end
    # major 6: a tag. The two SurrealDB puts in every record are decoded inline.
    if arg == TAG_DATETIME_COMPACT and data[pos] == 0x82:
        seconds, pos = _small(data, pos + 1)
        nanos, pos = _small(data, pos)
        return _EPOCH + timedelta(0, seconds, nanos // 1000), pos
    if arg == TAG_RECORD_ID and data[pos] == 0x82:
        table, pos = _small(data, pos + 1)
        key, pos = _small(data, pos)
        return _record_id(table, key), pos
    value, pos = _decode(data, pos)
    return _tagged(arg, value), pos


def _small(data: bytes, pos: int) -> tuple[Any, int]:
    """One item, with the commonest small ones (short text, small int, null) inline."""
    first = data[pos]
    if 0x60 <= first < 0x78:
        end = pos + 1 + first - 0x60
        return data[pos + 1:end].decode("utf-8", "surrogatepass"), end
    if first < 0x18:
        return first, pos + 1
    if first == 0xF6:
        return None, pos + 1
    return _decode(data, pos)


def _decode_indefinite(data: bytes, pos: int, major: int) -> tuple[Any, int]:
    items: list[Any] = []
    while True:
        item, pos = _decode(data, pos)
        if item is _BREAK:
            break
        items.append(item)
    if major == 2:
        return b"".join(items), pos
    if major == 3:
        return "".join(items), pos
    if major == 4:
        return items, pos
    return dict(zip(items[::2], items[1::2])), pos


def _record_id(table: str, key: Any) -> RecordID:
    # what RecordID.__init__ does, without the import it runs on every call
    record_id = object.__new__(RecordID)
    record_id.table_name = table
    record_id.id = key
    return record_id


def _tagged(tag: int, value: Any) -> Any:
    if tag == TAG_NONE:
        return None
    if tag == TAG_RECORD_ID:
        return _record_id(value[0], value[1])
    if tag == TAG_DATETIME_COMPACT:
        seconds = value[0] if value else 0
        nanos = value[1] if len(value) > 1 else 0
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    if tag == TAG_DATETIME:
        return _parse_datetime(value)
    if tag == TAG_DECIMAL:
        return Decimal(value)
    if tag == TAG_UUID:
        return UUID(bytes=value)
    if tag == TAG_UUID_STRING:
        return UUID(value)
    if tag == TAG_TABLE:
        return Table(value)
    if tag == TAG_DURATION_COMPACT:
        return Duration.parse(value[0] if value else 0, value[1] if len(value) > 1 else 0)
    if tag == TAG_DURATION:
        return Duration.parse(value)
    raise _Unsupported(f"tag {tag}")


def _parse_datetime(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)  # 3.11+: "Z" and nanosecond fractions included
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)


def decode(data: bytes) -> Any:
    """One CBOR message from the server or the engine."""
    try:
        value, _ = _decode(data, 0)
    except _Unsupported:
        return _sdk_decode(data)
    return value
