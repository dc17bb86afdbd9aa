"""Call setup at real round-trip times (issue 17 part 1): the consumer's Accept → first remote video
frame decoded on both sides at 0, 50, 100 and 200 ms RTT, beside the in-page RTCPeerConnection floor
at the same RTT, same run.

The RTT is put on every path of the private namespace by ``tests/netshape.py`` (every packet held
RTT/2 on its way out: browser ↔ server and browser ↔ browser alike; no netem on this kernel). The call
is the one of ``bench_call_setup`` (example shop in-process, the real agent workspace and engagement
window in one headless Chromium, Accept clicked once the visitor's window holds the agent's offer, as
while a person reads the invitation); the floor is the same page's two RTCPeerConnections handing
offer/answer and candidates over directly (no signaling round trip at all). Phases come from the
engines' traces and from each RTCPeerConnection's ICE and connection state changes.

    python benchmarks/bench_rtt_setup.py [--runs 5] [--rtts 0,50,100,200] [--no-write]
    python -m benchmarks rtt_setup
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks import bench_call_setup as cs
from benchmarks.common import enter_netns, floor_js, percentile, wait

ISSUE = 17
NAME = "rtt_setup"

#: page init script part: ICE / connection state changes of every peer connection, epoch ms
STATES_JS = """
window.__pcStates = [];
(() => {
  const Orig = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    const pc = new Orig(...args);
    const log = (what) => window.__pcStates.push([performance.timeOrigin + performance.now(), what]);
    pc.addEventListener('iceconnectionstatechange', () => log('ice ' + pc.iceConnectionState));
    pc.addEventListener('connectionstatechange', () => log('pc ' + pc.connectionState));
    return pc;
  };
  window.RTCPeerConnection.prototype = Orig.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Orig);
})();
"""

INIT = cs.INIT + STATES_JS
FLOOR_JS = floor_js()

#: (label, page, trace source, first entry starting with)
PHASES = [
    ("Accept reaches the agent (Accept → server → agent)", "agent", "trace", "recv session"),
    ("answer sent (visitor)", "consumer", "trace", "send description answer"),
    ("answer received (agent)", "agent", "trace", "recv description answer"),
    ("ICE checking (visitor)", "consumer", "states", "ice checking"),
    ("ICE connected (visitor)", "consumer", "states", "ice connected"),
    ("ICE connected (agent)", "agent", "states", "ice connected"),
    ("DTLS done: connected (visitor)", "consumer", "states", "pc connected"),
    ("DTLS done: connected (agent)", "agent", "states", "pc connected"),
]
FIRSTS = ["first frame decoded (agent)", "first frame decoded (visitor)"]
STATES_GET = "() => window.__pcStates || []"


def _phases(agent: Any, consumer: Any, t0: float, firsts: list[float]) -> dict[str, float]:
    src = {("agent", "trace"): agent.evaluate(cs.TRACE_JS), ("consumer", "trace"): consumer.evaluate(cs.TRACE_JS),
           ("agent", "states"): agent.evaluate(STATES_GET), ("consumer", "states"): consumer.evaluate(STATES_GET)}
    out: dict[str, float] = {}
    for label, who, kind, prefix in PHASES:
        hit = next((t for t, what in src[(who, kind)] if what.startswith(prefix) and t >= t0 - 5), None)
        if hit is not None:
            out[label] = hit - t0
    out[FIRSTS[0]], out[FIRSTS[1]] = firsts[0] - t0, firsts[1] - t0
    return out


def _one_call(agent: Any, consumer: Any, app: Any) -> tuple[float, dict[str, float]]:
    from callkit import call_keys

    n_agent = agent.evaluate("(window.__lpcallPeers || []).length")
    n_consumer = consumer.evaluate("(window.__lpcallPeers || []).length")
    agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    consumer.wait_for_selector(".lpcall-invitation .lpcall-accept", timeout=30_000)
    consumer.wait_for_function(cs.OFFER_KEPT_JS, timeout=30_000)
    consumer.click(".lpcall-invitation .lpcall-accept", timeout=30_000)
    t0 = wait(lambda: consumer.evaluate("window.__acceptedAt.at(-1)"), 10, "accept")
    firsts = []
    for page, n in ((agent, n_agent), (consumer, n_consumer)):
        firsts.append(wait(lambda p=page, n=n: p.evaluate(f"window.__ff.slice({n}).find((t) => t !== undefined)"), 40, "first frame"))
    phases = _phases(agent, consumer, t0, firsts)
    consumer.click(".lpcall-call .lpcall-hangup")
    wait(lambda: call_keys(app) == [], 20, "call closed")
    agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]", timeout=20_000)
    wait(lambda: agent.evaluate("[...document.querySelectorAll('button.lpcall-call-btn')].every((b) => !b.disabled)"), 15, "buttons")
    return float(max(firsts) - t0), phases


def _pages(browser: Any, url: str) -> tuple[Any, Any]:
    agent = browser.new_context().new_page()
    agent.add_init_script(INIT)
    agent.goto(f"{url}/lpcall/agent/login")
    agent.fill("#lpcall-username", "bob")
    agent.fill("#lpcall-password", "bob")
    agent.click(".lpcall-login-form [type=submit]")
    agent.wait_for_selector("#lpcall-agent")
    consumer = browser.new_context().new_page()
    consumer.add_init_script(INIT)
    consumer.goto(url + "/")
    consumer.click(".lpcall-launcher")
    consumer.fill("#lpcall-visitor-name", "Vera")
    consumer.click(".lpcall-start [type=submit]")
    consumer.wait_for_selector(".lpcall-composer:not([hidden])")
    agent.click(".lpcall-mine .lpcall-conv-open", timeout=20_000)
    return agent, consumer


Result = dict[int, dict[str, Any]]


def measure(runs: int, rtts: list[int]) -> Result:
    from netshape import NetShape
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server

    from example_site.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = start_live_server(app)
    out: Result = {}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            agent, consumer = _pages(browser, server.url)
            _one_call(agent, consumer, app)  # warm-up: modules, codecs, devices
            consumer.evaluate(FLOOR_JS)
            for rtt in rtts:
                row: dict[str, Any] = {"call": [], "floor": [], "phases": []}
                with NetShape(rtt_ms=rtt) if rtt else _Nothing():
                    for i in range(runs):  # interleaved: both see the same machine load
                        for kind in (("floor", "call") if i % 2 else ("call", "floor")):
                            if kind == "floor":
                                row["floor"].append(consumer.evaluate(FLOOR_JS))
                            else:
                                elapsed, phases = _one_call(agent, consumer, app)
                                row["call"].append(elapsed)
                                row["phases"].append(phases)
                        print(f"rtt {rtt} ms run {i + 1}: call {row['call'][-1]:.0f} ms, floor {row['floor'][-1]:.0f} ms",
                              flush=True)
                out[rtt] = row
            browser.close()
    finally:
        server.stop()
    return out


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def render(results: Result, runs: int, load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows, phase_rows = [], []
    for rtt, r in results.items():
        c50, f50 = statistics.median(r["call"]), statistics.median(r["floor"])
        c95, f95 = percentile(r["call"], 0.95), percentile(r["floor"], 0.95)
        over = c50 - f50
        ok = "✅" if over <= rtt or over <= 0 else "❌"
        rows.append(f"| {rtt} ms | {c50:.0f} ms | {c95:.0f} ms | {f50:.0f} ms | {f95:.0f} ms | {over:+.0f} ms "
                    f"({over / rtt:.1f} RTT) | ≤ floor + 1 RTT {ok} |" if rtt else
                    f"| 0 ms | {c50:.0f} ms | {c95:.0f} ms | {f50:.0f} ms | {f95:.0f} ms | {over:+.0f} ms | — |")
    labels = [p[0] for p in PHASES] + FIRSTS
    header = "| phase (median ms after Accept) | " + " | ".join(f"{rtt} ms RTT" for rtt in results) + " |"
    phase_rows = [header, "|---|" + "---|" * len(results)]
    for label in labels:
        cells = []
        for r in results.values():
            values = [p[label] for p in r["phases"] if label in p]
            cells.append(f"{statistics.median(values):.0f}" if values else "–")
        phase_rows.append(f"| {label} | " + " | ".join(cells) + " |")

    def listing(kind: str) -> str:
        return "; ".join(f"{rtt} ms: " + ", ".join(f"{v:.0f}" for v in r[kind]) for rtt, r in results.items())

    table = "\n".join(rows)
    phases = "\n".join(phase_rows)
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices, private network namespace with every packet
held RTT/2 on its way out (`tests/netshape.py`: NFQUEUE; this kernel has no netem);
`python -m benchmarks rtt_setup` ({runs} runs of each row per RTT, interleaved, one browser).

**Accept → first remote video frame decoded on both sides at real round-trip times** (VIDEO_CALL, the
real engagement window and agent workspace, Accept clicked once the visitor's window holds the
agent's offer), beside the floor at the same RTT (in-page RTCPeerConnection pair: getUserMedia, offer/answer
and candidates handed over in the page, no server):

| RTT | call p50 | call p95 | floor p50 | floor p95 | call − floor (p50) | target |
|---|---|---|---|---|---|---|
{table}

All runs (ms) — call: {listing("call")}; floor: {listing("floor")}.

Where the round trips go (median ms after the Accept, from the engines' traces and each
RTCPeerConnection's state changes):

{phases}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rtts", default="0,50,100,200")
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    rtts = [int(x) for x in args.rtts.split(",")]
    load0 = os.getloadavg()[0]
    results = measure(args.runs, rtts)
    load = (load0 + os.getloadavg()[0]) / 2
    text = render(results, args.runs, load)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
