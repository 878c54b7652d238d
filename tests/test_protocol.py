"""ffrtmp.protocol: every frame either decodes to a well-typed Message or raises ProtocolError, nothing else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffrtmp.defaults import PROTOCOL_VERSION
from ffrtmp.errors import ProtocolError
from ffrtmp.protocol import MAX_STRING, SCHEMAS, Kind, Message, decode, encode

MINIMAL: dict[Kind, dict[str, Any]] = {
    Kind.HELLO: {"name": "w1", "fingerprint": "abc", "version": "0.1.0", "slots": 2, "engines": ["ffmpeg"]},
    Kind.WELCOME: {"node": "w1", "heartbeat_interval": 1.0, "node_timeout": 10},
    Kind.REFUSED: {"status": 409, "error": "duplicate name"},
    Kind.HEARTBEAT: {},
    Kind.RESYNC: {},
    Kind.JOB: {"job": "ab12", "attempt": 1, "spec": {"engine": "null"}},
    Kind.STARTED: {"job": "ab12", "attempt": 1, "at": 1700000000.5},
    Kind.LOG: {"job": "ab12", "attempt": 1, "lines": [[1, 1.0, "stderr", "frame=1"]]},
    Kind.RESULT: {"job": "ab12", "attempt": 1, "status": "completed", "at": 1700000001},
    Kind.ACK: {"job": "ab12", "attempt": 1},
    Kind.CANCEL: {"job": "ab12", "attempt": 2},
    Kind.DRAIN: {},
    Kind.BYE: {},
    Kind.REQUEST: {"rid": "r1", "op": "jobs.list"},
    Kind.PARTIAL: {"rid": "r1", "body": []},
    Kind.REPLY: {"rid": "r1", "status": 200},
    Kind.BATCH: {"items": []},
}

REQUIRED = [(kind, name) for kind, schema in SCHEMAS.items() for name, (_, required) in schema.items() if required]


def frame(body: Any, kind: Any = "job", version: Any = PROTOCOL_VERSION) -> bytes:
    return json.dumps({"v": version, "k": kind, "b": body}).encode()


def rejects(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value


# ---- roundtrip --------------------------------------------------------------------------------------


def test_minimal_bodies_cover_every_kind() -> None:
    assert set(MINIMAL) == set(Kind) == set(SCHEMAS)


@pytest.mark.parametrize("kind", list(Kind))
def test_roundtrip_minimal_body(kind: Kind) -> None:
    assert decode(encode(kind, MINIMAL[kind])) == Message(kind, MINIMAL[kind])


def test_roundtrip_with_optional_fields_and_unicode() -> None:
    body = {"job": "ab12", "attempt": 3, "status": "failed", "error": "échec ✗", "failure": "timeout",
            "metrics": {"fps": 29.97, "frames": 90}, "output": None, "at": 12.5}
    assert decode(encode(Kind.RESULT, body)) == Message(Kind.RESULT, body)


def test_encode_without_body_gives_empty_body() -> None:
    assert decode(encode(Kind.BYE)) == Message(Kind.BYE, {})


def test_missing_body_is_an_empty_body() -> None:
    assert decode(json.dumps({"v": PROTOCOL_VERSION, "k": "drain"}).encode()) == Message(Kind.DRAIN, {})


def test_extra_fields_are_allowed() -> None:
    body = {**MINIMAL[Kind.ACK], "future": {"x": [1, 2]}}
    assert decode(encode(Kind.ACK, body)).body == body


def test_envelope_shape() -> None:
    assert json.loads(encode(Kind.ACK, MINIMAL[Kind.ACK])) == {"v": PROTOCOL_VERSION, "k": "ack",
                                                               "b": MINIMAL[Kind.ACK]}


def test_decode_accepts_str_frames() -> None:
    assert decode(encode(Kind.BYE).decode()).kind is Kind.BYE


# ---- malformed envelopes ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not json", b"{", b'{"v":1,', b"\x00\x01\x02", b"{'v': 1}",
                                  b'{"v":1,"k":"bye","b":{}} trailing'])
def test_non_json_is_a_protocol_error(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("data", [b'{"v":1,"k":"bye","b":{"x":"\xff"}}', b'{"v":1,"k":"\xc3\x28","b":{}}',
                                  b"\xff\xfe\xfd", b'{"v":1,"k":"bye","b":{"x":"\xed\xa0\x80"}}'])
def test_invalid_utf8_is_a_protocol_error(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "a\\ud83d"])
def test_decoded_message_can_be_encoded_again(escape: str) -> None:
    """A lone surrogate escape is valid JSON but no UTF-8 string: a handler echoing it (a reply's `rid`) must
    not crash, so decode either refuses it or yields a body that encodes."""
    data = b'{"v":1,"k":"request","b":{"rid":"' + escape.encode() + b'","op":"ping"}}'
    try:
        message = decode(data)
    except ProtocolError:
        return
    encode(Kind.REPLY, {"rid": message.body["rid"], "status": 200})


def test_a_nul_anywhere_in_a_message_becomes_a_stand_in() -> None:
    data = (b'{"v":1,"k":"log","b":{"job":"j","attempt":1,"lines":[[1,2.0,"stderr","a\\u0000b"]],'
            b'"k\\u0000":{"deep":["\\u0000"]},"kept":"\\\\u0000"}}')
    body = decode(data).body
    assert body["lines"] == [[1, 2.0, "stderr", "a\ufffdb"]]
    assert body["k\ufffd"] == {"deep": ["\ufffd"]}
    assert body["kept"] == "\\u0000"  # an escaped backslash, then the text u0000: no NUL, left alone


@pytest.mark.parametrize("data", [b"[]", b"[1,2]", b"1", b'"hello"', b"null", b"true", b"3.5"])
def test_json_that_is_not_an_object(data: bytes) -> None:
    rejects(data)


@pytest.mark.parametrize("version", [0, 2, PROTOCOL_VERSION + 1, "1", None, [1], {"v": 1}])
def test_wrong_version(version: Any) -> None:
    error = rejects(frame(MINIMAL[Kind.BYE], kind="bye", version=version))
    assert "version" in str(error)


def test_missing_version() -> None:
    rejects(json.dumps({"k": "bye", "b": {}}).encode())


@pytest.mark.parametrize("kind", ["nope", "", "HELLO", None, 5, ["bye"], {"k": "bye"}])
def test_unknown_kind(kind: Any) -> None:
    error = rejects(frame({}, kind=kind))
    assert "kind" in str(error)


def test_missing_kind() -> None:
    rejects(json.dumps({"v": PROTOCOL_VERSION, "b": {}}).encode())


@pytest.mark.parametrize("body", [[], [1], "x", 5, None, True])
def test_body_not_an_object(body: Any) -> None:
    rejects(frame(body, kind="bye"))


# ---- fields -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), REQUIRED, ids=[f"{k.value}-{n}" for k, n in REQUIRED])
def test_missing_required_field(kind: Kind, name: str) -> None:
    body = dict(MINIMAL[kind])
    del body[name]
    error = rejects(encode(kind, body))
    assert name in str(error)


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        (Kind.JOB, "attempt", True),
        (Kind.JOB, "attempt", False),
        (Kind.ACK, "attempt", "1"),
        (Kind.ACK, "attempt", 1.0),
        (Kind.ACK, "attempt", None),
        (Kind.ACK, "job", 12),
        (Kind.ACK, "job", ["ab12"]),
        (Kind.HELLO, "slots", True),
        (Kind.HELLO, "slots", "2"),
        (Kind.HELLO, "engines", "ffmpeg"),
        (Kind.HELLO, "encoders", []),
        (Kind.JOB, "spec", []),
        (Kind.STARTED, "at", "now"),
        (Kind.STARTED, "at", True),
        (Kind.WELCOME, "heartbeat_interval", None),
        (Kind.REFUSED, "status", 409.0),
        (Kind.RESULT, "error", 5),
        (Kind.RESULT, "metrics", "fast"),
        (Kind.REQUEST, "args", []),
        (Kind.REQUEST, "key", None),
        (Kind.PARTIAL, "body", "x"),
        (Kind.REPLY, "body", 5),
        (Kind.HEARTBEAT, "pending", False),
    ],
)
def test_wrong_field_type(kind: Kind, name: str, value: Any) -> None:
    error = rejects(encode(kind, {**MINIMAL[kind], name: value}))
    assert name in str(error)


def test_nullable_fields_accept_none() -> None:
    body = {**MINIMAL[Kind.RESULT], "error": None, "failure": None, "output": None}
    assert decode(encode(Kind.RESULT, body)).body == body
    reply = {**MINIMAL[Kind.REPLY], "body": None}
    assert decode(encode(Kind.REPLY, reply)).body == reply


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_rejected(constant: str) -> None:
    rejects(b'{"v":1,"k":"started","b":{"job":"a","attempt":1,"at":' + constant.encode() + b"}}")


@pytest.mark.parametrize("constant", ["NaN", "Infinity"])
def test_non_finite_constants_are_rejected_anywhere(constant: str) -> None:
    rejects(b'{"v":1,"k":"bye","b":{"extra":[' + constant.encode() + b"]}}")


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_number_overflowing_to_infinity_is_rejected(literal: str) -> None:
    """`1e400` parses as float('inf'): a back door around the NaN/Infinity check (JSON can't even re-encode it)."""
    rejects(b'{"v":1,"k":"started","b":{"job":"a","attempt":1,"at":' + literal.encode() + b"}}")


@pytest.mark.parametrize("value", [2**53 + 1, -(2**53) - 1, 2**64, 10**30])
def test_huge_integers_are_rejected(value: int) -> None:
    error = rejects(encode(Kind.ACK, {"job": "a", "attempt": value}))
    assert "attempt" in str(error)


@pytest.mark.parametrize("value", [2**53, -(2**53), 0])
def test_integers_up_to_2_53_are_accepted(value: int) -> None:
    assert decode(encode(Kind.ACK, {"job": "a", "attempt": value})).body["attempt"] == value


def test_integer_with_too_many_digits_is_rejected() -> None:
    rejects(b'{"v":1,"k":"ack","b":{"job":"a","attempt":' + b"9" * 5000 + b"}}")


def test_string_longer_than_max_string_is_rejected() -> None:
    error = rejects(encode(Kind.ACK, {"job": "x" * (MAX_STRING + 1), "attempt": 1}))
    assert "job" in str(error)


def test_string_of_max_string_is_accepted() -> None:
    assert len(decode(encode(Kind.ACK, {"job": "x" * MAX_STRING, "attempt": 1})).body["job"]) == MAX_STRING


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_json_is_rejected(opener: bytes) -> None:
    rejects(opener * 100_000)


def test_deeply_nested_inside_a_body_is_rejected() -> None:
    rejects(b'{"v":1,"k":"bye","b":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}")


# ---- properties -------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**53 - 2, max_value=2**64)
    | st.floats() | st.text(max_size=20) | st.sampled_from(["\ud800", "x\udfff"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def assert_well_typed(message: Message) -> None:
    """What handlers rely on when decode succeeds."""
    assert isinstance(message.kind, Kind)
    assert isinstance(message.body, dict)
    for name, (types, required) in SCHEMAS[message.kind].items():
        if name not in message.body:
            assert not required, name
            continue
        value = message.body[name]
        assert isinstance(value, types) and not isinstance(value, bool), name
        if isinstance(value, int):
            assert -(2**53) <= value <= 2**53, name
        if isinstance(value, float):
            assert math.isfinite(value), name
        if isinstance(value, str):
            assert len(value) <= MAX_STRING, name


def decode_or_protocol_error(data: bytes) -> None:
    try:
        message = decode(data)
    except ProtocolError:
        return
    assert_well_typed(message)


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(data)


@PROPERTY_SETTINGS
@given(st.sampled_from(list(Kind)), st.binary(max_size=64), st.integers(min_value=0, max_value=400))
def test_corrupted_valid_frames_decode_or_raise_protocol_error(kind: Kind, junk: bytes, cut: int) -> None:
    data = encode(kind, MINIMAL[kind])
    decode_or_protocol_error(data[:cut] + junk + data[cut:])
    decode_or_protocol_error(data[:cut])


@PROPERTY_SETTINGS
@given(json_values)
def test_random_json_values_decode_or_raise_protocol_error(value: Any) -> None:
    decode_or_protocol_error(json.dumps(value).encode())


envelope_keys = st.sampled_from(["v", "k", "b"]) | st.text(max_size=4)


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(Kind)))
    message: dict[str, Any] = {"v": PROTOCOL_VERSION, "k": kind.value, "b": dict(MINIMAL[kind])}
    body_keys = st.sampled_from(sorted(SCHEMAS[kind]) or ["x"]) | st.text(max_size=6)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        operation = draw(st.sampled_from(["set_body", "del_body", "set_envelope", "del_envelope"]))
        body = message.get("b")
        if operation == "set_body" and isinstance(body, dict):
            body[draw(body_keys)] = draw(json_values)
        elif operation == "del_body" and isinstance(body, dict) and body:
            body.pop(draw(st.sampled_from(sorted(body))))
        elif operation == "set_envelope":
            message[draw(envelope_keys)] = draw(json_values)
        elif operation == "del_envelope" and message:
            message.pop(draw(st.sampled_from(sorted(message))))
    return message


@PROPERTY_SETTINGS
@given(mutated_messages())
def test_mutated_valid_messages_decode_or_raise_protocol_error(message: dict[str, Any]) -> None:
    decode_or_protocol_error(json.dumps(message).encode())


# ---- batches ------------------------------------------------------------------------------------------


def test_a_batch_carries_checked_messages_and_a_single_one_goes_alone() -> None:
    from ffrtmp.protocol import encode_batch, unbatch

    assert decode(encode_batch([(Kind.ACK, {"job": "j", "attempt": 1})])).kind is Kind.ACK
    batch = decode(encode_batch([(Kind.ACK, {"job": "j", "attempt": 1}), (Kind.BYE, {})]))
    assert batch.kind is Kind.BATCH
    assert unbatch(batch) == [Message(Kind.ACK, {"job": "j", "attempt": 1}), Message(Kind.BYE, {})]


@pytest.mark.parametrize("items", [
    [{"k": "ack", "b": {"job": "j"}}],                         # an item missing a field
    [{"k": "nope", "b": {}}],                                  # an unknown kind
    [{"k": "batch", "b": {"items": []}}],                      # a batch in a batch
    [["ack"]],                                                 # not an object
    [{"k": "ack", "b": {"job": "j", "attempt": 1}}] * 1001,    # too many
])
def test_a_bad_batch_item_rejects_the_batch(items: list[Any]) -> None:
    from ffrtmp.errors import ProtocolError
    from ffrtmp.protocol import unbatch

    with pytest.raises(ProtocolError, match="batch"):
        unbatch(decode(encode(Kind.BATCH, {"items": items})))
