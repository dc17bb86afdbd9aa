"""Resume on the server (issue 5), no browser: presence, grace, heartbeats, tabs, the resume API.

Real sockets against a live server; the store is the app's own (memory) or a real redis-server
for the cross-worker case.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
from callkit import BOB, call_keys, cobrowse_payload, conversation, make_app, services
from support import wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_lpcall.core.presence import Presence


class Peer:
    """A signaling participant (``?tab=`` like the browser's call engine)."""

    def __init__(self, url: str, token: str, tab: str | None = None) -> None:
        q = f"token={quote(token)}" + (f"&tab={quote(tab)}" if tab else "")
        self.ws = connect(f"{url}/lpcall/ws/call?{q}", open_timeout=5, close_timeout=1)
        self.frames: list[dict[str, Any]] = []

    def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        for i, f in enumerate(self.frames):
            if f["type"] == kind:
                return self.frames.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame["type"] == kind:
                return frame
            self.frames.append(frame)

    def close(self) -> None:
        self.ws.close()


def _call(app: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    calls, _ = services(app)
    setup = conversation(app)
    agent_info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    consumer_info = calls.accept(setup.consumer_id, cobrowse_payload(agent_info))
    return setup, agent_info, consumer_info


class InCall(NamedTuple):
    app: Any
    server: Any
    calls: Any
    sid: str
    consumer_token: str
    agent: Peer
    joined: dict[str, Any]


def _agent_in_call(live_server: Any, **settings: Any) -> InCall:
    """A live server with an accepted call whose agent has joined (from tab ``agent-tab``)."""
    app = make_app(**settings)
    server = live_server(app)
    calls, _ = services(app)
    _, a_info, c_info = _call(app)
    agent = Peer(server.ws_url, a_info["token"], "agent-tab")
    joined = agent.next("joined")
    return InCall(app, server, calls, a_info["serviceId"], c_info["token"], agent, joined)


# -- presence documents (pure, over the memory store) -----------------------------------------
def test_presence_claim_beat_release_and_staleness() -> None:
    from flask_lpcall.store.memory import MemoryStore

    store = MemoryStore()
    p = Presence(store, heartbeat=1.0, grace=5.0)
    p.claim("s", "consumer", "c1", "tab-A", now=100.0)
    assert p.is_present("s", "consumer", now=101.0)
    assert not p.is_present("s", "consumer", now=103.0)  # 2.5 heartbeats without a sign of life
    assert p.gone_since("s", "consumer", {}, fallback=0.0, now=103.0) == 100.0  # the stale doc's last beat
    assert p.beat("s", "consumer", "c1", now=102.9)
    assert p.is_present("s", "consumer", now=103.0)
    # the same tab takes over (a reload), a second tab is refused while the first is alive
    p.claim("s", "consumer", "c2", "tab-A", now=103.0)
    with pytest.raises(Exception) as exc:
        p.claim("s", "consumer", "c3", "tab-B", now=103.5)
    assert getattr(exc.value, "code", None) == "CALL_IN_OTHER_TAB"
    assert not p.beat("s", "consumer", "c1", now=103.5)  # c1 was replaced
    assert not p.release("s", "consumer", "c1")  # a replaced socket does not drop the new one
    # another tab may take a role whose holder died (no heartbeat for 2.5 intervals)
    p.claim("s", "consumer", "c4", "tab-B", now=110.0)
    assert p.release("s", "consumer", "c4")
    assert store.get("presence:s:consumer") is None
    assert p.beat("s", "consumer", "c4") and store.get("presence:s:consumer") is None  # never brought back
    assert p.gone_since("s", "consumer", {"consumer": 108.0}, fallback=0.0, now=111.0) == 108.0


# -- grace and heartbeats over real sockets ---------------------------------------------------------
def test_consumer_socket_gone_then_back_within_grace_keeps_the_call(live_server: Any) -> None:
    app, server, calls, sid, consumer_token, agent, joined = _agent_in_call(
        live_server, LPCALL_RECONNECT_GRACE=2, LPCALL_HEARTBEAT_INTERVAL=0.5)
    assert joined["heartbeat"] == 0.5 and joined["grace"] == 2
    consumer = Peer(server.ws_url, consumer_token, "tab-A")
    consumer.next("joined")
    agent.next("peer-joined")
    consumer.close()
    left = agent.next("peer-left")
    assert left["role"] == "consumer" and left["graceUntil"] > time.time()
    # back with a fresh token (what /api/call/resume gives) before the grace ends
    fresh = calls.join_info(calls.get(sid), "consumer")["token"]
    consumer = Peer(server.ws_url, fresh, "tab-A")
    assert consumer.next("joined")["peerPresent"] is True
    agent.next("peer-joined")
    # several grace periods later the call is still up: heartbeats keep both present
    t0 = time.monotonic()
    wait_for(lambda: time.monotonic() - t0 > 3.0, timeout=5, message="three seconds of a live call")
    assert calls.get(sid).state == "ACCEPTED"
    consumer.close()
    agent.close()
    wait_for(lambda: calls.get(sid) is None, timeout=10, message="closed after both left for good")
    assert call_keys(app) == []


def test_agent_gone_for_good_closes_with_agent_disconnected(live_server: Any) -> None:
    app, server, _calls, _sid, consumer_token, agent, _ = _agent_in_call(
        live_server, LPCALL_RECONNECT_GRACE=1, LPCALL_HEARTBEAT_INTERVAL=0.5)
    consumer = Peer(server.ws_url, consumer_token, "tab-A")
    consumer.next("joined")
    t0 = time.monotonic()
    agent.close()
    consumer.next("peer-left")
    closed = consumer.next("closed", timeout=10)
    assert time.monotonic() - t0 >= 1.0  # not before the grace period
    assert closed == {"type": "closed", "reason": "agent_disconnected", "errorId": "AGENT_DISCONNECTED", "by": "system"}
    wait_for(lambda: call_keys(app) == [], timeout=5, message="empty store")


def test_a_worker_that_dies_stops_heartbeats_and_the_call_closes_after_grace(live_server: Any) -> None:
    """No socket close at all (the worker died): the presence document goes stale, any worker's sweeper closes."""
    app = make_app(LPCALL_RECONNECT_GRACE=1, LPCALL_HEARTBEAT_INTERVAL=0.4)
    calls, _ = services(app)
    _, a_info, _ = _call(app)
    sid = a_info["serviceId"]
    # both participants "joined" on a worker that then vanished: documents written, never refreshed
    calls.participant_joined(sid, "agent", "dead-1", "t1")
    calls.participant_joined(sid, "consumer", "dead-2", "t2")
    assert calls.is_present(sid, "agent")
    wait_for(lambda: calls.get(sid) is None, timeout=10, message="swept after stale presence + grace")
    assert call_keys(app) == []


def test_second_tab_cannot_take_the_call_while_the_first_is_alive(live_server: Any) -> None:
    _app, server, calls, sid, consumer_token, agent, _ = _agent_in_call(
        live_server, LPCALL_RECONNECT_GRACE=30, LPCALL_HEARTBEAT_INTERVAL=0.5)
    first = Peer(server.ws_url, consumer_token, "tab-A")
    first.next("joined")
    agent.next("peer-joined")
    second = Peer(server.ws_url, calls.join_info(calls.get(sid), "consumer")["token"], "tab-B")
    err = second.next("error")
    assert err["code"] == "CALL_IN_OTHER_TAB" and err["field"] == "tab"
    with pytest.raises((ConnectionClosed, TimeoutError)):
        second.ws.recv(timeout=1.5)
    # the first tab and the call did not notice
    assert calls.get(sid).state == "ACCEPTED"
    assert not [f for f in agent.frames if f["type"] in ("peer-left", "closed")]
    first.ws.send(json.dumps({"type": "ping"}))
    assert first.next("pong")
    # the same tab reloading takes over its own call at once
    again = Peer(server.ws_url, calls.join_info(calls.get(sid), "consumer")["token"], "tab-A")
    assert again.next("joined")["peerPresent"] is True
    # the tab's old socket is closed as replaced at its next heartbeat; the call goes on, unnoticed
    with pytest.raises(ConnectionClosed) as gone:
        while True:
            first.ws.recv(timeout=5)
    assert gone.value.rcvd is not None and (gone.value.rcvd.code, gone.value.rcvd.reason) == (1000, "replaced")
    again.ws.send(json.dumps({"type": "ping"}))
    assert again.next("pong")
    assert calls.get(sid).state == "ACCEPTED" and calls.is_present(sid, "consumer")
    assert not [f for f in agent.frames if f["type"] in ("peer-left", "closed")]
    again.close()
    first.close()
    agent.close()


# -- the resume API -----------------------------------------------------------------------------------
def test_resume_api_refuses_foreign_closed_and_bad_requests_quietly(live_server: Any) -> None:
    app = make_app(LPCALL_RECONNECT_GRACE=30)
    client = app.test_client()
    calls, _ = services(app)
    setup, a_info, _ = _call(app)
    sid = a_info["serviceId"]
    own = {"Authorization": f"Bearer {setup.consumer_token}"}
    ok = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers=own)
    assert ok.status_code == 200 and ok.json["serviceId"] == sid and ok.json["token"]
    assert client.get("/lpcall/api/call/active", headers=own).json["call"]["serviceId"] == sid
    stranger = conversation(app, "Eve")
    r = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers={"Authorization": f"Bearer {stranger.consumer_token}"})
    assert r.status_code == 404 and r.json["error"]["code"] == "NOT_FOUND"  # not told it exists
    r = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers={"Authorization": "Bearer forged.token"})
    assert r.status_code == 401
    r = client.post("/lpcall/api/call/resume", json={"serviceId": 5}, headers=own)
    assert r.status_code == 400 and r.json["error"]["field"] == "serviceId"
    calls.hangup("agent", BOB.id, sid)
    r = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers=own)
    assert r.status_code == 404
    assert client.get("/lpcall/api/call/active", headers=own).json == {"call": None}
    assert call_keys(app) == []


