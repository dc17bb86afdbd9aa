"""Messaging relay benchmark: consumer -> agent chat messages through ONE gunicorn gevent worker.

flask-lpcall (example site, memory store): consumers send ``ms.PublishEvent`` on ``/lpcall/ws/consumer``;
the server validates the frame, checks ownership and limits, appends to the transcript, updates the
conversation and publishes on the bus; the agents' sockets (``/lpcall/ws/agent``, every conversation
``agent.Open``-ed) get ``ms.MessagingEventNotification`` (and the list update). Baseline, same worker type,
same run: a bare flask-sock relay (JSON in, ack back, JSON out to the paired socket; no validation,
no store, no bus).

Closed loop: every consumer keeps ``WINDOW`` messages in flight (a message is done when its agent
received it). Latency = consumer send -> agent receipt, one clock (this process).

    python benchmarks/bench_messaging.py [--conversations 20] [--agents 4] [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.bench_relay import (
    PLACEMENT_TRIES,
    Server,
    _pct,
    _Placement,
    _spawn,
    free_port,
    gunicorn_cmd,
    raise_nofile,
    start_redis,
    wait_port,
)
from benchmarks.common import chromium_ws_options, negotiated

ISSUE = 3
WINDOW = 2
REDIS_1W, WORKERS, HOSTS = "flask-lpcall (Redis store)", "flask-lpcall (Redis, 2 workers)", "flask-lpcall (Redis, 2 hosts)"
#: Every client negotiates as Chromium does (issue 20): it offers permessage-deflate, the server decides.
BROWSER = chromium_ws_options()
#: what each server negotiated with the clients (name -> extensions)
NEGOTIATED: dict[str, str] = {}


# -- the baseline app (served by gunicorn: ``benchmarks.bench_messaging:baseline_app()``) ----------------
def baseline_app() -> Any:
    """A bare flask-sock relay: ``/in?pair=n`` -> ack + forward to ``/out?pair=n``."""
    from flask import Flask, request
    from flask_sock import Sock

    app = Flask(__name__)
    sock = Sock(app)
    outs: dict[str, Any] = {}
    locks: dict[str, threading.Lock] = {}

    @sock.route("/out")
    def out(ws: Any) -> None:
        pair = request.args["pair"]
        outs[pair], locks[pair] = ws, threading.Lock()
        while ws.receive() is not None:
            pass

    @sock.route("/in")
    def inbound(ws: Any) -> None:
        pair = request.args["pair"]
        while True:
            raw = ws.receive()
            frame = json.loads(raw)
            ws.send(json.dumps({"kind": "resp", "reqId": frame["id"], "code": 200, "body": {}}))
            target = outs.get(pair)
            if target is not None:
                with locks[pair]:
                    target.send(json.dumps({"kind": "notification", "type": "msg", "body": frame["body"]}))

    return app


def placed_site() -> Any:
    """The example site recording each socket's worker (``?bench=<id>``: benchmarks/relay_app.py)."""
    from benchmarks.relay_app import with_placement
    from example_site.app import create_app

    return with_placement(create_app())


# -- servers --------------------------------------------------------------------------------------
def start(app: str, name: str, workdir: Path, store: str | None = None, workers: int = 1) -> Server:
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    env = {"FLASK_LPCALL_REPORT_DB": str(workdir / f"report-{port}.sqlite"), "LPCALL_DEMO_AGENT": "0",
           "FLASK_SECRET_KEY": "bench-messaging-secret"}
    if store:
        env["FLASK_LPCALL_STORE"] = store
    proc = _spawn(gunicorn_cmd(app, port, workers), env, log)
    wait_port(port, proc, 60, log)
    return Server(name, port, proc)


