"""Signaling relay benchmark: flask-lpcall's ``/ws/call`` on ONE gunicorn gevent worker, beside a minimal
Flask-SocketIO relay (same worker type) and a raw asyncio ``websockets`` relay (the ceiling), same run.

N concurrent call pairs (agent + consumer sockets) exchange ``candidate`` frames through the server.
* saturation: every pair keeps ``WINDOW`` frames in flight per direction for ``DURATION`` seconds
  -> relayed messages/s and p50/p99 relay latency;
* fixed rate: ``RATE`` messages/s spread over all pairs (open loop) -> p50/p99 latency at that load.

Latency is measured sender -> receiver inside this one client process (same clock). All servers and
the load generator run on 127.0.0.1; their number, duration and connection count are bounded.

    python benchmarks/bench_relay.py [--pairs 10,100,1000] [--duration 5] [--rate 2000] [--rounds 3] [--json out.json]
        [--servers lpcall,lpcall-redis,socketio,ws]   # e.g. --pairs 1000 --servers lpcall while iterating
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import CHROMIUM_EXTENSIONS_OFFER, chromium_ws_options, negotiated

#: Every client negotiates as Chromium does (issue 14): it offers permessage-deflate, the server decides.
BROWSER = chromium_ws_options()
ISSUE = 14
WINDOW = 2
CONNECT_PARALLEL = 64


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


#: With two or more CPUs, the load generator runs on the first and every server on the last, the
#: same for all of them: neither competes with the other for a core, and no run depends on where
#: the scheduler happened to put the two processes. The redis-server is a serving process too (issue 20):
#: it shares the servers' core, not the load generator's (floating, it took the client's time and gave the
#: Redis rows a second core the memory store never had).
CPUS = sorted(os.sched_getaffinity(0))
CLIENT_CPU, SERVER_CPU = (CPUS[0], CPUS[-1]) if len(CPUS) > 1 else (None, None)


def server_preexec() -> None:
    raise_nofile()
    if SERVER_CPU is not None:
        os.sched_setaffinity(0, {SERVER_CPU})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling interval of a deadline wait
    raise RuntimeError(f"port {port} not open after {timeout}s: {log.read_text()[-3000:]}")


# -- servers ------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    tokens: list[list[str]] = field(default_factory=list)
    #: More serving processes whose CPU counts (issue 20): a second server ("host"), the redis-server.
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_pids: list[int] = field(default_factory=list)
    #: Where the consumer sockets go (the second host), None: the same server as the agent's.
    consumer_port: int | None = None
    #: Several workers of one server: the Redis URL where each call socket's worker pid is found
    #: (relay_app.placement_key); every consumer socket is reconnected until it is on another worker.
    placement: str | None = None
    #: With ``placement``: False puts each consumer on its agent's worker instead (no frame crosses).
    cross: bool = True

    def stop(self) -> None:
        for proc in (self.proc, *self.others):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def _pids(self) -> list[int]:
        """The serving processes: every gunicorn worker (or the relay itself), and the redis-server if any."""
        pids = []
        for proc in (self.proc, *self.others):
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            kids = children.read_text().split() if children.exists() else []
            pids += [int(p) for p in kids] if kids else [proc.pid]
        return pids + self.extra_pids

    def cpu_s(self) -> float:
        """User + system CPU seconds the serving process has used so far."""
        ticks = 0
        for pid in self._pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        total = 0
        for pid in self._pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=server_preexec)  # noqa: PLW1509 - before exec, no threads yet


def gunicorn_cmd(app: str, port: int, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "example_site" / "gunicorn.conf.py"), "--workers",
            str(workers), "--bind", f"127.0.0.1:{port}", "--log-level", "warning", app]


def _lpcall_proc(pairs: int, workdir: Path, store: str, workers: int = 1) -> tuple[int, subprocess.Popen[bytes], list[list[str]]]:
    port = free_port()
    # one name per server started: a port the kernel hands out again must not find an earlier server's tokens
    # (a 1,000-pair row once read a 100-pair row's file and ran out of calls)
    tag = f"{port}-{uuid.uuid4().hex[:8]}"
    tokens_path = workdir / f"tokens-{tag}.json"
    env = {"LPCALL_BENCH_CALLS": str(pairs), "LPCALL_BENCH_TOKENS": str(tokens_path), "FLASK_LPCALL_STORE": store,
           "FLASK_LPCALL_REPORT_DB": str(workdir / f"report-{tag}.sqlite")}
    if workers > 1:
        env["LPCALL_BENCH_PLACEMENT"] = "1"
    log = workdir / f"lpcall-{port}.log"
    proc = _spawn(gunicorn_cmd("benchmarks.relay_app:create_app()", port, workers), env, log)
    wait_port(port, proc, 60, log)
    if not pairs:  # a second host: it serves calls the first one prepared
        return port, proc, []
    deadline = time.monotonic() + 120
    while not tokens_path.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"no call tokens: {log.read_text()[-3000:]}")
        time.sleep(0.05)  # polling interval of a deadline wait
    return port, proc, json.loads(tokens_path.read_text())


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free loopback port, on the servers' core; returns it and its URL."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, preexec_fn=server_preexec)  # noqa: PLW1509 - before exec
    wait_port(port, proc, 10, workdir / "none")
    return proc, f"redis://127.0.0.1:{port}/0"


def start_lpcall(pairs: int, workdir: Path, store: str = "memory", redis_pid: int | None = None) -> Server:
    port, proc, tokens = _lpcall_proc(pairs, workdir, store)
    server = Server("flask-lpcall" + ("" if store == "memory" else " (Redis store)"), port, proc)
    server.tokens = tokens
    server.extra_pids = [redis_pid] if redis_pid else []
    return server


def start_lpcall_hosts(pairs: int, workdir: Path, store: str, redis_pid: int) -> Server:
    """Two gunicorn servers ("hosts", one gevent worker each) on one redis-server: every call's agent
    on the first, its consumer on the second, so every relayed frame crosses workers (issue 20)."""
    port, proc, tokens = _lpcall_proc(pairs, workdir, store)
    try:
        port_b, proc_b, _ = _lpcall_proc(0, workdir, store)
    except Exception:
        proc.terminate()
        raise
    server = Server("flask-lpcall (Redis, 2 hosts, every pair crosses)", port, proc, tokens, others=[proc_b],
                    extra_pids=[redis_pid], consumer_port=port_b)
    return server


def start_lpcall_workers(pairs: int, workdir: Path, store: str, redis_pid: int) -> Server:
    """One gunicorn server with two gevent workers on one redis-server; every pair's consumer socket on the
    other worker than its agent's (issue 20), found through the worker pid each socket's worker stores."""
    port, proc, tokens = _lpcall_proc(pairs, workdir, store, workers=2)
    return Server(WORKERS, port, proc, tokens, extra_pids=[redis_pid], placement=store)


def start_lpcall_workers_local(pairs: int, workdir: Path, store: str, redis_pid: int) -> Server:
    """The same two workers, but each pair's consumer on its agent's worker: no frame crosses Redis. Not a
    target; it tells apart what two processes time-sharing the bench's one server core cost per frame from
    what crossing Redis costs."""
    port, proc, tokens = _lpcall_proc(pairs, workdir, store, workers=2)
    return Server(WORKERS_LOCAL, port, proc, tokens, extra_pids=[redis_pid], placement=store, cross=False)


def start_socketio(workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"socketio-{port}.log"
    proc = _spawn(gunicorn_cmd("benchmarks.socketio_relay:create_app()", port), {}, log)
    wait_port(port, proc, 60, log)
    return Server("Flask-SocketIO", port, proc)


def start_ws(workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"ws-{port}.log"
    proc = _spawn([sys.executable, str(ROOT / "benchmarks" / "ws_relay.py"), str(port)], {}, log)
    wait_port(port, proc, 30, log)
    return Server("websockets (raw asyncio)", port, proc)


# -- clients ----------------------------------------------------------------------------------
def candidate_frame(ts: int) -> dict[str, Any]:
    return {"type": "candidate", "candidate": {"candidate": f"candidate:1 1 udp 2122260223 127.0.0.1 9 typ host {ts}",
                                               "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "bnch"}}


@dataclass
class Side:
    ws: ClientConnection
    pair: int
    role: str
    encode: Callable[[dict[str, Any]], str]
    decode: Callable[[str], dict[str, Any] | None]
    window: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(WINDOW))
    peer: Side | None = None


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.recording = False
        self.received = 0

    def add(self, ts: int) -> None:
        if self.recording:
            self.received += 1
            self.latencies.append((time.perf_counter_ns() - ts) / 1e6)


async def reader(side: Side, rec: Recorder) -> None:
    try:
        async for raw in side.ws:
            if raw == "2":  # Engine.IO ping
                await side.ws.send("3")
                continue
            frame = side.decode(raw)  # type: ignore[arg-type]
            if frame is None or frame.get("type") != "candidate":
                continue
            rec.add(int(frame["candidate"]["candidate"].rsplit(" ", 1)[1]))
            assert side.peer is not None
            side.peer.window.release()
    except Exception:  # noqa: BLE001 - connection closed at the end of a run
        return


def _plain_decode(raw: str) -> dict[str, Any] | None:
    return json.loads(raw)  # type: ignore[no-any-return]


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


async def open_lpcall(server: Server, pairs: int) -> list[tuple[Side, Side]]:
    where = _Placement(server.placement) if server.placement else None

    async def join(port: int, token: str) -> ClientConnection:
        ws = await connect(f"ws://127.0.0.1:{port}/lpcall/ws/call?token={quote(token)}", **BROWSER,
                           open_timeout=60, max_queue=64, close_timeout=2, ping_interval=None)
        while (first := json.loads(await ws.recv()))["type"] != "joined":  # a bus frame may come first
            assert first["type"] in ("peer-joined", "peer-left", "session", "state"), first
        return ws

    async def one(i: int) -> tuple[Side, Side]:
        sides = []
        for role, token in zip(("agent", "consumer"), server.tokens[i], strict=True):
            port = server.consumer_port if role == "consumer" and server.consumer_port else server.port
            ws = await join(port, token)
            if where is not None and role == "consumer":
                agent_pid = where.pid(server.tokens[i][0])
                for _ in range(PLACEMENT_TRIES):  # on the wrong worker: again, until the kernel picks the other
                    if (where.pid(token) != agent_pid) == server.cross:
                        break
                    await ws.close()
                    ws = await join(port, token)
                else:
                    raise RuntimeError(f"pair {i}: the consumer never landed on the worker it should")
            sides.append(Side(ws, i, role, _dumps, _plain_decode))
        return sides[0], sides[1]

    return await _gather_limited([lambda i=i: one(i) for i in range(pairs)])


PLACEMENT_TRIES = 200  # the kernel may hand a burst of reconnects to the same worker: 50 ran out once (issue 20)


class _Placement:
    """Which worker took a call socket: the pid its worker stored (benchmarks/relay_app.py)."""

    def __init__(self, url: str) -> None:
        import redis

        from benchmarks.relay_app import placement_key

        self._redis, self._key = redis.Redis.from_url(url), placement_key

    def pid(self, token: str) -> int:
        raw = self._redis.get(self._key(token))
        if raw is None:
            raise RuntimeError("the server stored no worker for a call socket")
        return int(raw)


async def open_ws(server: Server, pairs: int) -> list[tuple[Side, Side]]:
    async def one(i: int) -> tuple[Side, Side]:
        sides = []
        for role in ("agent", "consumer"):
            ws = await connect(f"ws://127.0.0.1:{server.port}/?pair={i}&role={role}", **BROWSER, open_timeout=60, ping_interval=None,
                               close_timeout=2)
            sides.append(Side(ws, i, role, _dumps, _plain_decode))
        return sides[0], sides[1]

    return await _gather_limited([lambda i=i: one(i) for i in range(pairs)])


async def open_socketio(server: Server, pairs: int) -> list[tuple[Side, Side]]:
    def decode(raw: str) -> dict[str, Any] | None:
        if not raw.startswith("42"):
            return None
        name, data = json.loads(raw[2:])
        return data if name == "signal" else None

    async def one(i: int) -> tuple[Side, Side]:
        sides = []
        for role in ("agent", "consumer"):
            ws = await connect(f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", **BROWSER,
                               open_timeout=60, close_timeout=2, ping_interval=None)
            opened = await ws.recv()
            assert str(opened).startswith("0"), opened
            await ws.send("40")
            while not str(await ws.recv()).startswith("40"):
                pass
            await ws.send("421" + _dumps(["join", {"pair": i}]))  # with an ack: joined before any signal
            while not str(await ws.recv()).startswith("431"):
                pass

            def encode(frame: dict[str, Any], i: int = i, role: str = role) -> str:
                return "42" + _dumps(["signal", {"pair": i, "role": role, "frame": frame}])

            sides.append(Side(ws, i, role, encode, decode))
        return sides[0], sides[1]

    return await _gather_limited([lambda i=i: one(i) for i in range(pairs)])


async def _gather_limited(factories: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    sem = asyncio.Semaphore(CONNECT_PARALLEL)

    async def run(f: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await f()

    return list(await asyncio.gather(*(run(f) for f in factories)))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_scenario(opener: Callable[[Server, int], Awaitable[list[tuple[Side, Side]]]], server: Server, pairs: int,
                       duration: float, rate: float) -> dict[str, Any]:
    # The load generator's own cyclic GC would pause every socket at once and be counted as the
    # server's latency: collect now, then keep it off while this scenario measures.
    gc.collect()
    gc.disable()
    try:
        return await _scenario(opener, server, pairs, duration, rate)
    finally:
        gc.enable()


async def _scenario(opener: Callable[[Server, int], Awaitable[list[tuple[Side, Side]]]], server: Server, pairs: int,
                    duration: float, rate: float) -> dict[str, Any]:
    t0 = time.monotonic()
    conns = await opener(server, pairs)
    connect_s = time.monotonic() - t0
    sides = [s for pair in conns for s in pair]
    for a, b in conns:
        a.peer, b.peer = b, a
    rec = Recorder()
    readers = [asyncio.create_task(reader(s, rec)) for s in sides]
    rss_loaded = server.rss_kb()

    # -- saturation (closed loop, WINDOW in flight per direction) --
    stop = asyncio.Event()

    async def pump(side: Side) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(side.window.acquire(), 1.0)
            except TimeoutError:
                continue
            await side.ws.send(side.encode(candidate_frame(time.perf_counter_ns())))

    pumps = [asyncio.create_task(pump(s)) for s in sides]
    await asyncio.sleep(min(1.0, duration / 4))  # warm-up, not recorded
    rec.recording, start, cpu0 = True, time.perf_counter(), server.cpu_s()
    await asyncio.sleep(duration)
    rec.recording, elapsed, cpu = False, time.perf_counter() - start, server.cpu_s() - cpu0
    stop.set()
    await asyncio.gather(*pumps, return_exceptions=True)
    # The server's CPU per relayed frame: its own cost, whether or not the one client is the bottleneck.
    sat = {"msgs_per_s": rec.received / elapsed, "p50_ms": _pct(rec.latencies, 0.5), "p99_ms": _pct(rec.latencies, 0.99),
           "cpu_us_per_msg": 1e6 * cpu / max(rec.received, 1), "server_cpu_share": cpu / elapsed}
    # Let every frame still in flight arrive before the fixed-rate phase: at 1,000 pairs the saturated
    # relay holds ~1 s of frames, and a late one would count as a fixed-rate frame with a huge latency.
    deadline = time.monotonic() + 15
    while any(s.window._value < WINDOW for s in sides) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling interval of a deadline wait

    # -- fixed rate (open loop) --
    fixed = Recorder()
    for s in sides:
        s.window = asyncio.Semaphore(10**9)
    rec.latencies, rec.received = [], 0
    sent, start_fixed, idx = 0, time.perf_counter(), 0
    rec.recording = True
    while (now := time.perf_counter()) - start_fixed < duration:
        due = int((now - start_fixed) * rate) - sent
        for _ in range(due):
            side = sides[idx % len(sides)]
            idx += 1
            await side.ws.send(side.encode(candidate_frame(time.perf_counter_ns())))
        sent += max(due, 0)
        await asyncio.sleep(0.002)
    deadline = time.monotonic() + 10  # the last frames arrive (a lost one shows as received < sent)
    while rec.received < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.005)  # polling interval of a deadline wait
    rec.recording = False
    fixed.latencies = rec.latencies
    fixed_res = {"rate": rate, "sent": sent, "received": rec.received, "p50_ms": _pct(fixed.latencies, 0.5),
                 "p99_ms": _pct(fixed.latencies, 0.99)}

    extensions = negotiated(sides[0].ws)
    await asyncio.gather(*(s.ws.close() for s in sides), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    return {"server": server.name, "pairs": pairs, "connect_s": connect_s, "saturation": sat, "fixed": fixed_res,
            "server_rss_mb_loaded": rss_loaded / 1024, "negotiated": extensions}


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def markdown(results: list[dict[str, Any]], rate: float) -> str:
    """Medians over the rounds; the target ratios are the medians of the per-round ratios (same machine state)."""
    load = os.getloadavg()
    rounds = max((r.get("round", 0) for r in results), default=0) + 1
    lines = [
        (f"### Signaling relay, one gevent worker ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs shared, load average {load[0]:.1f} at the end)"),
        "",
        ("`python benchmarks/bench_relay.py` — N call pairs exchange `candidate` frames through the server "
        f"(saturation: {WINDOW} in flight per direction; fixed rate: {rate:.0f} msg/s open loop). One Python "
        "asyncio client drives all servers, so the ceiling is partly the client's. "
        f"{rounds} round(s) per size, the servers' order rotating each round; each figure is the median over "
        "the rounds. Server CPU µs/msg: the serving process's CPU time over the saturation window divided by the "
        "frames relayed (its own cost, also when the one client is the bottleneck). The load generator runs on one "
        "core, every serving process (gunicorn workers, redis-server) on the other. Every client offers "
        f"`{CHROMIUM_EXTENSIONS_OFFER}` as Chromium does; what each server negotiated: "
        + "; ".join(sorted({f"{r['server']}: {r.get('negotiated', '?')}" for r in results})) + "."),
        "",
        ("| server | pairs | msg/s (saturated) | server CPU µs/msg | p50 ms | p99 ms | delivered at "
        f"{rate:.0f}/s | p50 ms | p99 ms (each round) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["pairs"], r["server"]), []).append(r)
    for (pairs, server), rs in groups.items():
        sat = [r["saturation"] for r in rs]
        fix = [r["fixed"] for r in rs]
        p99s = ", ".join(f"{f['p99_ms']:.1f}" for f in fix)
        lines.append(
            f"| {server} | {pairs} | {_median([x['msgs_per_s'] for x in sat]):.0f} | "
            f"{_median([x.get('cpu_us_per_msg', float('nan')) for x in sat]):.0f} | {_median([x['p50_ms'] for x in sat]):.1f} | "
            f"{_median([x['p99_ms'] for x in sat]):.1f} | {sum(f['received'] for f in fix)}/{sum(f['sent'] for f in fix)} | "
            f"{_median([f['p50_ms'] for f in fix]):.1f} | {_median([f['p99_ms'] for f in fix]):.1f} ({p99s}) |"
        )
    lines += ["", ("| pairs | flask-lpcall ÷ Flask-SocketIO (target ≥ 2×), each round | "
                   "flask-lpcall ÷ raw websockets (target ≥ 50%), each round |"), "|---:|---:|---:|"]
    for pairs in sorted({r["pairs"] for r in results}):
        sio_ratios, ws_ratios = [], []
        for rnd in range(rounds):
            by = {r["server"]: r["saturation"]["msgs_per_s"] for r in results if r["pairs"] == pairs and r.get("round", 0) == rnd}
            ours, sio, ws = by.get("flask-lpcall"), by.get("Flask-SocketIO"), by.get("websockets (raw asyncio)")
            if ours and sio:
                sio_ratios.append(ours / sio)
            if ours and ws:
                ws_ratios.append(ours / ws)
        if sio_ratios or ws_ratios:
            a = f"**{_median(sio_ratios):.2f}×** ({', '.join(f'{x:.2f}' for x in sio_ratios)})" if sio_ratios else "–"
            b = f"**{100 * _median(ws_ratios):.0f}%** ({', '.join(f'{100 * x:.0f}' for x in ws_ratios)})" if ws_ratios else "–"
            lines.append(f"| {pairs} | {a} | {b} |")
    return "\n".join(lines + _scale_out(results, rounds, rate))


REDIS_1W, HOSTS = "flask-lpcall (Redis store)", "flask-lpcall (Redis, 2 hosts, every pair crosses)"
WORKERS = "flask-lpcall (Redis, 2 workers of one server, every pair crosses)"
WORKERS_LOCAL = "flask-lpcall (Redis, 2 workers of one server, every pair on one worker)"


def _scale_out(results: list[dict[str, Any]], rounds: int, rate: float) -> list[str]:
    """Issue 20's ratios, each round's own: Redis on one worker against the memory store (msg/s), and the
    CPU per relayed frame of every process (both workers or hosts and the redis-server) against the memory
    store's, with the p99 at the fixed rate of each Redis row."""
    crossing = [("2 workers", WORKERS), ("2 hosts", HOSTS)]
    if any(r["server"] == WORKERS_LOCAL for r in results):
        crossing.append(("2 workers, no pair crossing", WORKERS_LOCAL))
    head = [f"Redis 1 worker ÷ memory msg/s (target ≥ 90%) | Redis 1 worker p99 ms at {rate:.0f}/s (≤ 10)"]
    head += [f"{label} CPU/msg ÷ memory CPU/msg ({'no target' if name == WORKERS_LOCAL else 'target ≤ 1.5×'}) | "
             f"{label} p99 ms at {rate:.0f}/s (≤ 10)" for label, name in crossing]
    lines = ["", "| pairs | " + " | ".join(head) + " |", "|---:" + "|---:" * (2 + 2 * len(crossing)) + "|"]
    rows = 0
    for pairs in sorted({r["pairs"] for r in results}):
        speed: list[float] = []
        p99: dict[str, list[float]] = {REDIS_1W: [], **{name: [] for _, name in crossing}}
        cost: dict[str, list[float]] = {name: [] for _, name in crossing}
        for rnd in range(rounds):
            by = {r["server"]: r for r in results if r["pairs"] == pairs and r.get("round", 0) == rnd}
            mem, one = by.get("flask-lpcall"), by.get(REDIS_1W)
            for name, values in p99.items():
                if name in by:
                    values.append(by[name]["fixed"]["p99_ms"])
            if mem and one:
                speed.append(one["saturation"]["msgs_per_s"] / mem["saturation"]["msgs_per_s"])
            for name, ratios in cost.items():
                if mem and name in by:
                    ratios.append(by[name]["saturation"]["cpu_us_per_msg"] / mem["saturation"]["cpu_us_per_msg"])
        if speed or any(p99.values()):
            rows += 1

            def ms(values: list[float]) -> str:
                return ", ".join(f"{x:.1f}" for x in values) if values else "–"

            cells = [f"**{100 * _median(speed):.0f}%** ({', '.join(f'{100 * x:.0f}' for x in speed)})" if speed else "–",
                     ms(p99[REDIS_1W])]
            for _, name in crossing:
                c = cost[name]
                cells += [f"**{_median(c):.2f}×** ({', '.join(f'{x:.2f}' for x in c)})" if c else "–", ms(p99[name])]
            lines.append(f"| {pairs} | " + " | ".join(cells) + " |")
    return lines if rows else []