# -- across workers (a real redis-server) --------------------------------------------------------
@pytest.fixture(scope="module")
def redis_url() -> Any:
    import shutil

    from servers import start_redis
    from support import require

    require("redis-server", shutil.which("redis-server") is not None, "apt-get install redis-server")
    server = start_redis()
    yield server.url
    server.stop()


def test_presence_grace_and_tabs_work_across_workers_sharing_redis(live_server: Any, redis_url: str) -> None:
    """Two apps (two workers) on one Redis: a tab conflict is seen across them, and when worker A dies
    without closing its sockets, worker B's sweeper closes the call after stale heartbeats + grace."""
    a = make_app(LPCALL_STORE=redis_url, LPCALL_RECONNECT_GRACE=1, LPCALL_HEARTBEAT_INTERVAL=0.4)
    b = make_app(LPCALL_STORE=redis_url, LPCALL_RECONNECT_GRACE=1, LPCALL_HEARTBEAT_INTERVAL=0.4)
    server_b = live_server(b)
    calls_a, _ = services(a)
    calls_b, _ = services(b)
    _, a_info, _c_info = _call(a)
    sid = a_info["serviceId"]
    assert calls_b.get(sid).state == "ACCEPTED"
    # worker A holds both participants' sockets (documents written, then never refreshed: A died)
    calls_a.participant_joined(sid, "agent", "a-conn-1", "agent-tab")
    calls_a.participant_joined(sid, "consumer", "a-conn-2", "tab-A")
    assert calls_b.is_present(sid, "consumer")
    # while A's consumer socket counts as alive, a second tab joining through B is refused
    second = Peer(server_b.ws_url, calls_b.join_info(calls_b.get(sid), "consumer")["token"], "tab-B")
    assert second.next("error")["code"] == "CALL_IN_OTHER_TAB"
    second.close()
    calls_a.stop()  # worker A is gone: no sweeper, no heartbeats
    calls_b.ensure_sweeper()
    wait_for(lambda: calls_b.get(sid) is None, timeout=15, message="B swept the call of the dead worker")
    assert call_keys(b) == []
    calls_b.stop()


