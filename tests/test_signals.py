"""Blinker signals for CRM hooks: order, payload, isolation from failing receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from support import wait_for
from test_signaling import Peer

from flask_lpcall import signals
from flask_lpcall.state import get_state

CALL_SIGNALS = [
    ("invited", signals.call_invited),
    ("accepted", signals.call_accepted),
    ("connected", signals.call_connected),
    ("ended", signals.call_ended),
]


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return make_app(LPCALL_REPORT_DB=str(tmp_path / "r.sqlite3"))


def record_signals(app: Any) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[Any]]:
    got: list[tuple[str, Any, dict[str, Any]]] = []
    keep = []
    for name, signal in CALL_SIGNALS:
        def receiver(sender: Any, call: dict[str, Any], name: str = name) -> None:
            got.append((name, sender, call))

        keep.append(receiver)
        signal.connect(receiver, app)
    return got, keep


def completed_call(app: Any, server: Any) -> str:
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    joined = calls.accept(setup.consumer_id, cobrowse_payload(info))
    agent = Peer(server.ws_url, info["token"])
    agent.next("joined")
    consumer = Peer(server.ws_url, joined["token"])
    consumer.next("joined")
    consumer.send({"type": "connected"})
    agent.send({"type": "connected"})  # a second "connected" sends no second signal
    wait_for(lambda: calls.get(info["serviceId"]).connected_ts, message="connectedTs")
    agent.send({"type": "hangup"})
    assert consumer.next("closed")["reason"] == "hangup_agent"
    agent.close()
    consumer.close()
    return str(info["serviceId"])


def test_signals_fire_in_order_for_a_completed_call(app: Any, live_server: Any) -> None:
    got, _keep = record_signals(app)
    server = live_server(app)
    service_id = completed_call(app, server)
    wait_for(lambda: len(got) >= 4, message="four signals")
    assert [n for n, _, _ in got] == ["invited", "accepted", "connected", "ended"]
    assert all(sender is app for _, sender, _ in got)
    assert {c["serviceId"] for _, _, c in got} == {service_id}
    assert [c["sessionState"] for _, _, c in got] == ["INVITED", "ACCEPTED", "ACCEPTED", "CLOSED"]
    invited, accepted, connected, ended = (c for _, _, c in got)
    assert invited["acceptedTs"] is None and accepted["acceptedTs"] and connected["connectedTs"]
    assert ended["closeReason"] == "hangup_agent" and ended["endedBy"] == "agent" and ended["participants"] == 2
    assert ended["endedTs"] >= connected["connectedTs"] >= accepted["acceptedTs"] >= invited["createdTs"]
    for call in (invited, ended):
        assert {"serviceId", "conversationId", "agentId", "mode", "sessionState", "createdTs", "expires", "acceptedTs",
                "connectedTs", "endedTs", "closeReason", "errorId", "endedBy", "participants"} <= set(call)


def test_signals_of_another_app_are_not_received(app: Any, live_server: Any) -> None:
    other = make_app()
    got, _keep = record_signals(other)
    completed_call(app, live_server(app))
    assert got == []


def test_a_failing_crm_receiver_breaks_neither_the_call_nor_the_record(app: Any, live_server: Any) -> None:
    def broken_crm(sender: Any, call: dict[str, Any]) -> None:
        raise ConnectionError("CRM is down")

    for _, signal in CALL_SIGNALS:
        signal.connect(broken_crm, app)
    got, _keep = record_signals(app)
    service_id = completed_call(app, live_server(app))
    wait_for(lambda: len(got) >= 4, message="the other receivers still get every signal")
    get_state(app).reports.flush(5)
    (record,) = get_state(app).reports.query()
    assert record["service_id"] == service_id and record["outcome"] == "completed"


def test_crm_example_from_the_readme(app: Any) -> None:
    """The README's example hook, run as written there."""
    crm: list[dict[str, Any]] = []

    @signals.call_ended.connect_via(app)
    def log_call_in_crm(sender: Any, call: dict[str, Any], **extra: Any) -> None:
        crm.append({
            "conversation": call["conversationId"],
            "agent": call["agentId"],
            "mode": call["mode"],
            "outcome": call["closeReason"],
            "seconds": (call["endedTs"] - (call["connectedTs"] or call["acceptedTs"] or call["endedTs"])) // 1000,
        })

    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    calls.decline(setup.consumer_id, cobrowse_payload(info))
    assert crm == [{"conversation": setup.conv_id, "agent": "bob", "mode": "VOICE_CALL", "outcome": "declined", "seconds": 0}]