REDIS_ROWS = {"lpcall-redis", "lpcall-workers", "lpcall-workers-local", "lpcall-hosts"}


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="10,100,1000")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--no-redis", dest="redis", action="store_false",
                        help="skip flask-lpcall with a Redis store (bus via Redis)")
    parser.add_argument("--servers", default="lpcall,lpcall-redis,lpcall-workers,lpcall-hosts,socketio,ws",
                        help="which servers to run (comma-separated): lpcall, lpcall-redis (one worker), "
                             "lpcall-workers (two workers of one server on Redis, every pair crossing), "
                             "lpcall-hosts (two servers on one Redis, every pair crossing), socketio, ws; "
                             "lpcall-workers-local (the two workers, every pair on one worker: no target, "
                             "what two processes sharing one core cost) only when named")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size, the servers' order rotating")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    chosen = set(args.servers.split(","))
    if unknown := chosen - {"lpcall", "socketio", "ws", *REDIS_ROWS}:
        parser.error(f"unknown server(s): {sorted(unknown)}")
    raise_nofile()
    if CLIENT_CPU is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    pair_counts = [min(int(p), 1000) for p in args.pairs.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-bench-"))
    redis_proc = None
    results: list[dict[str, Any]] = []
    try:
        variants: list[tuple[str, Callable[[int], Server], Any]] = [
            ("lpcall", lambda n: start_lpcall(n, workdir), open_lpcall),
        ]
        if args.redis and chosen & REDIS_ROWS and shutil.which("redis-server"):
            redis_proc, url = start_redis(workdir)
            rpid = redis_proc.pid
            variants.append(("lpcall-redis", lambda n: start_lpcall(n, workdir, url, rpid), open_lpcall))
            variants.append(("lpcall-workers", lambda n: start_lpcall_workers(n, workdir, url, rpid), open_lpcall))
            variants.append(("lpcall-workers-local", lambda n: start_lpcall_workers_local(n, workdir, url, rpid),
                             open_lpcall))
            if "lpcall-hosts" in chosen:
                variants.append(("lpcall-hosts", lambda n: start_lpcall_hosts(n, workdir, url, rpid), open_lpcall))
        variants += [("socketio", lambda n: start_socketio(workdir), open_socketio),
                     ("ws", lambda n: start_ws(workdir), open_ws)]
        variants = [v for v in variants if v[0] in chosen]
        for pairs, rnd in [(p, r) for p in pair_counts for r in range(max(1, args.rounds))]:
            shift = rnd % len(variants)
            for name, start, opener in variants[shift:] + variants[:shift]:
                server = start(pairs)
                try:
                    res = asyncio.run(asyncio.wait_for(run_scenario(opener, server, pairs, args.duration, args.rate),
                                                       timeout=4 * args.duration + 300))
                except TimeoutError:
                    print(f"{server.name}: pairs={pairs} timed out", flush=True)
                    continue
                finally:
                    server.stop()
                res["round"] = rnd
                results.append(res)
                s, f = res["saturation"], res["fixed"]
                print(f"{res['server']:<30} pairs={pairs:<5} sat {s['msgs_per_s']:>8.0f} msg/s "
                      f"({s['cpu_us_per_msg']:.0f} µs CPU/msg, server at {100 * s['server_cpu_share']:.0f}%) p50 {s['p50_ms']:6.2f} "
                      f"p99 {s['p99_ms']:7.2f} ms | @{f['rate']:.0f}/s recv {f['received']}/{f['sent']} "
                      f"p50 {f['p50_ms']:6.2f} p99 {f['p99_ms']:7.2f} ms | connect {res['connect_s']:.1f}s", flush=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    if args.json:
        args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                                         "cpus": os.cpu_count(), "results": results}, indent=2))
    return markdown(results, args.rate)


if __name__ == "__main__":
    print(main())
