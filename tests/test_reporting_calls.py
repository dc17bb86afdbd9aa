"""Records written by real calls: the call manager, the call HTTP API and the signaling socket
on a live server (real WebSockets), one call per outcome; then read back with the report CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from support import wait_for
from test_signaling import Peer

from flask_lpcall.cli import lpcall_cli
from flask_lpcall.state import get_state


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return make_app(LPCALL_INVITE_TTL=1, LPCALL_RECONNECT_GRACE=30, LPCALL_REPORT_DB=str(tmp_path / "calls.sqlite3"))


def records(app: Any, n: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]]:
        get_state(app).reports.flush(5)
        got = get_state(app).reports.query()
        return got if len(got) >= n else []

    return wait_for(ready, timeout=10, message=f"{n} collaboration-session record(s)")


def test_one_record_per_outcome_from_real_calls(app: Any, live_server: Any) -> None:
    server = live_server(app)
    calls, _ = services(app)
    client = app.test_client()

    # completed: accepted over HTTP, both participants on the signaling socket, ICE connected, consumer hangs up
    s1 = conversation(app)
    a1 = calls.invite(BOB, s1.conv_id, "VIDEO_CALL")
    accepted = client.post("/lpcall/api/call/accept", json=cobrowse_payload(a1),
                           headers={"Authorization": f"Bearer {s1.consumer_token}"})
    assert accepted.status_code == 200, accepted.json
    agent = Peer(server.ws_url, a1["token"])
    agent.next("joined")
    consumer = Peer(server.ws_url, accepted.json["token"])
    consumer.next("joined")
    agent.send({"type": "connected"})
    consumer.send({"type": "connected"})
    wait_for(lambda: calls.get(a1["serviceId"]).connected_ts, message="connectedTs stamped")
    consumer.send({"type": "hangup"})
    assert agent.next("closed")["reason"] == "hangup_consumer"
    agent.close()
    consumer.close()

    # declined over HTTP
    s2 = conversation(app)
    a2 = calls.invite(BOB, s2.conv_id, "VOICE_CALL")
    declined = client.post("/lpcall/api/call/decline", json=cobrowse_payload(a2),
                           headers={"Authorization": f"Bearer {s2.consumer_token}"})
    assert declined.json["sessionState"] == "CLOSED"

    # cancelled by the agent
    s3 = conversation(app)
    a3 = calls.invite(BOB, s3.conv_id, "VIDEO_CALL")
    calls.cancel(BOB, a3["serviceId"])

    # expired: nobody answers within LPCALL_INVITE_TTL (1 s); the sweeper closes it
    s4 = conversation(app)
    a4 = calls.invite(BOB, s4.conv_id, "VOICE_CALL")
    wait_for(lambda: calls.get(a4["serviceId"]) is None, timeout=10, message="the invitation expiring")

    # error: the consumer's browser reports NO_CAMERA_ACCESS on the signaling socket
    s5 = conversation(app)
    a5 = calls.invite(BOB, s5.conv_id, "VIDEO_CALL")
    c5 = calls.accept(s5.consumer_id, cobrowse_payload(a5))
    consumer5 = Peer(server.ws_url, c5["token"])
    consumer5.next("joined")
    consumer5.send({"type": "failure", "id": "NO_CAMERA_ACCESS"})
    assert consumer5.next("closed")["errorId"] == "NO_CAMERA_ACCESS"
    consumer5.close()

    got = {r["service_id"]: r for r in records(app, 5)}
    assert len(got) == 5
    done = got[a1["serviceId"]]
    assert done["outcome"] == "completed" and done["mode"] == "VIDEO_CALL"
    assert done["participants"] == 2 and done["ended_by"] == "consumer" and done["close_reason"] == "hangup_consumer"
    assert done["agent_id"] == "bob" and done["conversation_id"] == s1.conv_id
    assert done["invited_at"] <= done["accepted_at"] <= done["connected_at"] <= done["ended_at"]
    assert done["duration_seconds"] == pytest.approx((done["ended_at"] - done["connected_at"]) / 1000, abs=0.002)

    dec = got[a2["serviceId"]]
    assert (dec["outcome"], dec["ended_by"], dec["mode"], dec["accepted_at"], dec["participants"]) == (
        "declined", "consumer", "VOICE_CALL", None, 0)
    can = got[a3["serviceId"]]
    assert (can["outcome"], can["ended_by"], can["duration_seconds"]) == ("cancelled", "agent", None)
    exp = got[a4["serviceId"]]
    assert (exp["outcome"], exp["ended_by"]) == ("expired", "system")
    assert exp["ended_at"] - exp["invited_at"] >= 1000
    err = got[a5["serviceId"]]
    assert (err["outcome"], err["error_id"], err["ended_by"], err["participants"]) == (
        "error", "NO_CAMERA_ACCESS", "consumer", 1)

    # and the report CLI sees the same five calls
    out = app.test_cli_runner().invoke(lpcall_cli, ["report", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert sorted(r["outcome"] for r in json.loads(out.output)["records"]) == [
        "cancelled", "completed", "declined", "error", "expired"]


def test_a_slow_or_broken_report_db_never_breaks_the_call(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    app = make_app(LPCALL_REPORT_DB=str(blocker / "x.sqlite3"))
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    calls.accept(setup.consumer_id, cobrowse_payload(info))
    closed = calls.hangup("agent", BOB.id, info["serviceId"])
    assert closed.state == "CLOSED" and calls.get(info["serviceId"]) is None
    assert get_state(app).reports.flush(10) and get_state(app).reports.writer.failures == 1
