"""The Python peer's negotiation tags (issue 19, PROTOCOL §5 `gen`) over the real signaling server:
offers carry ``<session>:<a|c><n>``, answers echo them; a duplicate answer, an answer for another
offer, a frame of a replaced session and a candidate of another session are dropped (counted, debug
log), never applied and never a failure: media goes on, and a later restart still works."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services

from flask_lpcall.peer import Peer
from flask_lpcall.peer.aioloop import BackgroundLoop

SMALL = (320, 240)


@pytest.fixture(scope="module")
def aio() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop("test-negotiation-peer")
    yield loop
    loop.stop()


def test_stale_and_duplicate_frames_are_dropped_and_the_call_goes_on(live_server: Any, aio: BackgroundLoop) -> None:
    app = make_app()
    server = live_server(app)
    setup = conversation(app)
    calls, _ = services(app)
    agent_info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    consumer_info = calls.accept(setup.consumer_id, cobrowse_payload(agent_info))
    url = f"{server.ws_url}/lpcall/ws/call"

    async def scenario() -> dict[str, Any]:
        async with Peer(url, agent_info["token"], video_size=SMALL) as agent, Peer(
            url, consumer_info["token"], video_size=SMALL
        ) as consumer:
            await agent.join()
            await consumer.join()
            await asyncio.gather(agent.wait_connected(), consumer.wait_connected())
            c = await consumer.wait_media(video_frames=5)
            session = agent._session
            assert session is not None and consumer._session == session  # the polite side adopted it
            answer = {"type": "answer", "sdp": agent._pc.remoteDescription.sdp}
            # a duplicate of the answer already applied (stable now), one for an offer never made,
            # one of a replaced session, and a candidate of another session
            await agent._handle({"type": "description", "description": answer, "gen": f"{session}:a1", "from": "consumer"})
            await agent._handle({"type": "description", "description": answer, "gen": f"{session}:a9", "from": "consumer"})
            agent._retired.add("oldsess1")
            await agent._handle({"type": "description", "description": {"type": "offer", "sdp": "v=0"}, "gen": "oldsess1:c1",
                                 "from": "consumer"})
            await agent._handle({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 10.0.0.9 9 typ host",
                                 "sdpMid": "0", "sdpMLineIndex": 0}, "gen": "othersess", "from": "consumer"})
            stale = agent.stale_frames
            c2 = await consumer.wait_media(video_frames=c.video_frames + 5, timeout=20)
            await consumer.restart_ice(timeout=20)  # negotiation still works after the drops
            c3 = await consumer.wait_media(video_frames=c2.video_frames + 5, timeout=20)
            await agent.hangup()
            await consumer.wait_closed()
            return {"stale": stale, "c2": c2, "c3": c3, "errors": agent.errors + consumer.errors}

    r = aio.run(scenario(), timeout=90)
    assert r["stale"] == 4
    assert r["c3"].connection_state == "connected" and r["c3"].video_frames > r["c2"].video_frames
    assert r["errors"] == []