def _bare_consumer(port: int, token: str, rcvbuf: int | None = None) -> socket.socket:
    """A consumer socket that never answers a WebSocket ping (and reads only when told to)."""
    raw = socket.socket()
    if rcvbuf is not None:  # before connect: the window the server may fill
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(5)
    raw.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (f"GET /lpcall/ws/call?token={quote(token)}&tab=t HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    )
    assert b"101" in raw.recv(1024).split(b"\r\n")[0]
    return raw


def test_a_silent_client_socket_is_detected_by_heartbeats_and_counts_as_gone(live_server: Any) -> None:
    """A visitor whose network died: its socket neither closes nor answers the server's WebSocket pings."""
    app, server, calls, sid, consumer_token, agent, _ = _agent_in_call(
        live_server, LPCALL_RECONNECT_GRACE=1, LPCALL_HEARTBEAT_INTERVAL=0.5)
    raw = _bare_consumer(server.port, consumer_token)
    agent.next("peer-joined")
    assert calls.is_present(sid, "consumer")
    t0 = time.monotonic()
    left = agent.next("peer-left", timeout=10)  # two missed pongs: the server drops the socket
    assert left["role"] == "consumer" and time.monotonic() - t0 < 5
    closed = agent.next("closed", timeout=10)  # and the grace period ends the call
    assert closed["reason"] == "consumer_disconnected"
    raw.close()
    agent.close()
    wait_for(lambda: call_keys(app) == [], timeout=5, message="empty store")


def test_a_frozen_client_that_reads_nothing_is_cut_off_and_counts_as_gone(live_server: Any) -> None:
    """A frozen tab: it reads nothing, so frames for it fill the connection and the server's writer
    blocks behind them (the close frame for the missed pong cannot go out either). The keepalive
    cuts the TCP connection one heartbeat later; the agent sees the visitor leave and the call waits
    out the grace period, as for any lost visitor."""
    app, server, calls, sid, consumer_token, agent, _ = _agent_in_call(
        live_server, LPCALL_RECONNECT_GRACE=30, LPCALL_HEARTBEAT_INTERVAL=0.5)
    raw = _bare_consumer(server.port, consumer_token, rcvbuf=4096)
    agent.next("peer-joined")
    offer = json.dumps({"type": "description", "description": {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 8_000}})
    for _ in range(160):  # ~9 MB for a client that reads nothing: more than both TCP buffers hold
        agent.ws.send(offer)
    left = agent.next("peer-left", timeout=15)
    assert left["role"] == "consumer" and left["graceUntil"] > time.time()
    assert calls.get(sid).state == "ACCEPTED"  # the call waits for the visitor to come back
    assert not calls.is_present(sid, "consumer")
    # the worker let go of the frozen connection (its writer was stuck in a send): only the agent's is left
    keepalive = app.extensions["lpcall"].keepalive
    wait_for(lambda: len(keepalive) == 1, timeout=10, message="the frozen client's socket released")
    raw.settimeout(10)
    while raw.recv(1 << 20):  # what was in flight, then the end of the connection
        pass
    agent.ws.send(json.dumps({"type": "hangup"}))
    assert agent.next("closed")["reason"] == "hangup_agent"
    raw.close()
    agent.close()
    wait_for(lambda: call_keys(app) == [], timeout=5, message="empty store")
