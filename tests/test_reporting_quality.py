"""The connection-quality summary of a collaboration-session record (issue 17 part 5): the sides'
`quality` frames over the real signaling socket are folded into the call, the record gets median RTT,
loss, time at poor, ICE restarts and network switches, the manager dashboard shows them, and a
database made before these columns gets them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from callkit import BOB, cobrowse_payload, conversation, make_app, services
from support import wait_for
from test_reporting_calls import records
from test_reporting_dashboard import login
from test_reporting_dashboard import make_app as dashboard_app
from test_signaling import Peer

from flask_lpcall.core.records import COLUMNS, ReportStore, fold_quality, quality_summary, record_from_call
from flask_lpcall.state import get_state


def test_fold_and_summary() -> None:
    acc = None
    frames = [  # (t, role, frame)
        (0.0, "consumer", {"level": "good", "rttMs": 40, "lossPct": 0}),
        (0.5, "agent", {"level": "good", "rttMs": 60, "lossPct": 0}),
        (1.0, "consumer", {"level": "poor", "reason": "loss", "rttMs": 50, "lossPct": 15, "iceRestarts": 0}),
        (4.0, "consumer", {"level": "lost", "rttMs": None, "lossPct": None, "networkSwitches": 1, "iceRestarts": 1}),
        (6.0, "consumer", {"level": "good", "rttMs": 45, "lossPct": 1, "networkSwitches": 1, "iceRestarts": 1}),
        (7.0, "agent", {"level": "good", "rttMs": 55, "lossPct": 0, "iceRestarts": 1}),
        (30.0, "agent", {"level": "poor", "rttMs": 70}),
        (60.0, "agent", {"level": "good"}),  # 30 s of silence after poor: counted as 10 s at most
    ]
    for t, role, frame in frames:
        acc = fold_quality(acc, role, {"type": "quality", **frame}, t)
    s = quality_summary(acc)
    assert s["rtt_median_ms"] == 52.5  # 40 45 50 | 55 60 70
    assert s["loss_pct"] == 3.2  # consumer 0 15 1, agent 0 0
    assert s["poor_seconds"] == 10.0  # consumer: 3 s poor + 2 s lost = 5; agent: 10 (capped)
    assert s["ice_restarts"] == 1 and s["network_switches"] == 1
    assert quality_summary(None) == dict.fromkeys(("rtt_median_ms", "loss_pct", "poor_seconds", "ice_restarts",
                                                   "network_switches"))
    for _ in range(200):  # samples stay bounded
        acc = fold_quality(acc, "agent", {"type": "quality", "level": "good", "rttMs": 5}, 61.0)
    assert len(acc["agent"]["rtt"]) <= 64


def test_record_from_call_carries_the_summary() -> None:
    call = {"serviceId": "s1", "mode": "VIDEO_CALL", "createdTs": 1_000, "acceptedTs": 2_000, "endedTs": 5_000,
            "closeReason": "hangup_agent",
            "quality": {"agent": {"rtt": [10, 20, 30], "loss": [2.0], "poor": 1.5, "restarts": 2, "switches": 1}}}
    r = record_from_call(call)
    assert (r["rtt_median_ms"], r["loss_pct"], r["poor_seconds"], r["ice_restarts"], r["network_switches"]) == (20.0, 2.0, 1.5, 2, 1)


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE collaboration_sessions (service_id TEXT PRIMARY KEY, conversation_id TEXT, agent_id TEXT,"
                 " agent_name TEXT, mode TEXT NOT NULL, outcome TEXT NOT NULL, error_id TEXT, close_reason TEXT,"
                 " ended_by TEXT, participants INTEGER NOT NULL DEFAULT 0, invited_at INTEGER NOT NULL,"
                 " accepted_at INTEGER, connected_at INTEGER, ended_at INTEGER, duration_seconds REAL,"
                 " recorded_at INTEGER NOT NULL)")
    conn.execute("INSERT INTO collaboration_sessions VALUES ('old', NULL, 'bob', 'Bob', 'VOICE_CALL', 'completed',"
                 " NULL, 'hangup_agent', 'agent', 2, 1000, 1500, 1600, 9000, 7.4, 9001)")
    conn.commit()
    conn.close()
    store = ReportStore(str(path))
    store.add(record_from_call({"serviceId": "new", "mode": "VIDEO_CALL", "createdTs": 2_000, "closeReason": "declined",
                                "quality": {"consumer": {"rtt": [80], "poor": 0.0}}}))
    got = {r["service_id"]: r for r in store.query()}
    assert set(got["old"]) == set(COLUMNS) and got["old"]["rtt_median_ms"] is None
    assert got["new"]["rtt_median_ms"] == 80.0


def test_quality_frames_of_a_real_call_reach_the_record_and_the_dashboard(tmp_path: Path, live_server: Any) -> None:
    app = make_app(LPCALL_INVITE_TTL=60, LPCALL_RECONNECT_GRACE=30, LPCALL_REPORT_DB=str(tmp_path / "calls.sqlite3"))
    server = live_server(app)
    calls, _ = services(app)
    setup = conversation(app)
    agent_info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    consumer_info = calls.accept(setup.consumer_id, cobrowse_payload(agent_info))
    agent = Peer(server.ws_url, agent_info["token"])
    consumer = Peer(server.ws_url, consumer_info["token"])
    agent.next("joined")
    consumer.next("joined")
    agent.send({"type": "connected"})
    sid = agent_info["serviceId"]
    wait_for(lambda: calls.get(sid).connected_ts, message="connectedTs stamped")
    sent = [({"level": "poor", "reason": "loss", "rttMs": 120, "lossPct": 15.0, "networkSwitches": 1, "iceRestarts": 1}, agent),
            ({"level": "good", "rttMs": 100, "lossPct": 0.0, "networkSwitches": 1, "iceRestarts": 1}, consumer)]
    for frame, sender in sent:
        sender.send({"type": "quality", **frame})
        receiver = consumer if sender is agent else agent
        receiver.next("quality")
    # the agent's next frame (after the 0.5 s relay interval) closes its poor stretch
    def relayed() -> dict[str, Any] | None:
        agent.send({"type": "quality", "level": "good", "rttMs": 110, "iceRestarts": 1})
        try:
            return consumer.next("quality", timeout=0.6)
        except TimeoutError:
            return None  # dropped: within the 0.5 s relay interval

    wait_for(relayed, timeout=5, message="second agent frame relayed")
    consumer.send({"type": "hangup"})
    assert agent.next("closed")["reason"] == "hangup_consumer"
    agent.close()
    consumer.close()
    (rec,) = [r for r in records(app, 1) if r["service_id"] == sid]
    assert rec["rtt_median_ms"] == 110.0
    assert rec["loss_pct"] == 7.5
    assert rec["poor_seconds"] > 0
    assert rec["ice_restarts"] == 1 and rec["network_switches"] == 2
    dash = dashboard_app(tmp_path / "dash")  # an app whose agent may view reports, with the record
    get_state(dash).reports.store.add(rec)
    html = login(dash, "bob").get("/lpcall/agent/reports").get_data(as_text=True)
    row = html[html.index(f'data-service-id="{sid}"'):]
    row = row[:row.index("</tr>")]
    assert '<td data-col="rtt">110 ms</td>' in row and '<td data-col="loss">7.5 %</td>' in row
    assert '<td data-col="restarts">1</td>' in row and '<td data-col="switches">2</td>' in row
    assert "Median round trip" in html and "Network switches" in html
