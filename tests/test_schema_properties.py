"""Property tests (hypothesis) of every marshmallow schema, the decode path and the signal fast path.

* Every schema of ``schemas.py`` and ``netcheck.py``, fed any JSON value (objects built from the schema's
  own field names and arbitrary keys, with any JSON values), either loads or raises ``BadFrameError``
  whose ``field`` is ``(frame)`` or a path that starts at a key of the input or a field of the schema —
  never another exception.
* ``framesocket.decode_json`` raises only ``BadFrameError``/``TooLargeError`` on any text, and decodes
  well-formed JSON within the rules exactly as ``json.loads`` does.
* The signal fast path (``schemas._fast_signal_frame``) accepts only what marshmallow accepts and returns
  the same data; ``load_signal_frame`` gives marshmallow's answer (data or the field) on any frame.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema

from flask_lpcall.core import schemas
from flask_lpcall.core.schemas import _fast_signal_frame, _signal_schema, load_or_raise, load_signal_frame
from flask_lpcall.errors import BadFrameError, LPCallError, TooLargeError
from flask_lpcall.sockets.transport import MAX_SAFE_INTEGER, decode_json
from flask_lpcall.web import netcheck

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def all_schemas() -> list[type[Schema]]:
    """Every Schema class of the wire (schemas.py, netcheck.py)."""
    found: dict[str, type[Schema]] = {}
    for module in (schemas, netcheck):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, Schema) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return [found[k] for k in sorted(found)]


SCHEMAS = all_schemas()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "offer", "answer", "rollback", "VOICE_CALL", "VIDEO_CALL", "ContentEvent", "text/plain",
                     "OPEN", "CLOSE", "UNABLE_TO_CONNECT", "agent", "consumer", "2026-01-01", "host"]),
    st.just(300).map(lambda n: "x" * n),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def field_names(schema: type[Schema]) -> list[str]:
    return sorted((f.data_key or name) for name, f in schema._declared_fields.items())


def objects_for(schema: type[Schema]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from(field_names(schema) or ["x"]) | st.text(max_size=8)
    return st.dictionaries(keys, json_values, max_size=6)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@FAST
@given(data=st.data())
def test_every_schema_loads_or_names_the_field(schema: type[Schema], data: st.DataObject) -> None:
    value = data.draw(objects_for(schema) | json_values)
    try:
        out = load_or_raise(schema(), value)
    except BadFrameError as exc:
        assert exc.field, exc
        known = set(field_names(schema)) | (set(value) if isinstance(value, dict) else set())
        assert exc.field == "(frame)" or any(exc.field == k or exc.field.startswith(f"{k}.") for k in known), (
            exc.field, value)
        assert str(exc).startswith(f"{exc.field}: ")
        return
    assert isinstance(out, dict)


# -- the decode path --------------------------------------------------------------------------------------------
@FAST
@given(text=st.text(max_size=300) | st.builds(lambda v: json.dumps(v), json_values))
def test_decode_raises_only_bad_frame_or_too_large(text: str) -> None:
    try:
        decode_json(text, 1000)
    except (BadFrameError, TooLargeError) as exc:
        assert exc.field
    except LPCallError as exc:  # pragma: no cover - any other code is a failure
        raise AssertionError(f"unexpected {exc.code}") from exc


@FAST
@given(value=json_values)
def test_decode_equals_json_loads_within_the_rules(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        assert decode_json(text, 100_000) == json.loads(text)


@FAST
@given(digits=st.integers(17, 6000), path=st.sampled_from(["n", "body.n", "body.list.0"]))
def test_huge_integers_name_their_field(digits: int, path: str) -> None:
    number = "9" * digits
    nested = {"n": "@"} if path == "n" else {"body": {"n": "@"}} if path == "body.n" else {"body": {"list": ["@"]}}
    text = json.dumps(nested).replace('"@"', number)
    with pytest.raises(BadFrameError) as exc:
        decode_json(text, 100_000)
    assert exc.value.field == path


@FAST
@given(depth=st.integers(33, 3000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_bad_frame(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with pytest.raises(BadFrameError) as exc:
        decode_json(opener * depth + "1" + closer * depth, 100_000)
    assert "nested" in str(exc.value)


@FAST
@given(text=st.text(min_size=1, max_size=50))
def test_the_limit_is_in_utf8_bytes(text: str) -> None:
    frame = json.dumps({"t": text}, ensure_ascii=False)
    size = len(frame.encode("utf-8", "surrogatepass"))
    with pytest.raises(TooLargeError):
        decode_json(frame, size - 1)
    try:
        decode_json(frame, size)
    except BadFrameError as exc:  # only a lone surrogate may be refused at the limit
        assert "surrogate" in str(exc)


# -- the signal fast path against marshmallow ------------------------------------------------------------------
def marshmallow(frame: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return load_or_raise(_signal_schema(frame["type"]), frame)
    except BadFrameError as exc:
        return f"error {exc.field}"


candidate_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 1030), st.floats(allow_nan=False),
                             st.text(max_size=5),
                             st.sampled_from([64, 65, 256, 257, 2048, 2049]).map(lambda n: "x" * n),
                             st.lists(st.integers(), max_size=1), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
candidates = st.one_of(
    st.none(), candidate_values,
    st.dictionaries(st.sampled_from(["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "x"]),
                    candidate_values, max_size=5),
)
descriptions = st.one_of(
    candidate_values,
    st.dictionaries(st.sampled_from(["type", "sdp", "x"]),
                    st.sampled_from(["offer", "answer", "rollback", "pranswer", "", "OFFER", "v=0\r\n"]) | candidate_values,
                    max_size=3),
)
signal_frames = st.one_of(
    st.fixed_dictionaries({"type": st.just("candidate")}, optional={"candidate": candidates, "from": st.text(max_size=3)}),
    st.fixed_dictionaries({"type": st.just("description")}, optional={"description": descriptions, "x": st.integers()}),
    st.fixed_dictionaries({"type": st.sampled_from(["ping", "hangup", "connected", "listening"])},
                          optional={"x": candidate_values}),
    st.fixed_dictionaries({"type": st.just("state")}, optional={"muted": candidate_values, "cameraOff": candidate_values}),
    st.fixed_dictionaries({"type": st.just("failure")},
                          optional={"id": st.sampled_from(["UNABLE_TO_CONNECT", "NO_CAMERA_ACCESS", "BORED"]) | candidate_values}),
)


@settings(max_examples=600, deadline=None)
@given(frame=signal_frames)
def test_fast_path_is_equivalent_to_the_schema(frame: dict[str, Any]) -> None:
    expected = marshmallow(frame)
    fast = _fast_signal_frame(frame["type"], frame)
    if fast is not None:
        assert fast == expected, (frame, fast, expected)
    try:
        got: dict[str, Any] | str = load_signal_frame(frame)[0]
    except BadFrameError as exc:
        got = f"error {exc.field}"
    assert got == expected
