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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import free_port

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
    """Deadline wait for a server to come up; fails early (with its log) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if condition():
            return
        time.sleep(0.05)  # polling interval of a deadline wait
    raise RuntimeError(f"{what} not ready after {timeout}s:\n{_tail(log)}")


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
