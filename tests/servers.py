"""Real servers for the scale-out tests: redis-server, coturn's turnserver, gunicorn + gevent.

Each binds to 127.0.0.1 on a free port, is waited for with a deadline (never a sleep),
and is stopped (terminate, then kill) by its ``stop()``. All three are plain
subprocesses, so a test can stop and restart one mid-test (``RedisServer.restart``)
or kill one abruptly (``GunicornServer.kill``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
GUNICORN = [sys.executable, "-m", "gunicorn"]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_until(condition: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
                log: Path | None = None) -> None:
    """Deadline wait for a server to come up (support.wait_for); fails early, with its log, if the process died."""

    def ready() -> Any:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        return condition()

    try:
        wait_for(ready, timeout=timeout, message=what)
    except AssertionError:
        raise RuntimeError(f"{what} not ready after {timeout}s:\n{_tail(log)}") from None


def _tail(log: Path | None, n: int = 4000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-n:]


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# -- redis ------------------------------------------------------------------------------
@dataclass
class RedisServer:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout: float = 10) -> RedisServer:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir), "--logfile", str(self.log), "--daemonize", "no", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_until(self._pong, timeout, f"redis-server on port {self.port}", self.proc, self.log)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


def start_redis(timeout: float = 10) -> RedisServer:
    return RedisServer(port=free_port(), workdir=Path(tempfile.mkdtemp(prefix="lpcall-redis-"))).start(timeout)


class PersistentRedisServer(RedisServer):
    """A redis-server that keeps its data across stop()/start() (append-only file, fsync on every write),
    as a production Redis does: a restart is an outage, not a loss of state."""

    def start(self, timeout: float = 10) -> RedisServer:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
               "--appendfsync", "always", "--dir", str(self.workdir), "--logfile", str(self.log), "--daemonize", "no",
               "--protected-mode", "yes"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_until(self._pong, timeout, f"redis-server on port {self.port}", self.proc, self.log)
        return self


def start_persistent_redis(timeout: float = 10) -> RedisServer:
    return PersistentRedisServer(port=free_port(), workdir=Path(tempfile.mkdtemp(prefix="lpcall-redis-"))).start(timeout)


# -- coturn -------------------------------------------------------------------------------
@dataclass
class TurnServer:
    port: int
    secret: str
    realm: str
    workdir: Path
    min_port: int
    max_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def urls(self) -> list[str]:
        return [f"turn:127.0.0.1:{self.port}?transport=udp", f"turn:127.0.0.1:{self.port}?transport=tcp"]

    @property
    def log(self) -> Path:
        return self.workdir / "turn.log"

    @property
    def config_file(self) -> Path:
        return self.workdir / "turnserver.conf"

    def config_text(self) -> str:
        return "\n".join([
            f"listening-port={self.port}",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"min-port={self.min_port}",
            f"max-port={self.max_port}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "no-multicast-peers",
            "allow-loopback-peers",  # the tests' peers are on 127.0.0.1; never in production
            "no-stun-backward-compatibility",
            "simple-log",
            f"log-file={self.log}",
            f"pidfile={self.workdir / 'turn.pid'}",
            f"userdb={self.workdir / 'turndb.sqlite'}",
            "verbose",
            "",
        ])

    def start(self, timeout: float = 15) -> TurnServer:
        self.config_file.write_text(self.config_text())
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(self.config_file), "--no-stdout-log"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_until(lambda: _udp_stun_answers(self.port), timeout, f"turnserver on port {self.port}", self.proc,
                    self._any_log())
        return self

    def _any_log(self) -> Path:
        logs = sorted(self.workdir.glob("turn*.log"))
        return logs[0] if logs else self.log

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


def _udp_stun_answers(port: int) -> bool:
    """Send a STUN Binding request over UDP; coturn answers once it listens."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(request, ("127.0.0.1", port))
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return data[:2] == b"\x01\x01" and data[8:20] == request[8:20]


def _free_udp_range(size: int) -> tuple[int, int]:
    """A block of ports for TURN relays (probabilistically free; coturn skips busy ones)."""
    base = 40000 + (os.getpid() * 37) % 20000
    return base, base + size - 1


def start_turn(secret: str = "lpcall-test-secret", realm: str = "lpcall.test", timeout: float = 15) -> TurnServer:
    lo, hi = _free_udp_range(200)
    server = TurnServer(port=free_port(), secret=secret, realm=realm,
                        workdir=Path(tempfile.mkdtemp(prefix="lpcall-turn-")), min_port=lo, max_port=hi)
    return server.start(timeout)


# -- gunicorn + gevent ---------------------------------------------------------------------
@dataclass
class GunicornServer:
    port: int
    env: dict[str, str]
    workers: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"gunicorn-{self.port}.log"

    def command(self) -> list[str]:
        return [*GUNICORN, "-c", str(ROOT / "example_site" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers), *self.extra_args, "example_site.app:create_app()"]

    def start(self, timeout: float = 30) -> GunicornServer:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        _wait_until(self._ready, timeout, f"gunicorn on port {self.port}", self.proc, self.log)
        return self

    def _ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/lpcall/api/client-config", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, timeout=15)
        self.proc = None

    def kill(self) -> None:
        """Abrupt death of the whole server (master and workers), like a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


def start_gunicorn(env: dict[str, str], workers: int = 2, timeout: float = 30,
                   extra_args: list[str] | None = None) -> GunicornServer:
    server = GunicornServer(port=free_port(), env=env, workers=workers,
                            workdir=Path(tempfile.mkdtemp(prefix="lpcall-gunicorn-")), extra_args=extra_args or [])
    return server.start(timeout)


@contextmanager
def two_hosts(redis_url: str, workers: int = 1, **env: str) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """Two gunicorn servers ("hosts") on one Redis with one shared secret, stopped on exit."""
    shared = {"FLASK_SECRET_KEY": "shared-" + uuid.uuid4().hex, "FLASK_LPCALL_STORE": redis_url, **env}
    a = start_gunicorn(shared, workers=workers)
    try:
        b = start_gunicorn(shared, workers=workers)
    except Exception:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


# -- a reverse proxy in front of several servers -------------------------------------------------
class TcpProxy:
    """A minimal TCP load balancer on 127.0.0.1: each new connection goes to the first backend that
    accepts it, in order. Killing that backend breaks its open connections; the clients' reconnects
    land on the next one — what any reverse proxy with health checks does."""

    def __init__(self, backends: list[int], port: int | None = None) -> None:
        import asyncio
        import threading

        self.backends = backends
        self.port = port or free_port()  # a port: the proxy comes back where it was (after stop())
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: Any = None
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self._loop)

        async def pipe(reader: Any, writer: Any) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_r: Any, client_w: Any) -> None:
            for port in self.backends:
                try:
                    up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
                    break
                except OSError:
                    continue
            else:
                client_w.close()
                return
            await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

        async def main() -> None:
            self._server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        import asyncio

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(timeout=5)
