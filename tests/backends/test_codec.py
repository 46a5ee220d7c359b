"""The wire codec against the SDK's own CBOR codec, on generated values."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st
from surrealdb import RecordID
from surrealdb.data.cbor import decode as sdk_decode

from offload.backends import codec

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_round_trip_and_agreement_with_the_sdk(value):
    encoded = codec.encode(value)
    assert codec.decode(encoded) == value
    assert sdk_decode(encoded) == value


def test_surrealdb_types():
    when = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    value = {"rid": RecordID("task", "a'b⟨c⟩"), "when": when, "dec": Decimal("1.10"),
             "uuid": UUID(int=99), "naive": datetime(2024, 1, 1)}
    decoded = codec.decode(codec.encode(value))
    assert decoded["rid"].table_name == "task" and decoded["rid"].id == "a'b⟨c⟩"
    assert decoded["when"] == when
    assert decoded["dec"] == Decimal("1.10") and decoded["uuid"] == UUID(int=99)
    assert decoded["naive"] == datetime(2024, 1, 1, tzinfo=UTC)  # naive means UTC


def test_none_is_sent_as_null_so_fields_survive():
    assert codec.encode(None) == b"\xf6"
    assert codec.encode({"a": None}) == b"\xa1\x61a\xf6"


def test_integers_beyond_64_bits_are_refused():
    import pytest

    with pytest.raises(ValueError, match="64 bits"):
        codec.encode(2**64)


def test_surrealdb_tags_decode_like_the_sdk():
    # tag 9 (a UUID as text) and a whole-second datetime are beyond the SDK's own decoder
    from cbor2 import CBORTag, dumps

    message = dumps({
        "none": CBORTag(6, None),
        "table": CBORTag(7, "task"),
        "rid": CBORTag(8, ["task", "a⟨b⟩"]),
        "uuid": CBORTag(9, "00000000-0000-0000-0000-000000000063"),
        "dec": CBORTag(10, "1.10"),
        "when": CBORTag(12, [1_700_000_000, 123_456_789]),
        "whole_second": CBORTag(12, [1_700_000_000]),
        "took": CBORTag(14, [90, 5]),
    })
    ours = codec.decode(message)
    theirs = sdk_decode(dumps({"table": CBORTag(7, "task"), "took": CBORTag(14, [90, 5])}))
    assert ours["none"] is None and ours["table"] == theirs["table"]
    assert (ours["rid"].table_name, ours["rid"].id) == ("task", "a⟨b⟩")
    assert ours["uuid"] == UUID(int=99) and ours["dec"] == Decimal("1.10")
    assert ours["when"] == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert ours["whole_second"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert ours["took"] == theirs["took"]


def test_a_message_that_is_not_cbor_is_a_result_store_error():
    import pytest

    from offload.errors import ResultStoreError

    with pytest.raises(ResultStoreError, match="not valid CBOR"):
        codec.decode(b"\xff\xff")
