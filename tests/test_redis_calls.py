"""Real video calls across two gunicorn + gevent servers sharing one redis-server (Chromium on both sides).

The agent works on server B, the visitor browses server A (through a reverse proxy that fails
over to B). Everything between them — conversation, invitation, signaling — crosses Redis.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from servers import GunicornServer, RedisServer, TcpProxy, TurnServer, start_gunicorn, start_turn
from support import INBOUND_STATS_JS, require, wait_for

MEDIA = ["camera", "microphone"]
INIT = "window.__lpcallTest = true;"
SECRET = "lpcall-test-secret"


def _env(redis_server: RedisServer, **extra: Any) -> dict[str, str]:
    env = {"FLASK_SECRET_KEY": "shared-" + uuid.uuid4().hex, "FLASK_LPCALL_STORE": redis_server.url,
           "FLASK_LPCALL_REPORT_DB": ":memory:"}
    env.update({f"FLASK_{k}": v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return env


class Cluster:
    def __init__(self, a: GunicornServer, b: GunicornServer, redis_server: RedisServer) -> None:
        self.a, self.b, self.redis = a, b, redis_server
        self.proxy = TcpProxy([a.port, b.port])  # the visitor's entry point: A, or B when A is gone

    def stop(self) -> None:
        self.proxy.stop()
        self.a.stop()
        self.b.stop()

    def presence(self, service_id: str, role: str) -> dict[str, Any] | None:
        raw = self.redis.client().get(f"presence:{service_id}:{role}")
        return json.loads(raw) if raw else None

    def call_keys(self) -> list[str]:
        client = self.redis.client()
        keys = [k.decode() for k in client.scan_iter(count=1000)]
        return sorted(k for k in keys if k.startswith(("call:", "presence:")) or k.endswith(":call"))


def _cluster(redis_server: RedisServer, **extra: Any) -> Cluster:
    env = _env(redis_server, **extra)
    a = start_gunicorn(env, workers=1)
    try:
        b = start_gunicorn(env, workers=1)
    except Exception:
        a.stop()
        raise
    return Cluster(a, b, redis_server)


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    c = _cluster(redis_server, LPCALL_RECONNECT_GRACE=30)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    require("turnserver", bool(shutil.which("turnserver")), "apt-get install coturn")
    server = start_turn(secret=SECRET)
    yield server
    server.stop()


class Call:
    """An agent page on server B and a visitor page behind the proxy, in one Chromium."""

    def __init__(self, browser: Any, cluster: Cluster) -> None:
        self.cluster = cluster
        self.contexts: list[Any] = []
        self.agent = self._page(browser)
        self.consumer = self._page(browser)

    def _page(self, browser: Any) -> Any:
        ctx = browser.new_context(permissions=MEDIA, viewport={"width": 1000, "height": 800})
        ctx.add_init_script(INIT)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        return page

    def start(self, mode: str = "VIDEO_CALL") -> str:
        agent, consumer = self.agent, self.consumer
        agent.goto(f"{self.cluster.b.url}/lpcall/agent/login")
        agent.fill("#lpcall-username", "bob")
        agent.fill("#lpcall-password", "bob")
        agent.click(".lpcall-login-form [type=submit]")
        agent.wait_for_selector("#lpcall-agent")
        consumer.goto(self.cluster.proxy.url + "/")
        consumer.click(".lpcall-launcher")
        name = "Vera " + uuid.uuid4().hex[:6]  # earlier tests' conversations may still be open in Redis
        consumer.fill("#lpcall-visitor-name", name)
        consumer.click(".lpcall-start [type=submit]")
        consumer.wait_for_selector(".lpcall-composer:not([hidden])")
        agent.click(f".lpcall-mine .lpcall-conv-open:has-text('{name}')")
        agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
        agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
        consumer.click(".lpcall-invitation .lpcall-accept")
        keys = wait_for(lambda: [k for k in self.cluster.call_keys() if k.count(":") == 1 and k.startswith("call:")],
                        timeout=20, message="the call record in Redis")
        return str(keys[0].split(":", 1)[1])

    def stats(self, page: Any) -> dict[str, Any]:
        return page.evaluate(INBOUND_STATS_JS)  # type: ignore[no-any-return]

    def frames(self, page: Any) -> int:
        return int(self.stats(page)["framesDecoded"])

    def wait_frames_both_ways(self, more_than: tuple[int, int] = (0, 0), timeout: float = 40) -> tuple[int, int]:
        a = wait_for(lambda: (n := self.frames(self.agent)) > more_than[0] and n, timeout=timeout,
                     message="agent decodes the visitor's video")
        c = wait_for(lambda: (n := self.frames(self.consumer)) > more_than[1] and n, timeout=timeout,
                     message="visitor decodes the agent's video")
        return int(a), int(c)

    def hang_up(self) -> None:
        self.agent.click(".lpcall-agent-call .lpcall-hangup")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


def test_video_call_across_two_servers_and_no_key_left_after_closed(browser: Any, cluster: Cluster) -> None:
    call = Call(browser, cluster)
    try:
        service_id = call.start()
        call.wait_frames_both_ways()
        assert any(service_id in k for k in cluster.call_keys())
        call.hang_up()
        wait_for(lambda: cluster.call_keys() == [], timeout=15, message="no call key left in Redis")
        client = cluster.redis.client()
        assert [k for k in client.scan_iter(match=f"*{service_id}*")] == []
    finally:
        call.close()


def test_consumer_server_dies_mid_call_and_the_call_goes_on_through_the_other(browser: Any, cluster: Cluster) -> None:
    call = Call(browser, cluster)
    try:
        service_id = call.start()
        before = call.wait_frames_both_ways()
        socket_on_a = cluster.presence(service_id, "consumer")["conn"]
        cluster.a.kill()  # the visitor's server dies; the proxy now sends new connections to B
        # The visitor's signaling socket reconnects (through the proxy, so to B) and holds the role again.
        wait_for(lambda: (cluster.presence(service_id, "consumer") or {}).get("conn") not in (None, socket_on_a),
                 timeout=30, message="the visitor's socket re-joined the call on server B")
        call.wait_frames_both_ways(more_than=before)
        record = json.loads(cluster.redis.client().get(f"call:{service_id}"))
        assert record["sessionState"] == "ACCEPTED" and record.get("closeReason") is None, record
        assert any(service_id in k for k in cluster.call_keys()), "the call is still open in Redis"
        call.hang_up()
        wait_for(lambda: cluster.call_keys() == [], timeout=15, message="no call key left in Redis")
    finally:
        call.close()
        if cluster.a.proc is None:
            cluster.a.start()


def test_forced_relay_call_through_coturn(browser: Any, redis_server: RedisServer, turn: TurnServer) -> None:
    relay = _cluster(redis_server, LPCALL_TURN_URLS=turn.urls, LPCALL_TURN_SECRET=SECRET, LPCALL_FORCE_RELAY=True)
    call = Call(browser, relay)
    try:
        call.start()
        call.wait_frames_both_ways()
        for page in (call.agent, call.consumer):
            pairs = wait_for(lambda p=page: call.stats(p)["pairs"], timeout=20, message="a selected candidate pair")
            assert all(local == "relay" for local, _ in pairs), pairs
        call.hang_up()
        wait_for(lambda: relay.call_keys() == [], timeout=15, message="no call key left in Redis")
    finally:
        call.close()
        relay.stop()
