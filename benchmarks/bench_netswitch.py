"""A visitor's network switch (issue 17): the gap in remote video from the switch to decoded frames
advancing again on both sides, with the visitor's signaling socket lost and back in the same moment.

* call: the example shop (werkzeug, threaded, memory store; the visitor's pages on a second port of
  the same app) with the real agent workspace and engagement window in one headless Chromium with
  fake devices, one VIDEO_CALL, inside this benchmark's private network namespace. Two switches
  (tests/switchkit.py):
  - ``addr``: the address of the call's selected candidate pair goes away and a new one appears;
  - ``cut``: the selected pair's addresses stop carrying UDP for good (iptables) while other paths work.
  In both, the visitor's TCP connections to the site are aborted at the same instant (``ss -K``).
  Gap = from the switch to the first decoded video frame after the freeze on the later of the two
  sides (decoded frames counted, polled every 10 ms; not ``<video>.currentTime``).
* floor: the same switch on two RTCPeerConnections in one page with direct signaling, ICE restarted
  at the switch with a zero-latency offer/answer: what any recovery costs at least in this browser.

    python benchmarks/bench_netswitch.py [--switches 10] [--kinds addr,cut] [--no-write]
    python -m benchmarks netswitch
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

from benchmarks.bench_stall import FLOOR_SETUP_JS, SELECTED_JS, TRACKER_JS, _gap, _now_ms, _settle
from benchmarks.common import enter_netns, percentile, wait

ISSUE = 17
NAME = "netswitch"
KINDS = {"addr": "the media address goes away, a new one appears", "cut": "the selected pair stops carrying UDP, another path works"}


def _floor_pair(page: Any) -> dict[str, str]:
    from switchkit import present

    a = wait(lambda: (p := page.evaluate(SELECTED_JS, "floor")) and present(p[0]) and p, 10, "a selected floor pair on a live address")
    return {"local": a[0], "remote": a[1]}


def _socket_back(page: Any, t: float) -> float | None:
    """ms from ``t`` to the visitor's call socket open again after its loss (None: not yet)."""
    events = [e for e in page.evaluate("window.__sockets || []") if e["path"].endswith("/ws/call") and e["t"] >= t - 50]
    closed = [e["t"] for e in events if e["ev"] == "close"]
    opened = [e["t"] for e in events if e["ev"] == "open" and closed and e["t"] >= closed[0]]
    return (opened[0] - t) if opened else None


def measure(switches: int, kinds: list[str]) -> dict[str, list[Any]]:
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server
    from switchkit import SELECTED_PAIR_JS, SOCKETS_JS, Switch, SwitchRig, keep_default_route, present

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    servers: list[Any] = []

    def live_server(app: Any) -> Any:
        servers.append(start_live_server(app))
        return servers[-1]

    out: dict[str, list[Any]] = {k: [] for k in kinds} | {f"floor_{k}": [] for k in kinds} | {f"sig_{k}": [] for k in kinds}
    out["stuck"] = []
    sw = Switch()
    keep_default_route()
    sw.no_loopback_media()
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            rig = SwitchRig(browser, live_server)
            rig.init_scripts += [TRACKER_JS, SOCKETS_JS]
            rig.start("VIDEO_CALL")
            call = [(rig.agent, "__adv"), (rig.consumer, "__adv")]
            fpage = browser.new_context().new_page()
            fpage.goto(rig.server.url + "/support")
            fpage.evaluate(FLOOR_SETUP_JS)
            floor = [(fpage, "__adv"), (fpage, "__advB")]
            for i in range(switches):
                for kind in kinds:
                    try:
                        _settle(call)
                    except TimeoutError:
                        from resumekit import diagnose

                        out["stuck"].append(f"before switch {i + 1} {kind}: {diagnose(rig)}")
                        print(out["stuck"][-1], flush=True)
                        break
                    pair = wait(lambda: (p := rig.consumer.evaluate(SELECTED_PAIR_JS)) and present(p["local"]) and p, 10, "a selected pair on a live address")
                    t = _now_ms()
                    rules = sw.switch(kind, pair, rig.visitor_port)
                    out[kind].append(_gap(call, t, after_freeze=True))
                    out[f"sig_{kind}"].append(wait(lambda t=t: _socket_back(rig.consumer, t), 30, "the visitor's call socket back"))
                    sw.restore_rules(rules)
                    _settle(floor)
                    fpair = _floor_pair(fpage)
                    t = _now_ms()
                    rules = sw.switch(kind, fpair, rig.visitor_port)
                    fpage.evaluate("window.__floorRestart()")
                    out[f"floor_{kind}"].append(_gap(floor, t, after_freeze=True))
                    sw.restore_rules(rules)
                    print(f"switch {i + 1} {kind}: call {out[kind][-1]:.0f} ms (signaling back {out['sig_' + kind][-1]:.0f} ms), floor {out['floor_' + kind][-1]:.0f} ms", flush=True)
                if out["stuck"]:
                    break
            rig.close()
            browser.close()
    finally:
        sw.undo()
        for s in servers:
            s.stop()
    return out


def render(results: dict[str, list[Any]], switches: int, kinds: list[str], load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for kind in kinds:
        v, f, s = results[kind], results[f"floor_{kind}"], results[f"sig_{kind}"]
        if not v:
            continue
        p50, p95 = statistics.median(v), percentile(v, 0.95)
        ok = f"p50 ≤ 1000 ms {'✅' if p50 <= 1000 else '❌'}, p95 ≤ 2000 ms {'✅' if p95 <= 2000 else '❌'}"
        rows.append(f"| {KINDS[kind]}: flask-lpcall call | {len(v)} | {p50:.0f} ms | {p95:.0f} ms | {statistics.median(s):.0f} ms | {ok} |")
        if f:
            rows.append(f"| {KINDS[kind]}: in-page floor (ICE restarted at the switch, direct signaling) | {len(f)} | {statistics.median(f):.0f} ms | {percentile(f, 0.95):.0f} ms | | |")
    runs = "; ".join(f"{k}: " + ", ".join(f"{x:.0f}" for x in results[k]) for kind in kinds for k in (kind, f"floor_{kind}"))
    table = "\n".join(rows)
    stuck = f" A call did not settle again: {len(results['stuck'])} time(s) (run stopped)." if results["stuck"] else ""
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices, private network namespace;
`python -m benchmarks netswitch` ({switches} switches of each kind and as many floor runs, interleaved, one browser).
At every switch the visitor's TCP connections to the site are aborted too (its signaling and chat sockets).

**Frozen remote video after a network switch → decoded frames advancing again on both sides**
(VIDEO_CALL, the real engagement window and agent workspace):

| switch | n | p50 | p95 | visitor's call socket open again (p50) | target |
|---|---:|---:|---:|---:|---|
{table}

All runs (ms) — {runs}.{stuck}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--kinds", default="addr,cut")
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    kinds = [k for k in args.kinds.split(",") if k]
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    results = measure(args.switches, kinds)
    load = (load0 + os.getloadavg()[0]) / 2
    text = render(results, args.switches, kinds, load)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
