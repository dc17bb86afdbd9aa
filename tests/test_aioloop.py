"""BackgroundLoop (flask_lpcall/peer/aioloop.py) and the network check's shutdown: what runs on a private loop
ends when it is stopped. A peer nobody closed kept sending (RTP, ICE consent checks) on a loop whose thread
lived on, and its use of the global ``random`` reached later tests (Hypothesis warned about it)."""

from __future__ import annotations

import asyncio
import threading

from aiortc import RTCPeerConnection

from example_site.app import create_app
from flask_lpcall.peer.aioloop import BackgroundLoop


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_stop_cancels_what_runs_ends_the_thread_and_closes_the_loop() -> None:
    loop = BackgroundLoop("test-aioloop")
    ended = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()

    started = loop.loop
    loop.submit(forever())
    assert loop.run(asyncio.sleep(0, "up"), timeout=5) == "up"
    assert len(_threads("test-aioloop")) == 1

    loop.stop()

    assert ended.is_set(), "a task still running on the loop was not cancelled"
    assert _threads("test-aioloop") == [], "the loop's thread lives on after stop()"
    assert started.is_closed()
    loop.stop()  # idempotent
    assert loop.run(asyncio.sleep(0, "again"), timeout=5) == "again"  # a later use gets a new loop
    assert loop.loop is not started
    loop.stop()
    assert _threads("test-aioloop") == []


def test_a_netcheck_left_open_is_closed_with_its_app() -> None:
    app = create_app(TESTING=True, LPCALL_REPORT_DB=":memory:")
    client_loop = BackgroundLoop("test-aioloop-client")

    async def offer() -> tuple[RTCPeerConnection, str]:
        pc = RTCPeerConnection()
        pc.createDataChannel("netcheck")
        await pc.setLocalDescription(await pc.createOffer())
        return pc, pc.localDescription.sdp

    try:
        browser_pc, sdp = client_loop.run(offer(), timeout=20)
        resp = app.test_client().post("/lpcall/api/netcheck/offer", json={"offer": {"type": "offer", "sdp": sdp}})
        assert resp.status_code == 200, resp.get_json()
        service = app.extensions["lpcall"].netcheck
        responder = service.responder()
        check = responder._checks[resp.get_json()["checkId"]]
        assert service.active() == 1 and check.pc.connectionState != "closed"
        thread = responder.loop._thread
        assert thread is not None and thread.is_alive()

        service.close()  # the visitor never sent a result: the check is still open

        assert check.pc.connectionState == "closed"
        assert service.active() == 0
        assert not thread.is_alive(), "the network check's loop lives on after its app closed it"
        client_loop.run(browser_pc.close(), timeout=10)
    finally:
        client_loop.stop()
