"""A Python consumer answers a real agent in the workspace, through public APIs only.

The agent logs in to the workspace in Chromium and clicks "Video call"; the Python consumer
finds the invitation with ``GET /api/call/active``, accepts with ``POST /api/call/accept`` (its
consumer token as Bearer, the seed's lpCoBrowse payload) and joins with :class:`Peer`. Both
sides decode each other's frames; the agent sees the colour bars.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from support import INBOUND_STATS_JS, wait_for
from test_peer import SAMPLE_BARS_JS, SMALL, bars_match

from example_site.app import create_app
from flask_lpcall.peer import Peer
from flask_lpcall.peer.aioloop import BackgroundLoop
from flask_lpcall.state import get_state


@pytest.fixture(scope="module")
def aio() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("test-peer-workspace")
    yield loop
    loop.stop()


def http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_python_consumer_accepts_a_video_call_from_the_agent_workspace(browser, live_server, aio) -> None:
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    api = f"{server.url}/lpcall/api"
    me = http("POST", f"{api}/consumer/session", {"vid": "python-visitor"})
    conversations = get_state(app).conversations
    doc, _ = conversations.open(me["consumerId"], visitor_name="Py", features=["CO_BROWSE"])
    conversations.take(doc["convId"], "bob", "Bob")

    ctx = browser.new_context()
    ctx.add_init_script("window.__lpcallTest = true;")
    agent = ctx.new_page()
    agent.set_default_timeout(20_000)
    peer: Peer | None = None
    try:
        agent.goto(f"{server.url}/lpcall/agent/login")
        agent.fill("#lpcall-username", "bob")
        agent.fill("#lpcall-password", "bob")
        agent.click(".lpcall-login-form [type=submit]")
        agent.click(".lpcall-mine .lpcall-conv-open")
        agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")

        call = wait_for(lambda: http("GET", f"{api}/call/active", token=me["token"])["call"], timeout=15,
                        message="the invitation, seen through GET /api/call/active")
        assert call["sessionState"] == "INVITED" and call["mode"] == "VIDEO_CALL"
        payload = {"serviceId": call["serviceId"], "agentId": "bob", "visitorName": "Py", "mode": call["mode"],
                   "ssid": "python-ssid", "svid": "python-visitor"}
        info = http("POST", f"{api}/call/accept", payload, token=me["token"])
        assert info["role"] == "consumer"

        peer = Peer(f"{server.ws_url}/lpcall/ws/call", info["token"], video_size=SMALL)
        joined = aio.run(peer.join(), timeout=15)
        assert joined["role"] == "consumer" and joined["polite"] is True
        stats = aio.run(peer.wait_media(video_frames=10, audio_frames=10, timeout=60), timeout=70)
        assert stats.video_frames >= 10 and stats.audio_frames >= 10
        wait_for(lambda: (s := agent.evaluate(INBOUND_STATS_JS)) and s["framesDecoded"] > 10 and s["audioBytes"] > 0,
                 timeout=30, message="the agent decodes the Python consumer")
        remote = ".lpcall-call video.lpcall-remote"
        wait_for(lambda: bars_match(agent.evaluate(SAMPLE_BARS_JS, remote)), timeout=20,
                 message="the agent sees the colour bars")

        agent.click(".lpcall-call .lpcall-hangup")
        closed = aio.run(peer.wait_closed(timeout=15), timeout=20)
        assert closed["reason"] == "hangup_agent"
    finally:
        if peer is not None:
            aio.run(peer.close(), timeout=15)
        ctx.close()
