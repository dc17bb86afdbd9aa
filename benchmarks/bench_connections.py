"""How many concurrent WebSocket connections ONE gunicorn gevent worker holds, and its RSS per connection.

Each connection is a real visitor's consumer socket (``/lpcall/ws/consumer``): ``InitConnection`` with a
consumer token, then ``cqm.SubscribeExConversations`` (a live bus subscription), kept open. The worker's
RSS is read from /proc at each step; per-connection memory is the RSS growth divided by the
connections added. At the end every connection must still answer a ``ping``.

    python benchmarks/bench_connections.py [--steps 500,1000,2000,3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_relay import Server, _spawn, free_port, gunicorn_cmd, raise_nofile, wait_port
from benchmarks.common import CHROMIUM_EXTENSIONS_OFFER, chromium_ws_options, negotiated
from flask_lpcall.core.tokens import TokenSigner

SECRET = "bench-secret"
ISSUE = 14


def start_site(workdir: Path, store: str) -> Server:
    port = free_port()
    log = workdir / f"site-{port}.log"
    env = {"FLASK_SECRET_KEY": SECRET, "FLASK_LPCALL_STORE": store, "GUNICORN_WORKER_CONNECTIONS": "5000",
           "FLASK_LPCALL_REPORT_DB": str(workdir / "report.sqlite")}
    proc = _spawn(gunicorn_cmd("example_site.app:create_app()", port), env, log)
    wait_port(port, proc, 60, log)
    return Server("example site", port, proc)


def start_echo(workdir: Path) -> Server:
    port = free_port()
    log = workdir / f"echo-{port}.log"
    proc = _spawn(gunicorn_cmd("benchmarks.echo_app:create_app()", port), {"GUNICORN_WORKER_CONNECTIONS": "5000"}, log)
    wait_port(port, proc, 60, log)
    return Server("flask-sock echo", port, proc)


def ws_options(offer: str) -> dict[str, Any]:
    """``chromium``: the handshake offers permessage-deflate exactly as Chromium does (what a browser costs);
    ``none``: no extension offered (the figures before issue 14 were taken this way)."""
    return chromium_ws_options() if offer == "chromium" else {"compression": None}


async def open_echo(port: int, signer: TokenSigner, offer: str = "chromium") -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/echo", open_timeout=120, ping_interval=None,
                       max_queue=4, **ws_options(offer))
    await ws.send("hello")
    await asyncio.wait_for(ws.recv(), 60)
    return ws


async def open_consumer(port: int, signer: TokenSigner, offer: str = "chromium") -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/lpcall/ws/consumer", open_timeout=120,  # type: ignore[arg-type]
                       origin=f"http://127.0.0.1:{port}", ping_interval=None, max_queue=4, **ws_options(offer))
    token = signer.sign("consumer", {"cid": str(uuid.uuid4()), "vid": "bench"})
    headers = [{"type": ".ams.headers.ClientProperties", "features": ["CO_BROWSE"]},
               {"type": ".ams.headers.ConsumerAuthentication", "jwt": token}]
    await ws.send(json.dumps({"kind": "req", "id": "1", "type": "InitConnection", "headers": headers}))
    await _response(ws, "1")
    await ws.send(json.dumps({"kind": "req", "id": "2", "type": "cqm.SubscribeExConversations",
                              "body": {"convState": ["OPEN"]}}))
    await _response(ws, "2")
    return ws


async def _response(ws: ClientConnection, req_id: str) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame.get("kind") == "resp" and str(frame.get("reqId")) == req_id:
            assert frame["code"] == 200, frame
            return frame  # type: ignore[no-any-return]


async def run(server: Server, steps: list[int], parallel: int = 50, echo: bool = False,
              offer: str = "chromium") -> dict[str, Any]:
    signer = TokenSigner(SECRET)
    base_opener = open_echo if echo else open_consumer

    async def opener(port: int, signer: TokenSigner) -> ClientConnection:
        return await base_opener(port, signer, offer)

    conns: list[ClientConnection] = []
    # Warm up (imports, first-request caches), then take the baseline.
    warm = [await opener(server.port, signer) for _ in range(20)]
    extensions = negotiated(warm[0])
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1.0)  # let the closed sockets' greenlets finish before the baseline
    base_kb = server.rss_kb()
    points = [{"connections": 0, "rss_kb": base_kb}]
    sem = asyncio.Semaphore(parallel)

    async def one() -> ClientConnection:
        async with sem:
            return await opener(server.port, signer)

    failed = 0
    for target in steps:
        t0 = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(target - len(conns))), return_exceptions=True)
        new = [r for r in results if isinstance(r, ClientConnection)]
        failed += len(results) - len(new)
        conns += new
        await asyncio.sleep(0.5)
        rss = server.rss_kb()
        points.append({"connections": len(conns), "rss_kb": rss, "open_s": time.monotonic() - t0})
        print(f"{len(conns):>6} connections  RSS {rss / 1024:7.1f} MB  "
              f"({(rss - base_kb) / max(len(conns), 1):5.1f} KB/conn)  opened in {time.monotonic() - t0:.1f}s"
              f"  failed so far {failed}", flush=True)

    # Every connection is still alive: ping them all.
    async def ping(i: int, ws: ClientConnection) -> bool:
        try:
            if echo:
                await ws.send("ping")
                return bool(await asyncio.wait_for(ws.recv(), 60) == "ping")
            await ws.send(json.dumps({"kind": "req", "id": f"p{i}", "type": "ping", "body": {}}))
            await _response(ws, f"p{i}")
            return True
        except Exception:  # noqa: BLE001 - a dead connection counts as not alive
            return False

    alive = sum(await asyncio.gather(*(ping(i, ws) for i, ws in enumerate(conns))))
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    total = points[-1]
    return {"points": points, "alive": alive, "failed": failed, "offer": offer, "negotiated": extensions,
            "kb_per_connection": (total["rss_kb"] - base_kb) / max(total["connections"], 1)}


OFFERS = {"chromium": f"`{CHROMIUM_EXTENSIONS_OFFER}` (as Chromium)", "none": "no extension (compression off)"}


def _baseline_line(b: dict[str, Any]) -> str:
    return (f"* flask-sock echo, client offers {OFFERS[b['offer']]}, negotiated: {b['negotiated']}: "
            f"{b['alive']}/{b['points'][-1]['connections']} alive, **{b['kb_per_connection']:.1f} KB** per connection")


def markdown(result: dict[str, Any], store: str, baselines: list[dict[str, Any]] | None = None) -> str:
    rows = [f"| {p['connections']} | {p['rss_kb'] / 1024:.1f} |" for p in result["points"]]
    return "\n".join([
        (f"### Concurrent WebSocket connections, one gevent worker ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
        f" store: {store})"),
        "",
        ("`python benchmarks/bench_connections.py` — each connection is a visitor's consumer socket after "
        "`InitConnection` and `cqm.SubscribeExConversations` (a live bus subscription). The client's handshake "
        f"offers {OFFERS[result['offer']]}; negotiated: **{result['negotiated']}**."),
        "",
        "| connections | worker RSS MB |",
        "|---:|---:|",
        *rows,
        "",
        (f"Alive at the end (answered a ping): **{result['alive']}/{result['points'][-1]['connections']}**, "
        f"failed to open: {result['failed']}; RSS per connection: **{result['kb_per_connection']:.1f} KB** "
        "(targets: ≥ 2,000 connections, ≤ 50 KB each)."),
        "",
        *([] if not baselines else
          [("Baselines in the same run, the smallest flask-sock app (an echo socket, simple-websocket's own "
           "negotiation) on the same worker:"), "", *(_baseline_line(b) for b in baselines)]),
    ])


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500,1000,2000,3000")
    parser.add_argument("--store", default="memory", help="'memory' or a redis:// URL")
    parser.add_argument("--no-baseline", action="store_true", help="skip the flask-sock echo baselines")
    parser.add_argument("--offer", choices=sorted(OFFERS), default="chromium",
                        help="the site's clients' extension offer (default: as Chromium)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raise_nofile()
    steps = [min(int(s), 4500) for s in args.steps.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-conns-"))
    server = start_site(workdir, args.store)
    try:
        result = asyncio.run(run(server, steps, offer=args.offer))
    finally:
        server.stop()
    baselines = []
    for offer in ([] if args.no_baseline else ["chromium", "none"]):
        print(f"baseline: flask-sock echo, offer {offer}", flush=True)
        echo = start_echo(workdir)
        try:
            baselines.append(asyncio.run(run(echo, steps, echo=True, offer=offer)))
        finally:
            echo.stop()
    print(f"alive at the end: {result['alive']}/{result['points'][-1]['connections']}, "
          f"{result['kb_per_connection']:.1f} KB per connection")
    if args.json:
        args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), **result,
                                         "baselines": baselines}, indent=2))
    return markdown(result, args.store, baselines)


if __name__ == "__main__":
    print(main())
