"""The seed's bandwidth budget (issue 17 part 4): what a video call reaches at 2,000 kbit/s down and
500 kbit/s up for the visitor, beside the same call unlimited, same run; and the same call at
300 and 100 kbit/s both ways (where the audio fallback takes over).

The limits are ``tests/netshape.py`` rate classes on the media going to each side's selected local
address and port inside the private namespace (the visitor's "down" is what the agent sends it). Per
row, after the limit has held for ``--settle`` seconds, each side's inbound video over ``--window``
seconds: frames decoded per second, frame size, received kbit/s, and whether the call fell back to audio.

    python benchmarks/bench_budget.py [--settle 12] [--window 8] [--no-write]
    python -m benchmarks budget
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks import bench_rtt_setup as rs
from benchmarks.common import enter_netns, wait

ISSUE = 17
NAME = "budget"

SELECTED_JS = """async () => {
  const pc = (window.__lpcallPeers || []).filter(p => p.connectionState !== 'closed').at(-1);
  if (!pc) return null;
  const stats = await pc.getStats(); let out = null;
  stats.forEach(r => { if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
    const pair = stats.get(r.selectedCandidatePairId); const l = pair && stats.get(pair.localCandidateId);
    if (l) out = [l.address, l.port]; });
  return out;
}"""

INBOUND_JS = """async () => {
  const pc = (window.__lpcallPeers || []).filter(p => p.connectionState !== 'closed').at(-1);
  let v = {frames: 0, bytes: 0, w: 0, h: 0}, a = 0;
  if (pc) (await pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') v = {frames: r.framesDecoded || 0, bytes: r.bytesReceived || 0, w: r.frameWidth || 0, h: r.frameHeight || 0};
    if (r.type === 'inbound-rtp' && r.kind === 'audio') a += r.bytesReceived || 0; });
  const q = document.querySelector('.lpcall-call .lpcall-quality');
  return {...v, audio: a, t: performance.now(), fallback: q ? q.dataset.fallback || '' : '', own: q ? q.dataset.own || '' : ''};
}"""

#: (label, kbit/s to the visitor, kbit/s to the agent)
ROWS = [("unlimited", None, None), ("seed budget: visitor 2,000 down / 500 up", 2000, 500),
        ("300 kbit/s both ways", 300, 300), ("100 kbit/s both ways", 100, 100)]


def _window(page: Any, seconds: float) -> dict[str, Any]:
    a = page.evaluate(INBOUND_JS)
    wait(lambda: page.evaluate("performance.now()") - a["t"] >= seconds * 1000, seconds + 5, "window")
    b = page.evaluate(INBOUND_JS)
    dt = (b["t"] - a["t"]) / 1000
    return {"fps": (b["frames"] - a["frames"]) / dt, "size": f"{b['w']}×{b['h']}" if b["w"] else "—",
            "kbps": (b["bytes"] - a["bytes"] + b["audio"] - a["audio"]) * 8 / dt / 1000,
            "fallback": b["fallback"] or "video", "own": b["own"]}


def measure(settle: float, window: float) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    from callkit import call_keys
    from netshape import NetShape
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server

    from example_site.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = start_live_server(app)
    out = []
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            agent, consumer = rs._pages(browser, server.url)
            for label, to_visitor, to_agent in ROWS:  # a fresh call per row: no fallback carried over
                n = agent.evaluate("(window.__lpcallPeers || []).length")
                agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
                consumer.click(".lpcall-invitation .lpcall-accept", timeout=30_000)
                wait(lambda n=n: agent.evaluate(f"window.__ff.slice({n}).find((t) => t !== undefined)"), 30, "call up")
                t_up = time.monotonic()  # let ICE settle on its final pair before limiting that pair
                wait(lambda t_up=t_up: time.monotonic() - t_up >= 3, 8, "settled")
                pairs = (consumer.evaluate(SELECTED_JS), agent.evaluate(SELECTED_JS))
                with NetShape() as shape:
                    if to_visitor:
                        shape.rate(to_visitor, to=tuple(wait(lambda: consumer.evaluate(SELECTED_JS), 10, "pair")))
                    if to_agent:
                        shape.rate(to_agent, to=tuple(wait(lambda: agent.evaluate(SELECTED_JS), 10, "pair")))
                    t0 = time.monotonic()
                    wait(lambda t0=t0: time.monotonic() - t0 >= settle, settle + 5, "settle")
                    visitor = _window(consumer, window)
                    agent_side = _window(agent, window)
                if (consumer.evaluate(SELECTED_JS), agent.evaluate(SELECTED_JS)) != pairs:
                    label += " (the selected pair changed while limited)"
                out.append((label, visitor, agent_side))
                print(label, visitor, agent_side, flush=True)
                consumer.click(".lpcall-call .lpcall-hangup")
                wait(lambda: call_keys(app) == [], 20, "call closed")
                wait(lambda: agent.evaluate("[...document.querySelectorAll('button.lpcall-call-btn')].every((b) => !b.disabled)"), 15, "buttons")
            browser.close()
    finally:
        server.stop()
    return out


def render(rows: list[tuple[str, dict[str, Any], dict[str, Any]]], settle: float, window: float, load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = []
    for label, v, a in rows:
        lines.append(f"| {label} | {v['fps']:.0f} fps, {v['size']}, {v['kbps']:.0f} kbit/s, {v['fallback']} | "
                     f"{a['fps']:.0f} fps, {a['size']}, {a['kbps']:.0f} kbit/s, {a['fallback']} |")
    table = "\n".join(lines)
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices (640×480 test pattern), private network namespace,
limits by `tests/netshape.py` (htb + u32 on the media to each side); `python -m benchmarks budget`
(one fresh VIDEO_CALL per row, measured over {window:.0f} s after the limit held {settle:.0f} s).

**What a video call reaches at the seed's budget** (what each side receives: decoded frames per second,
frame size, kbit/s of audio + video, and whether the call went on with video or fell back to audio):

| limit | visitor receives | agent receives |
|---|---|---|
{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--settle", type=float, default=12)
    parser.add_argument("--window", type=float, default=8)
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    rows = measure(args.settle, args.window)
    text = render(rows, args.settle, args.window, (load0 + os.getloadavg()[0]) / 2)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
