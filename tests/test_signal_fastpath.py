"""The signaling relay's hand-written fast path (issue 7) gives exactly what marshmallow gives.

``schemas._fast_signal_frame`` may only accept frames the marshmallow schema accepts, and must return
the same data; every other frame (all the invalid ones) falls through to marshmallow, which names the
bad field. Checked here over the valid shapes, the invalid cases of test_signaling, and the variants of
each field at and around its limits.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from flask_lpcall.core.schemas import (
    _fast_signal_frame,
    _signal_schema,
    load_or_raise,
    load_signal_frame,
    validate_signal_frame,
)
from flask_lpcall.errors import BadFrameError
from flask_lpcall.sockets.call import _wire_text

VALUES: list[Any] = [None, "", "0", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "x" * 2048, "x" * 2049, 0, 1, -1, 1024,
                     1025, True, False, 1.0, 0.5, [], {}, ["a"], {"a": 1}]
CANDIDATE_FIELDS = ["candidate", "sdpMid", "sdpMLineIndex", "usernameFragment", "extra"]


def marshmallow(frame: Any) -> dict[str, Any] | str:
    try:
        return load_or_raise(_signal_schema(frame["type"]), frame)
    except BadFrameError as exc:
        return f"error {exc.field}"


def frames() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "candidate", "candidate": None},
        {"type": "candidate"},
        {"type": "candidate", "candidate": None, "from": "agent"},
        {"type": "candidate", "candidate": {"candidate": "x", "sdpMLineIndex": -1}},
        {"type": "candidate", "candidate": "x"},
        {"type": "candidate", "candidate": ["x"]},
        {"type": "description", "description": {"type": "offer", "sdp": 5}},
        {"type": "description", "description": {"type": "offer"}},
        {"type": "description", "description": {"type": ["offer"], "sdp": ""}},
        {"type": "description", "description": {"type": "offer", "sdp": "v=0", "x": 1}},
        {"type": "description", "description": {"sdp": "v=0"}},
        {"type": "description", "description": None},
        {"type": "description", "description": {"type": "answer", "sdp": "s" * 200_000}},
        {"type": "description", "description": {"type": "answer", "sdp": "s" * 200_001}},
        {"type": "description"},
        {"type": "state", "muted": "yes", "cameraOff": False},
        {"type": "state", "muted": True, "cameraOff": False},
        {"type": "failure", "id": "BORED"},
        {"type": "failure", "id": "UNABLE_TO_CONNECT"},
        {"type": "ping"}, {"type": "hangup"}, {"type": "connected"},
        {"type": "ping", "x": 1}, {"type": "hangup", "id": None},
    ]
    for sdp_type in ["offer", "answer", "rollback", "pranswer", "OFFER", "", None, 1]:
        out.append({"type": "description", "description": {"type": sdp_type, "sdp": "v=0\r\n"}})
    for name, value in itertools.product(CANDIDATE_FIELDS, VALUES):
        out.append({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", name: value}})
    for mid, index, ufrag in itertools.product([None, "0", "x" * 65], [None, 0, 1024, 1025, True], [None, "u", 5]):
        out.append({"type": "candidate", "candidate": {"candidate": "c", "sdpMid": mid, "sdpMLineIndex": index,
                                                        "usernameFragment": ufrag}})
    return out


@pytest.mark.parametrize("frame", frames(), ids=lambda f: str(f)[:80])
def test_fast_path_accepts_only_what_marshmallow_accepts_and_returns_the_same(frame: dict[str, Any]) -> None:
    expected = marshmallow(frame)
    fast = _fast_signal_frame(frame["type"], frame)
    if fast is not None:
        assert fast == expected
    got: dict[str, Any] | str
    try:
        got = validate_signal_frame(frame)
    except BadFrameError as exc:
        got = f"error {exc.field}"
    assert got == expected


def test_the_relay_frames_take_the_fast_path_and_are_copies() -> None:
    frame = {"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host 1",
                                                "sdpMid": "0", "sdpMLineIndex": 0}}
    fast = _fast_signal_frame("candidate", frame)
    assert fast == marshmallow(frame)
    assert fast is not None and fast["candidate"] is not frame["candidate"]
    desc = {"type": "description", "description": {"type": "offer", "sdp": "v=0\r\n"}}
    assert _fast_signal_frame("description", desc) == marshmallow(desc)


@pytest.mark.parametrize("frame", frames(), ids=lambda f: str(f)[:80])
def test_a_frame_relayed_as_the_clients_text_is_exactly_what_validation_gives(frame: dict[str, Any]) -> None:
    """The relay forwards the client's own text (plus ``from``) only for a frame validation keeps as is:
    same keys, same values, same JSON types (1 is not 1.0 or true); the peer parses exactly the loaded frame."""
    try:
        loaded, verbatim = load_signal_frame(frame)
    except BadFrameError:
        return
    if frame["type"] == "description" and "sdp" not in frame["description"]:
        assert not verbatim  # the loaded frame has sdp "" added: relayed re-encoded
    if frame["type"] not in ("candidate", "description"):
        return  # only these two are relayed
    if verbatim:
        assert json.dumps(loaded, sort_keys=True) == json.dumps(frame, sort_keys=True)
        for text in (json.dumps(frame), json.dumps(frame, indent=1) + "\n  "):
            wire = _wire_text(text, "agent")
            assert wire is not None and json.loads(wire) == {**loaded, "from": "agent"}
    else:
        assert frame["type"] == "description"  # every valid candidate frame takes the fast path
