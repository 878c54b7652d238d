"""The typed bodies the master reads say what `decode` checks: same fields, same required ones, same types."""

from __future__ import annotations

import types
import typing

import pytest

from ffrtmp.protocol import BODIES, SCHEMAS, Kind, decode, encode, hello_body, result_body


def accepted(hint: object) -> set[type]:
    """The runtime types a body annotation admits (float admits int, as JSON numbers do)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return set().union(*(accepted(arg) for arg in typing.get_args(hint)))
    if hint is type(None) or hint is None:
        return {type(None)}
    if hint is float:
        return {int, float}
    origin = typing.get_origin(hint)
    assert isinstance(origin or hint, type), hint
    return {typing.cast(type, origin or hint)}


@pytest.mark.parametrize("kind", list(BODIES), ids=str)
def test_a_typed_body_matches_its_schema(kind: Kind) -> None:
    body = BODIES[kind]
    hints = typing.get_type_hints(body)
    schema = SCHEMAS[kind]
    assert set(schema) <= set(hints), f"{kind}: fields decode checks but the type does not name"
    required = {name for name, (_, needed) in schema.items() if needed}
    assert set(body.__required_keys__) == required, kind  # type: ignore[attr-defined]
    for name, (checked, _) in schema.items():
        assert accepted(hints[name]) == set(checked), f"{kind}.{name}: {hints[name]} against {checked}"
    for name in set(hints) - set(schema):
        assert name not in body.__required_keys__, f"{kind}.{name}: an unchecked extra cannot be required"  # type: ignore[attr-defined]


def test_the_accessors_give_the_checked_body() -> None:
    hello = decode(encode(Kind.HELLO, {"name": "w", "fingerprint": "f", "version": "1", "slots": 2,
                                       "engines": ["ffmpeg"]}))
    assert hello_body(hello)["slots"] == 2
    result = decode(encode(Kind.RESULT, {"job": "j", "attempt": 1, "status": "completed", "at": 1.5}))
    assert result_body(result).get("metrics") is None and result_body(result)["at"] == 1.5
