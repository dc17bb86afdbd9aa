"""Call-frame delivery on the Redis store (issue 20): direct on one worker, through Redis across workers.

Two gunicorn + gevent servers (one worker each, so a socket's server is its worker) share one
redis-server. Server A prepares the calls (benchmarks/relay_app.py); any server can take any socket.
* Both sockets of a call on A: frames reach the peer as the client's own text with ``"from"``, and no
  PUBLISH on the call's channels reaches Redis (watched with MONITOR);
* agent on A, consumer on B: the same frames, in order, cross Redis;
* a participant moving to B while its old socket on A is still up: A's frames reach B from the
  moment B's socket has joined (B's hello ends A's direct delivery).
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from servers import GUNICORN, ROOT, GunicornServer, RedisServer, start_redis
from support import free_port, require, wait_for
from websockets.sync.client import ClientConnection, connect

#: Heartbeats far apart: an old socket is not replaced (closed) while a test looks at its successor.
HEARTBEAT = "120"


@dataclass
class RelayServer(GunicornServer):
    """One gunicorn + gevent worker serving benchmarks/relay_app.py (calls ready to join)."""

    def command(self) -> list[str]:
        return [*GUNICORN, "-c", str(ROOT / "example_site" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{self.port}",
                "--workers", "1", "benchmarks.relay_app:create_app()"]

    def _ready(self) -> bool:
        tokens = self.env.get("LPCALL_BENCH_TOKENS")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        return tokens is None or Path(tokens).exists()


def _relay_server(redis_server: RedisServer, calls: int) -> RelayServer:
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-relay-"))
    env = {"FLASK_LPCALL_STORE": redis_server.url, "FLASK_LPCALL_REPORT_DB": ":memory:",
           "FLASK_LPCALL_HEARTBEAT_INTERVAL": HEARTBEAT}
    if calls:
        env.update({"LPCALL_BENCH_CALLS": str(calls), "LPCALL_BENCH_TOKENS": str(workdir / "tokens.json")})
    return RelayServer(port=free_port(), env=env, workers=1, workdir=workdir)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[RelayServer, RelayServer, RedisServer, list[list[str]]]]:
    require("redis-server", bool(shutil.which("redis-server")), "apt-get install redis-server")
    redis_server = start_redis()
    a = _relay_server(redis_server, calls=3).start(60)
    b = _relay_server(redis_server, calls=0).start(60)
    tokens = json.loads(Path(a.env["LPCALL_BENCH_TOKENS"]).read_text())
    yield a, b, redis_server, tokens
    a.stop()
    b.stop()
    redis_server.stop()


class CallClient:
    def __init__(self, server: RelayServer, token: str) -> None:
        self.ws: ClientConnection = connect(f"{server.ws_url}/lpcall/ws/call?token={quote(token)}",
                                            open_timeout=20, compression=None)
        self.joined = self.next(lambda f: f["type"] == "joined")

    def next(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if predicate(frame):
                return frame

    def texts(self, count: int, timeout: float = 10) -> list[str]:
        """The next ``count`` relayed candidate frames, as the text the socket received."""
        deadline, out = time.monotonic() + timeout, []
        while len(out) < count:
            raw = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if json.loads(raw)["type"] == "candidate":
                out.append(raw)
        return out

    def close(self) -> None:
        self.ws.close()


def _candidate(n: int) -> str:
    # an unusual (but valid) spacing: only a relay that keeps the client's text passes it on like this
    return ('{"type":"candidate",  "candidate":{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 9 typ host n'
            f'{n}","sdpMid":"0","sdpMLineIndex":0}}}}')


def _expected(n: int, role: str) -> str:
    return _candidate(n)[:-1] + f',"from":"{role}"}}'


class PublishWatch:
    """The channels of every PUBLISH Redis executes while it watches (MONITOR, which adds no subscriber)."""

    END = "lpcall-publish-watch-end"

    def __init__(self, redis_server: RedisServer) -> None:
        self.redis_server = redis_server
        self.channels: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publish-watch", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"

    def _run(self) -> None:
        with self.redis_server.client().monitor() as monitor:
            self._ready.set()
            for cmd in monitor.listen():
                words = str(cmd["command"]).split()
                if words and words[0].upper() == "ECHO" and self.END in words[1:]:
                    return
                if len(words) > 1 and words[0].upper() == "PUBLISH":
                    self.channels.append(words[1])

    def stop(self) -> list[str]:
        self.redis_server.client().echo(self.END)
        self._thread.join(10)
        return self.channels


def _exchange(agent: CallClient, consumer: CallClient, count: int) -> None:
    for n in range(count):
        agent.ws.send(_candidate(n))
        consumer.ws.send(_candidate(1000 + n))
    assert consumer.texts(count) == [_expected(n, "agent") for n in range(count)]
    assert agent.texts(count) == [_expected(1000 + n, "consumer") for n in range(count)]


def test_same_worker_frames_skip_redis(cluster: Any) -> None:
    a, _b, redis_server, tokens = cluster
    agent, consumer = CallClient(a, tokens[0][0]), CallClient(a, tokens[0][1])
    try:
        _exchange(agent, consumer, 3)  # the first PUBLISH of each direction learns nobody else listens
        sid = agent.joined["serviceId"]

        def skips_redis() -> bool:  # the reply to that PUBLISH comes back after the frames were delivered here
            probe = PublishWatch(redis_server)
            _exchange(agent, consumer, 1)
            return not [c for c in probe.stop() if c.startswith(f"call:{sid}:")]

        wait_for(skips_redis, timeout=10, message="frames between two sockets of one worker still cross Redis")
        watch = PublishWatch(redis_server)
        _exchange(agent, consumer, 50)
        on_this_call = [c for c in watch.stop() if c.startswith(f"call:{sid}:")]
        assert on_this_call == []  # 100 frames relayed, none through Redis (other traffic may publish)
    finally:
        agent.close()
        consumer.close()


def test_cross_worker_frames_cross_redis_verbatim_in_order(cluster: Any) -> None:
    a, b, redis_server, tokens = cluster
    agent, consumer = CallClient(a, tokens[1][0]), CallClient(b, tokens[1][1])
    try:
        sid = agent.joined["serviceId"]
        watch = PublishWatch(redis_server)
        _exchange(agent, consumer, 50)
        assert len([c for c in watch.stop() if c.startswith(f"call:{sid}:")]) >= 100
    finally:
        agent.close()
        consumer.close()


def test_participant_moving_to_another_worker_gets_frames_at_once(cluster: Any) -> None:
    a, b, _redis_server, tokens = cluster
    agent, consumer = CallClient(a, tokens[2][0]), CallClient(a, tokens[2][1])
    moved = None
    try:
        _exchange(agent, consumer, 3)  # A now delivers this call's frames directly
        moved = CallClient(b, tokens[2][1])  # the consumer's new socket (its old one on A stays up)
        agent.next(lambda f: f["type"] == "peer-joined")  # B's frames reach A after B's hello
        agent.ws.send(_candidate(7))
        assert moved.texts(1, timeout=10) == [_expected(7, "agent")]
        moved.ws.send(_candidate(8))
        assert agent.texts(1) == [_expected(8, "consumer")]
    finally:
        for client in (agent, consumer, moved):
            if client is not None:
                client.close()
