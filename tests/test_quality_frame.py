"""The `quality` signaling frame (issue 17, PROTOCOL §5 "Connection quality"): one validation
contract for marshmallow (schemas.QualityFrameSchema) and the browser (quality.js
validQualityFrame), the relay to the other participant, its rate limit, and no relay before the Accept."""

from __future__ import annotations

from typing import Any

import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from test_signaling import Peer

from flask_lpcall.core.schemas import validate_server_signal_frame, validate_signal_frame
from flask_lpcall.errors import BadFrameError

GOOD = {"type": "quality", "level": "poor", "reason": "loss", "rttMs": 12, "lossPct": 15.5, "jitterMs": 3, "outKbps": 900.5}

#: (name, frame, the field at fault or None when valid)
VECTORS: list[tuple[str, dict[str, Any], str | None]] = [
    ("full", GOOD, None),
    ("level only", {"type": "quality", "level": "good"}, None),
    ("nulls", {"type": "quality", "level": "lost", "reason": None, "rttMs": None, "lossPct": None,
               "jitterMs": None, "outKbps": None}, None),
    ("each level fair", {"type": "quality", "level": "fair", "reason": "bandwidth"}, None),
    ("no level", {"type": "quality"}, "level"),
    ("unknown level", {**GOOD, "level": "great"}, "level"),
    ("unknown reason", {**GOOD, "reason": "gremlins"}, "reason"),
    ("loss over 100", {**GOOD, "lossPct": 100.5}, "lossPct"),
    ("negative rtt", {**GOOD, "rttMs": -1}, "rttMs"),
    ("rtt as text", {**GOOD, "rttMs": "12"}, "rttMs"),
    ("jitter as bool", {**GOOD, "jitterMs": True}, "jitterMs"),
    ("bitrate too big", {**GOOD, "outKbps": 2e6}, "outKbps"),
    ("unknown key", {**GOOD, "ssid": "home"}, "ssid"),
    ("counters", {**GOOD, "iceRestarts": 2, "networkSwitches": 0}, None),
    ("counter not whole", {**GOOD, "iceRestarts": 1.5}, "iceRestarts"),
    ("counter negative", {**GOOD, "networkSwitches": -1}, "networkSwitches"),
    ("counter as text", {**GOOD, "networkSwitches": "1"}, "networkSwitches"),
    ("audio only", {**GOOD, "audioOnly": True}, None),
    ("audio only not bool", {**GOOD, "audioOnly": 1}, "audioOnly"),
]


def _field(frame: dict[str, Any]) -> str | None:
    try:
        validate_signal_frame(frame)
    except BadFrameError as exc:
        return exc.field
    return None


@pytest.mark.parametrize(("name", "frame", "field"), VECTORS, ids=[v[0] for v in VECTORS])
def test_marshmallow_rules(name: str, frame: dict[str, Any], field: str | None) -> None:
    assert _field(frame) == field


def test_the_relayed_frame_is_a_known_server_frame() -> None:
    assert validate_server_signal_frame({**GOOD, "from": "consumer"})["level"] == "poor"


@pytest.mark.browser
def test_quality_js_agrees_with_marshmallow(browser: Any, live_server: Any) -> None:
    server = live_server(make_app())
    page = browser.new_context().new_page()
    page.goto(server.url + "/lpcall/static/lpcall/quality.js")
    verdicts = page.evaluate(
        """async (frames) => { const q = await import('/lpcall/static/lpcall/quality.js');
           return frames.map((f) => q.validQualityFrame(f)); }""",
        [v[1] for v in VECTORS],
    )
    assert verdicts == [v[2] is None for v in VECTORS]


def _accepted(app: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    calls, _ = services(app)
    setup = conversation(app)
    agent_info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    return agent_info, calls.accept(setup.consumer_id, cobrowse_payload(agent_info))


def test_quality_is_relayed_validated_and_rate_limited(live_server: Any) -> None:
    app = make_app(LPCALL_INVITE_TTL=60, LPCALL_RECONNECT_GRACE=30)
    server = live_server(app)
    agent_info, consumer_info = _accepted(app)
    agent = Peer(server.ws_url, agent_info["token"])
    consumer = Peer(server.ws_url, consumer_info["token"])
    agent.next("joined")
    consumer.next("joined")
    consumer.send(GOOD)
    assert agent.next("quality") == {**GOOD, "from": "consumer"}
    consumer.send({**GOOD, "level": "lost"})  # within 0.5 s of the first: dropped, no error
    consumer.send({**GOOD, "rttMs": "slow"})
    err = consumer.next("error")
    assert err["code"] == "BAD_FRAME" and err["field"] == "rttMs"
    agent.send({"type": "quality", "level": "good"})
    assert consumer.next("quality") == {"type": "quality", "level": "good", "from": "agent"}
    consumer.send({"type": "state", "muted": True, "cameraOff": False})
    agent.next("state")  # frames are relayed in order: the dropped `lost` would have come before
    assert [f for f in agent.frames if f["type"] == "quality"] == []
    for p in (agent, consumer):
        p.close()
