"""The network check where it is deployed: gunicorn's gevent worker, and several workers.

* The example site under ``example_site/gunicorn.conf.py`` (gevent worker): Chromium runs the
  check and gets a verdict for the host path.
* Several workers: the browser's result may reach another worker than the one whose aiortc
  peer answered. Each check's measurements live in the shared store (real Redis here), so
  any worker can give the verdict: two responders (two workers) share one RedisStore, an aiortc
  client measures against the first and the second finishes the check.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from servers import REDIS_SERVER, RedisServer, start_gunicorn, start_redis
from support import require

from flask_lpcall.config import Settings
from flask_lpcall.peer.aioloop import BackgroundLoop
from flask_lpcall.peer.responder import NetcheckResponder


def test_network_check_under_the_gevent_worker(browser) -> None:
    server = start_gunicorn({"FLASK_SECRET_KEY": "s-" + uuid.uuid4().hex, "FLASK_LPCALL_REPORT_DB": ":memory:"}, workers=1)
    page = browser.new_page()
    try:
        page.goto(server.url + "/lpcall/netcheck")
        page.get_by_role("button", name="Start the check").click()
        page.wait_for_selector(".lpcall-netcheck[data-verdict]", timeout=60_000)
        assert page.get_attribute(".lpcall-netcheck", "data-path") == "host"
        assert page.get_attribute(".lpcall-netcheck", "data-verdict") in ("video", "degraded", "voice")
        assert int(page.inner_text("[data-field=bitrate]").split()[0]) > 0
    finally:
        page.close()
        server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require("redis-server", bool(shutil.which("redis-server")) or bool(REDIS_SERVER), "apt-get install redis-server")
    server = start_redis()
    yield server
    server.stop()


def test_another_worker_finishes_the_check_from_the_shared_store(redis_server) -> None:
    from flask_lpcall.store.redis import RedisStore

    settings = Settings.from_config({})
    worker_a = NetcheckResponder(settings, RedisStore(redis_server.url))
    worker_b = NetcheckResponder(settings, RedisStore(redis_server.url))
    client_loop = BackgroundLoop("netcheck-client")

    async def client_offer() -> tuple[Any, Any, str]:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        channel = pc.createDataChannel("netcheck")
        await pc.setLocalDescription(await pc.createOffer())
        return pc, channel, pc.localDescription.sdp

    async def measure(pc: Any, channel: Any, answer: dict[str, str]) -> dict[str, Any]:
        import asyncio

        from aiortc import RTCSessionDescription

        got: asyncio.Queue[Any] = asyncio.Queue()
        channel.on("message", lambda m: got.put_nowait(m))
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        await asyncio.wait_for(opened.wait(), 20)
        channel.send(json.dumps({"t": "up", "phase": "start"}))
        for _ in range(64):
            channel.send(b"x" * 16384)
        channel.send(json.dumps({"t": "up", "phase": "end"}))
        while True:
            msg = await asyncio.wait_for(got.get(), 20)
            if isinstance(msg, str) and json.loads(msg)["t"] == "up-result":
                return json.loads(msg)

    try:
        pc, channel, sdp = client_loop.run(client_offer(), timeout=20)
        check_id, answer = worker_a.answer({"type": "offer", "sdp": sdp})
        up = client_loop.run(measure(pc, channel, answer), timeout=60)
        assert up["bytes"] == 64 * 16384
        finished = worker_b.finish(check_id)  # the result lands on the other worker
        assert finished.connected is True and finished.remote_type == "host"
        assert finished.up_kbps == pytest.approx(up["kbps"])
        with pytest.raises(Exception) as info:
            worker_b.finish(check_id)  # one result per check
        assert getattr(info.value, "code", None) == "NOT_FOUND"
        client_loop.run(pc.close(), timeout=10)
    finally:
        client_loop.stop()
        worker_a.loop.stop()
        worker_b.loop.stop()
