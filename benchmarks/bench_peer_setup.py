"""Python peer benchmark: aiortc ↔ aiortc call setup through our signaling server vs the floor.

* signaling: two :class:`flask_lpcall.peer.Peer` (agent and consumer, test pattern + tone,
  320x240) join one call through the real ``/ws/call`` socket of a live example app
  (werkzeug, threaded, in this process) and negotiate (perfect negotiation, relayed over the
  store bus). Timed from "both start joining" to "both connected" and to "both decoded a
  video frame". The invite/accept before it is not timed.
* floor: the same two aiortc peers with the same tracks, offer and answer handed over
  in-process (no sockets, no server), same measurements.

Runs in a private network namespace (re-executes itself under ``unshare -n`` like the tests):
only loopback candidates exist, nothing leaves the machine. Target: signaling ≤ 2× the floor.

    python benchmarks/bench_peer_setup.py [--runs 15] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import enter_netns, percentile

ISSUE = 6
NAME = "peer_setup"
SIZE = (320, 240)


async def _signaling_once(server: Any, app: Any) -> tuple[float, float]:
    from callkit import BOB, cobrowse_payload, conversation, services

    from flask_lpcall.peer import Peer

    setup = conversation(app)
    calls, _ = services(app)
    agent_info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    consumer_info = calls.accept(setup.consumer_id, cobrowse_payload(agent_info))
    url = f"{server.ws_url}/lpcall/ws/call"
    agent = Peer(url, agent_info["token"], video_size=SIZE, ping_interval=0)
    consumer = Peer(url, consumer_info["token"], video_size=SIZE, ping_interval=0)
    try:
        t0 = time.perf_counter()
        await asyncio.gather(agent.join(), consumer.join())
        await asyncio.gather(agent.wait_connected(20), consumer.wait_connected(20))
        t_connected = time.perf_counter() - t0
        await asyncio.gather(agent.wait_media(1, 0, 20), consumer.wait_media(1, 0, 20))
        t_media = time.perf_counter() - t0
        await agent.hangup()
        await consumer.wait_closed(10)
    finally:
        await agent.close()
        await consumer.close()
    return t_connected, t_media


async def _floor_once() -> tuple[float, float]:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.contrib.media import MediaRelay

    from flask_lpcall.peer.media import TestPatternTrack, ToneTrack

    tracks = [(ToneTrack(), TestPatternTrack(*SIZE)) for _ in range(2)]
    relay = MediaRelay()
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
    frames = [0, 0]

    async def sink(i: int, track: Any) -> None:
        while True:
            try:
                await track.recv()
            except Exception:  # noqa: BLE001  (MediaStreamError when the connection closes)
                return
            if track.kind == "video":
                frames[i] += 1

    for i, pc in enumerate(pcs):
        for track in tracks[i]:
            pc.addTransceiver(relay.subscribe(track, buffered=False), direction="sendrecv")
        pc.on("track", lambda track, i=i: asyncio.ensure_future(sink(i, track)))
    a, b = pcs
    try:
        t0 = time.perf_counter()
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        deadline = time.monotonic() + 20
        while not all(pc.connectionState == "connected" for pc in pcs):
            if time.monotonic() > deadline:
                raise TimeoutError("floor peers did not connect")
            await asyncio.sleep(0.002)  # polling interval of the measurement
        t_connected = time.perf_counter() - t0
        while not all(frames):
            if time.monotonic() > deadline:
                raise TimeoutError("floor peers decoded no frame")
            await asyncio.sleep(0.002)
        t_media = time.perf_counter() - t0
    finally:
        for pc in pcs:
            await pc.close()
        for pair in tracks:
            for track in pair:
                track.stop()
    return t_connected, t_media


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    import logging

    from callkit import make_app
    from support import start_live_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = make_app()
    server = start_live_server(app)
    out: dict[str, list[tuple[float, float]]] = {"signaling": [], "floor": []}
    try:

        async def all_runs() -> None:
            await _signaling_once(server, app)  # warm-up (imports, codecs)
            await _floor_once()
            for i in range(runs):  # interleaved so both see the same machine load
                if i % 2:
                    out["floor"].append(await _floor_once())
                    out["signaling"].append(await _signaling_once(server, app))
                else:
                    out["signaling"].append(await _signaling_once(server, app))
                    out["floor"].append(await _floor_once())

        asyncio.run(all_runs())
    finally:
        server.stop()
    return out


def render(results: dict[str, list[tuple[float, float]]], runs: int) -> str:
    def row(name: str, idx: int) -> tuple[float, float]:
        values = [r[idx] * 1000 for r in results[name]]
        return statistics.median(values), percentile(values, 0.9)

    sc, sc90 = row("signaling", 0)
    fc, fc90 = row("floor", 0)
    sm, sm90 = row("signaling", 1)
    fm, fm90 = row("floor", 1)
    verdict = "meets" if sc <= 2 * fc else "misses"
    return f"""**Python peer call setup (aiortc ↔ aiortc)**, measured {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
on {os.cpu_count()} shared cores (load average {os.getloadavg()[0]:.1f} at the end);
`python -m benchmarks peer_setup` / `python benchmarks/bench_peer_setup.py --runs {runs}` (private network namespace, loopback host
candidates, 320x240 test pattern + tone, {runs} runs each, interleaved, same process and machine).
Signaling = two `flask_lpcall.peer.Peer` joining one call through `/ws/call` of a live example app
(werkzeug threaded server in the same process, memory store); floor = the same two aiortc peers
with the same tracks, offer/answer handed over in-process.

| setup | both connected, median | p90 | both decoded a frame, median | p90 |
|---|---|---|---|---|
| through our signaling server | {sc:.0f} ms | {sc90:.0f} ms | {sm:.0f} ms | {sm90:.0f} ms |
| in-process (floor) | {fc:.0f} ms | {fc90:.0f} ms | {fm:.0f} ms | {fm90:.0f} ms |

Ratio (connected, median): {sc / fc:.2f}× the floor; to first frame: {sm / fm:.2f}×. Target ≤ 2×: {verdict}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args()
    enter_netns(__file__)
    results = measure(args.runs)
    text = render(results, args.runs)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
