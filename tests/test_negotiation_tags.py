"""The negotiation tag `gen` of description / candidate frames (issue 19, PROTOCOL §5): optional,
validated by the signaling schema (bad values name the field), kept by the relay's fast path exactly
as marshmallow loads it, and part of the relayed frames the Python peer validates."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flask_lpcall.core.schemas import (
    _fast_signal_frame,
    _signal_schema,
    load_or_raise,
    load_signal_frame,
    validate_server_signal_frame,
)
from flask_lpcall.errors import BadFrameError

GENS: list[Any] = ["a1b2c3d4", "a1b2c3d4:a1", "s.1_2-3:c17", "x" * 64, "x" * 65, "", "a b", "a/1", "é", None, 5, True, ["a"], {}]
BODIES: list[dict[str, Any]] = [
    {"type": "description", "description": {"type": "offer", "sdp": "v=0\r\n"}},
    {"type": "description", "description": {"type": "answer", "sdp": "v=0\r\n"}},
    {"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0",
                                        "sdpMLineIndex": 0, "usernameFragment": "u"}},
    {"type": "candidate", "candidate": None},
    {"type": "candidate", "candidate": "bad"},
    {"type": "ping"},
]


def frames() -> list[dict[str, Any]]:
    return [{**body, "gen": gen} for body, gen in itertools.product(BODIES, GENS)]


def marshmallow(frame: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return load_or_raise(_signal_schema(frame["type"]), frame)
    except BadFrameError as exc:
        return f"error {exc.field}"


@pytest.mark.parametrize("frame", frames(), ids=lambda f: str(f)[:90])
def test_gen_is_validated_and_the_fast_path_stays_equivalent(frame: dict[str, Any]) -> None:
    expected = marshmallow(frame)
    fast = _fast_signal_frame(frame["type"], frame)
    if fast is not None:
        assert fast == expected
    try:
        got: dict[str, Any] | str = load_signal_frame(frame)[0]
    except BadFrameError as exc:
        got = f"error {exc.field}"
    assert got == expected
    good_gen = isinstance(frame["gen"], str) and 1 <= len(frame["gen"]) <= 64 and frame["gen"].isascii() \
        and all(ch.isalnum() or ch in "_.:-" for ch in frame["gen"])
    if frame.get("candidate") == "bad":
        assert isinstance(got, str)  # refused, whichever field it names first
    elif frame["type"] == "ping" or not good_gen:
        assert got == "error gen", got  # only description and candidate frames carry a tag
    else:
        assert got == frame and fast == frame  # kept as sent: the relay forwards the client's own text


def test_a_plain_tagged_frame_takes_the_fast_path_and_is_exact() -> None:
    frame = {"type": "description", "description": {"type": "offer", "sdp": "v=0\r\n"}, "gen": "k3j2:a1"}
    assert load_signal_frame(frame) == (frame, True)
    cand = {"type": "candidate", "candidate": {"candidate": "c", "usernameFragment": "u"}, "gen": "k3j2"}
    assert load_signal_frame(cand) == (cand, True)


def test_relayed_frames_keep_the_tag_for_the_python_peer() -> None:
    relayed = {"type": "description", "description": {"type": "answer", "sdp": "v=0\r\n"}, "gen": "k3j2:a1", "from": "consumer"}
    assert validate_server_signal_frame(relayed)["gen"] == "k3j2:a1"
    cand = {"type": "candidate", "candidate": None, "gen": "k3j2", "from": "agent"}
    assert validate_server_signal_frame(cand)["gen"] == "k3j2"
    untagged = {"type": "candidate", "candidate": None, "from": "agent"}
    assert "gen" not in validate_server_signal_frame(untagged)
    with pytest.raises(BadFrameError) as err:
        validate_server_signal_frame({**cand, "gen": "a b"})
    assert err.value.field == "gen"


def test_a_refused_description_or_candidate_names_its_gen_in_the_error(live_server: Any) -> None:
    """Over the real /ws/call socket: the error frame of a refused tagged frame carries its `gen` (its
    sender negotiates again, engine.js `_refused`); an untagged or badly tagged one has none; the call
    goes on."""
    from test_signaling import Peer, _invite_accept, make_app

    app = make_app()
    server = live_server(app)
    _, agent_info, consumer_info = _invite_accept(app)
    agent, consumer = Peer(server.ws_url, agent_info["token"]), Peer(server.ws_url, consumer_info["token"])
    agent.next("joined")
    consumer.next("joined")
    cases = [
        ({"type": "description", "description": {"type": "answer", "sdp": ""}, "gen": "k3j2:a1"}, "description.sdp", "k3j2:a1"),
        ({"type": "candidate", "candidate": {"candidate": "x", "sdpMLineIndex": -1}, "gen": "k3j2"}, "candidate.sdpMLineIndex", "k3j2"),
        ({"type": "description", "description": {"type": "answer", "sdp": ""}}, "description.sdp", None),
        ({"type": "description", "description": {"type": "answer", "sdp": ""}, "gen": "a b"}, None, None),
    ]
    for frame, field, gen in cases:
        consumer.send(frame)
        err = consumer.next("error")
        assert err["code"] == "BAD_FRAME" and err.get("gen") == gen, (frame, err)
        if field:
            assert err["field"] == field, err
    consumer.send({"type": "description", "description": {"type": "answer", "sdp": "still here"}, "gen": "k3j2:a1"})
    assert agent.next("description")["gen"] == "k3j2:a1"
