"""Force relay (TURN only) through a real coturn: the Python peer and the network check honour it.

The server hands ``iceTransportPolicy: "relay"`` and short-lived coturn credentials
(``LPCALL_TURN_URLS`` + ``LPCALL_TURN_SECRET`` + ``LPCALL_FORCE_RELAY``); the aiortc peers then
gather only relay candidates and their selected pair is relay ↔ relay, and the browser's network
check reports the path "Through a relay server".
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from callkit import make_app
from servers import TURNSERVER, TurnServer, start_turn
from support import require
from test_peer import SMALL, _call, _ws

from example_site.app import create_app
from flask_lpcall.peer import Peer
from flask_lpcall.peer.aioloop import BackgroundLoop

SECRET = "lpcall-relay-test-secret"


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    require("turnserver", bool(shutil.which("turnserver")) or bool(TURNSERVER), "apt-get install coturn")
    server = start_turn(secret=SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aio() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("test-peer-relay")
    yield loop
    loop.stop()


def relay_config(turn: TurnServer) -> dict[str, Any]:
    return {"LPCALL_TURN_URLS": [turn.url], "LPCALL_TURN_SECRET": SECRET, "LPCALL_FORCE_RELAY": True}


def test_python_peers_use_only_relay_candidates_when_relay_is_forced(live_server, aio, turn) -> None:
    app = make_app(**relay_config(turn))
    server = live_server(app)
    agent_info, consumer_info, _ = _call(app)

    async def scenario() -> tuple[Any, Any, dict[str, Any], str]:
        async with Peer(_ws(server), agent_info["token"], video_size=SMALL) as agent, Peer(
            _ws(server), consumer_info["token"], video_size=SMALL
        ) as consumer:
            joined = await agent.join()
            await consumer.join()
            a = await agent.wait_media(video_frames=5, audio_frames=5, timeout=45)
            c = await consumer.wait_media(video_frames=5, audio_frames=5, timeout=45)
            return a, c, joined, agent._pc.localDescription.sdp

    a, c, joined, sdp = aio.run(scenario(), timeout=120)
    assert joined["iceTransportPolicy"] == "relay"
    assert joined["iceServers"][0]["username"].split(":", 1)[1]  # expiry:user, coturn REST format
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(" typ relay" in line for line in candidates), candidates
    for stats in (a, c):
        local, remote = stats.selected_pair
        assert (local.type, remote.type) == ("relay", "relay"), stats


def test_network_check_reports_the_relay_path(browser, live_server, turn) -> None:
    server = live_server(create_app(LPCALL_REPORT_DB=":memory:", **relay_config(turn)))
    page = browser.new_page()
    try:
        page.goto(server.url + "/lpcall/netcheck")
        page.get_by_role("button", name="Start the check").click()
        page.wait_for_selector(".lpcall-netcheck[data-verdict]", timeout=60_000)
        assert page.inner_text("[data-field=path]") == "Through a relay server"
        assert page.get_attribute(".lpcall-netcheck", "data-path") == "relay"
        assert page.get_attribute(".lpcall-netcheck", "data-verdict") in ("video", "degraded", "voice")
    finally:
        page.close()