def start_redis_rows(name: str, workdir: Path, url: str, redis_pid: int) -> Server:
    """The example site on the Redis store: one server, or (``hosts``) two servers with every consumer
    on the first and every agent socket on the second, or (``workers``) one server with two workers,
    every consumer on the other worker than every agent socket: every message crosses workers (issue 20)."""
    if name == WORKERS:
        server = start("benchmarks.bench_messaging:placed_site()", "lpcall-redis-w2", workdir, url, workers=2)
        server.placement = url
    else:
        server = start("example_site.app:create_app()", "lpcall-redis", workdir, url)
    server.extra_pids = [redis_pid]  # the redis-server's CPU counts
    if name == HOSTS:
        second = start("example_site.app:create_app()", "lpcall-redis-b", workdir, url)
        server.others, server.consumer_port = [second.proc], second.port  # consumer_port: the agents' server here
    return server


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of every serving process (gunicorn workers, and the redis-server if any)."""
    return server.cpu_s()


# -- clients --------------------------------------------------------------------------------------
class Rec:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.recording = False
        self.received = 0

    def add(self, ts: int) -> None:
        if self.recording:
            self.received += 1
            self.latencies.append((time.perf_counter_ns() - ts) / 1e6)


def login_cookie(base: str, user: str) -> str:
    import re

    http = requests.Session()
    page = http.get(f"{base}/lpcall/agent/login", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, "no CSRF token"
    resp = http.post(f"{base}/lpcall/agent/login", allow_redirects=False, timeout=30,
                     data={"username": user, "password": user, "csrf_token": token.group(1)})
    assert resp.status_code in (302, 303), resp.status_code
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def new_consumer(base: str, i: int) -> dict[str, Any]:
    resp = requests.post(f"{base}/lpcall/api/consumer/session", json={"vid": f"bench-{i}"}, timeout=30)
    return resp.json()  # type: ignore[no-any-return]


class Conn:
    """One socket with request ids; notifications go to ``on_note``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = 0
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.on_note: Any = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("kind") == "resp":
                    fut = self.waiting.pop(str(frame.get("reqId")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif self.on_note is not None:
                    self.on_note(frame)
        except (ConnectionClosed, ValueError):
            return

    async def request(self, type_: str, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        self.ids += 1
        rid = str(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        await self.ws.send(json.dumps({"kind": "req", "id": rid, "type": type_, "body": body or {}, **extra}))
        resp = await asyncio.wait_for(fut, 60)
        assert resp["code"] == 200, resp
        return resp

    async def send_only(self, type_: str, body: dict[str, Any]) -> None:
        self.ids += 1
        await self.ws.send(json.dumps({"kind": "req", "id": str(self.ids), "type": type_, "body": body}))


async def _open(server: Server, url: str, want: Any = None, **kw: Any) -> tuple[ClientConnection, int | None]:
    """A socket as Chromium opens it; with several workers (``server.placement``), reopened until the
    worker that took it passes ``want(pid)``. Returns the socket and its worker's pid (None: not placed)."""
    if not server.placement:
        ws = await connect(url, **BROWSER, open_timeout=60, **kw)
        NEGOTIATED[server.name] = negotiated(ws)
        return ws, None
    where = _Placement(server.placement)
    for _ in range(PLACEMENT_TRIES):
        tag = os.urandom(8).hex()
        ws = await connect(f"{url}?bench={tag}", **BROWSER, open_timeout=60, **kw)
        NEGOTIATED[server.name] = negotiated(ws)
        pid = await asyncio.to_thread(where.pid, tag)
        if want is None or want(pid):
            return ws, pid
        await ws.close()
    raise RuntimeError(f"no socket of {url} landed on the wanted worker")


async def setup_lpcall(server: Server, conversations: int, agents: int, rec: Rec,
                       windows: dict[str, asyncio.Semaphore]) -> tuple[list[tuple[Conn, str]], list[Conn]]:
    base = f"http://127.0.0.1:{server.port}"
    origin = base
    consumers: list[tuple[Conn, str]] = []
    agents_at: int | None = None  # two workers: the agents' worker (the first agent socket's)
    agent_port = server.consumer_port or server.port  # the second host's, in the two-host rows
    pending_agents: list[ClientConnection] = []
    if server.placement:  # the agents' worker first, so that the consumers can avoid it
        cookie = await asyncio.to_thread(login_cookie, f"http://127.0.0.1:{agent_port}", "bob")
        ws, agents_at = await _open(server, f"ws://127.0.0.1:{agent_port}/lpcall/ws/agent",
                                    origin=f"http://127.0.0.1:{agent_port}", additional_headers={"Cookie": cookie})
        pending_agents.append(ws)
    for i in range(conversations):
        ident = await asyncio.to_thread(new_consumer, base, i)
        ws, _ = await _open(server, f"ws://127.0.0.1:{server.port}/lpcall/ws/consumer",
                            want=lambda pid: pid != agents_at, origin=origin)
        c = Conn(ws)
        await c.request("InitConnection", headers=[
            {"type": ".ams.headers.ClientProperties", "features": ["CO_BROWSE"]},
            {"type": ".ams.headers.ConsumerAuthentication", "jwt": ident["token"]}])
        resp = await c.request("cm.ConsumerRequestConversation", {"visitorName": f"Bench {i}"})
        consumers.append((c, resp["body"]["conversationId"]))
    agent_conns: list[Conn] = []
    users = ["bob", "alice"]
    for a in range(agents):
        if pending_agents:
            ws = pending_agents.pop()
        else:
            cookie = await asyncio.to_thread(login_cookie, f"http://127.0.0.1:{agent_port}", users[a % 2])
            ws, _ = await _open(server, f"ws://127.0.0.1:{agent_port}/lpcall/ws/agent", want=lambda pid: pid == agents_at,
                                origin=f"http://127.0.0.1:{agent_port}", additional_headers={"Cookie": cookie})
        conn = Conn(ws)

        def on_note(frame: dict[str, Any]) -> None:
            if frame.get("type") != "ms.MessagingEventNotification":
                return
            for ev in frame["body"]["events"]:
                text = ev["event"]["message"]
                if ev["role"] == "CONSUMER" and text.startswith("m "):
                    rec.add(int(text[2:]))
                    windows[frame["body"]["conversationId"]].release()

        conn.on_note = on_note
        await conn.request("agent.Subscribe", {"available": False})
        agent_conns.append(conn)
    # Sockets alternate between the demo agents bob and alice; each socket takes and opens its share.
    for i, (_, conv_id) in enumerate(consumers):
        agent = agent_conns[i % agents]
        await agent.request("agent.Take", {"conversationId": conv_id})
        await agent.request("agent.Open", {"conversationId": conv_id})
    return consumers, agent_conns


async def run_lpcall(server: Server, conversations: int, agents: int, duration: float) -> dict[str, Any]:
    rec = Rec()
    windows: dict[str, asyncio.Semaphore] = {}
    consumers, agent_conns = await setup_lpcall(server, conversations, agents, rec, windows)
    for _, conv_id in consumers:
        windows[conv_id] = asyncio.Semaphore(WINDOW)

    async def pump(c: Conn, conv_id: str) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(windows[conv_id].acquire(), 1.0)
            except TimeoutError:
                continue
            await c.send_only("ms.PublishEvent", {"conversationId": conv_id, "event": {
                "type": "ContentEvent", "contentType": "text/plain", "message": f"m {time.perf_counter_ns()}"}})

    stop = asyncio.Event()
    return await _measure(rec, [pump(c, conv) for c, conv in consumers], stop, duration,
                          [c for c, _ in consumers] + agent_conns, server)


async def run_baseline(server: Server, conversations: int, duration: float) -> dict[str, Any]:
    rec = Rec()
    windows = {str(i): asyncio.Semaphore(WINDOW) for i in range(conversations)}
    ins: list[Conn] = []
    outs: list[Conn] = []
    for i in range(conversations):
        out = Conn(await connect(f"ws://127.0.0.1:{server.port}/out?pair={i}", **BROWSER, open_timeout=60))
        NEGOTIATED[server.name] = negotiated(out.ws)

        def on_note(frame: dict[str, Any], pair: str = str(i)) -> None:
            rec.add(int(frame["body"]["event"]["message"][2:]))
            windows[pair].release()

        out.on_note = on_note
        outs.append(out)
        ins.append(Conn(await connect(f"ws://127.0.0.1:{server.port}/in?pair={i}", **BROWSER, open_timeout=60)))
    await asyncio.sleep(0.5)  # the /out sockets are registered

    async def pump(c: Conn, pair: str) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(windows[pair].acquire(), 1.0)
            except TimeoutError:
                continue
            await c.send_only("msg", {"conversationId": pair, "event": {
                "type": "ContentEvent", "contentType": "text/plain", "message": f"m {time.perf_counter_ns()}"}})

    stop = asyncio.Event()
    return await _measure(rec, [pump(c, str(i)) for i, c in enumerate(ins)], stop, duration, ins + outs, server)


async def _measure(rec: Rec, pumps: list[Any], stop: asyncio.Event, duration: float, conns: list[Conn],
                   server: Server) -> dict[str, Any]:
    tasks = [asyncio.create_task(p) for p in pumps]
    await asyncio.sleep(1.0)  # warm-up
    rec.recording, t0, cpu0 = True, time.perf_counter(), cpu_seconds(server)
    await asyncio.sleep(duration)
    rec.recording, elapsed, cpu = False, time.perf_counter() - t0, cpu_seconds(server) - cpu0
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in conns:
        await c.ws.close()
    return {"msgs_per_s": rec.received / elapsed, "p50_ms": _pct(rec.latencies, 0.5), "p99_ms": _pct(rec.latencies, 0.99),
            "n": rec.received, "per_cpu_s": rec.received / cpu if cpu > 0 else float("nan"), "cpu_share": cpu / elapsed}


def render(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    lp, bl = "flask-lpcall", "baseline"
    lines = [
        (f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on 2 shared cores ({platform.machine()}), "
        f"Python {platform.python_version()}; `python -m benchmarks messaging`."),
        "",
        (f"**Consumer → agent chat messages on one gunicorn gevent worker** (memory store), {args.conversations} "
        f"conversations, {args.agents} agent sockets (every conversation open in one of them), {WINDOW} messages in "
        f"flight per conversation, {args.rounds} interleaved rounds of {args.duration:.0f} s, median of rounds. "
        "Latency: consumer send → agent receives the `ms.MessagingEventNotification`."),
        "",
        "| server | messages/s | messages per server CPU-second | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        (f"| bare flask-sock relay (baseline: no validation, store or bus) | {med(bl, 'msgs_per_s'):.0f} | "
         f"{med(bl, 'per_cpu_s'):.0f} | {med(bl, 'p50_ms'):.2f} | {med(bl, 'p99_ms'):.2f} |"),
        (f"| flask-lpcall `/ws/consumer` → `/ws/agent` | {med(lp, 'msgs_per_s'):.0f} | {med(lp, 'per_cpu_s'):.0f} | "
         f"{med(lp, 'p50_ms'):.2f} | {med(lp, 'p99_ms'):.2f} |"),
        (f"| ratio flask-lpcall / baseline | {med(lp, 'msgs_per_s') / med(bl, 'msgs_per_s'):.2f} | "
         f"**{med(lp, 'per_cpu_s') / med(bl, 'per_cpu_s'):.2f}** | | |"),
        "",
        "Per round (messages/s): baseline " + ", ".join(f"{r['msgs_per_s']:.0f}" for r in results[bl])
        + "; flask-lpcall " + ", ".join(f"{r['msgs_per_s']:.0f}" for r in results[lp]) + ".",
        "Each flask-lpcall message is validated (marshmallow), ownership- and size-checked, appended to the transcript,",
        "its list preview is stored, and two bus messages are published (transcript channel; agents channel: every",
        "agent socket gets `agent.LastMessage`). The load generator shares the 2 cores with the server and with the",
        f"other engineers' test runs (load average {os.getloadavg()[0]:.1f} at the end), so rounds vary a lot; compare",
        "the two rows of the same run only. Messages per server CPU-second (user + system time of the worker from",
        "`/proc`) is the capacity figure: it does not move with the machine's load the way wall-clock rates do.",
    ]
    lines += ["", "Every client offers `permessage-deflate; client_max_window_bits` as Chromium does; what each server "
              "negotiated: " + "; ".join(f"{k}: {v}" for k, v in sorted(NEGOTIATED.items())) + "."]
    redis_rows = [name for name in (REDIS_1W, WORKERS, HOSTS) if results.get(name)]
    if redis_rows:
        lines += ["", ("Redis rows (issue 20): the same clients; CPU is every gunicorn worker's plus the redis-server's. "
                       "\"2 workers\": one server with two gevent workers, every consumer socket on one worker and "
                       "every agent socket on the other (sockets reopened until the kernel placed them so); "
                       "\"2 hosts\": two servers on one redis-server, every consumer on the first, every agent socket "
                       "on the second, so every message crosses workers."), "",
                  "| server | messages/s | messages per server CPU-second | ÷ memory store (per CPU-second) | p50 ms | p99 ms |",
                  "|---|---|---|---|---|---|"]
        for name in redis_rows:
            lines.append(f"| {name} | {med(name, 'msgs_per_s'):.0f} | {med(name, 'per_cpu_s'):.0f} | "
                         f"{med(name, 'per_cpu_s') / med(lp, 'per_cpu_s'):.2f} | {med(name, 'p50_ms'):.2f} | "
                         f"{med(name, 'p99_ms'):.2f} |")
    return "\n".join(lines)


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", action="store_true",
                        help="also the Redis store on one worker, on two workers of one server and on two servers "
             "(consumers on one worker, agents on the other)")
    args = parser.parse_args()
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-bench-msg-"))
    names = ["baseline", "flask-lpcall"] + ([REDIS_1W, WORKERS, HOSTS] if args.redis else [])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    redis_proc = None
    if args.redis:
        redis_proc, redis_url = start_redis(workdir)
    try:
        for rnd in range(args.rounds):
            for name in names:
                if name == "baseline":
                    server = start("benchmarks.bench_messaging:baseline_app()", "baseline", workdir)
                    coro = run_baseline(server, args.conversations, args.duration)
                elif name == "flask-lpcall":
                    server = start("example_site.app:create_app()", "lpcall", workdir)
                    coro = run_lpcall(server, args.conversations, args.agents, args.duration)
                else:
                    assert redis_proc is not None
                    server = start_redis_rows(name, workdir, redis_url, redis_proc.pid)
                    coro = run_lpcall(server, args.conversations, args.agents, args.duration)
                try:
                    res = asyncio.run(asyncio.wait_for(coro, timeout=6 * args.duration + 120))
                finally:
                    server.stop()
                results[name].append(res)
                print(f"round {rnd + 1} {name:<14} {res['msgs_per_s']:8.0f} msg/s  {res['per_cpu_s']:8.0f} msg/cpu-s  "
                      f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:7.2f} ms  (n={res['n']})", flush=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    return render(results, args)


if __name__ == "__main__":
    print(main())
