"""Call setup and resume per engine: the Firefox pairs beside each engine's own in-page floor.

For each pair (Firefox ESR visitor × Chromium agent, Chromium visitor × Firefox agent), the example
shop (werkzeug, threaded, memory store) in this process, the real agent workspace and the real
engagement window, one browser process per participant (Firefox over WebDriver BiDi,
tests/firefoxkit.py; Chromium through Playwright), fake devices:

* setup: the agent clicks "Video call", the visitor clicks Accept once its window listens on the
  call (as in bench_call_setup); t0 = the ``cobrowseAccepted`` publish, t1 = the later of both
  pages' first decoded remote video frame.
* resume: the visitor's page is reloaded mid-call; t0 = the new document's navigation start,
  t1 = the later of the visitor's first decoded frame and the agent's first decoded frame on the
  peer connection made for the new page (as in bench_resume).
* floors, interleaved with the runs: in each engine's page, getUserMedia and two in-page
  RTCPeerConnections (setup floor), and the same after a reload of a tagged page without a call
  (resume floor). The setup target compares with the slower engine's floor of the pair.

    python benchmarks/bench_browsers.py [--runs 8] [--no-write]
    python -m benchmarks browsers
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

from benchmarks.bench_call_setup import INIT as SETUP_INIT
from benchmarks.bench_call_setup import _one_call
from benchmarks.bench_resume import _one_resume
from benchmarks.common import enter_netns, floor_js, percentile

ISSUE = 16
NAME = "browsers"
PAIRS = [("firefox", "chromium"), ("chromium", "firefox")]  # (visitor, agent)
FLOOR_JS = floor_js()
RELOAD_FLOOR_JS = floor_js(since_navigation=True)


def _open(engines: dict[str, Any], name: str) -> Any:
    ctx = engines[name].new_context(viewport={"width": 1000, "height": 800})
    ctx.add_init_script(SETUP_INIT)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    return page


def _pair(engines: dict[str, Any], visitor: str, agent_engine: str, runs: int) -> dict[str, list[float]]:
    from support import start_live_server

    from example_site.app import create_app

    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = start_live_server(app)
    out: dict[str, list[float]] = {k: [] for k in ("setup", "resume", f"floor_{visitor}", f"floor_{agent_engine}", "resume_floor")}
    try:
        agent = _open(engines, agent_engine)
        agent.goto(f"{server.url}/lpcall/agent/login")
        agent.fill("#lpcall-username", "bob")
        agent.fill("#lpcall-password", "bob")
        agent.click(".lpcall-login-form [type=submit]")
        agent.wait_for_selector("#lpcall-agent")
        consumer = _open(engines, visitor)
        consumer.goto(server.url + "/")
        consumer.click(".lpcall-launcher")
        consumer.fill("#lpcall-visitor-name", "Vera")
        consumer.click(".lpcall-start [type=submit]")
        consumer.wait_for_selector(".lpcall-composer:not([hidden])")
        agent.click(".lpcall-mine .lpcall-conv-open")
        floor_page = _open(engines, visitor)  # a tagged page without a call, in the visitor's engine
        floor_page.goto(server.url + "/support")
        _one_call(agent, consumer, app)  # warm-up: modules, codecs, devices
        for i in range(runs):
            out["setup"].append(_one_call(agent, consumer, app))
            out[f"floor_{visitor}"].append(float(consumer.evaluate(FLOOR_JS)))
            out[f"floor_{agent_engine}"].append(float(agent.evaluate(FLOOR_JS)))
            print(f"{visitor}→{agent_engine} setup {i + 1}: {out['setup'][-1]:.0f} ms; floors {out[f'floor_{visitor}'][-1]:.0f} / "
                  f"{out[f'floor_{agent_engine}'][-1]:.0f} ms", flush=True)
        # one call kept up for the reloads
        agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
        consumer.click(".lpcall-invitation .lpcall-accept")
        n = agent.evaluate("(window.__lpcallPeers || []).length")
        agent.wait_for_function(f"() => window.__ff.slice({n - 1 if n else 0}).some((t) => t !== undefined)", timeout=30_000)
        _one_resume(agent, consumer)  # warm-up
        for i in range(runs):
            out["resume"].append(_one_resume(agent, consumer))
            floor_page.reload()
            out["resume_floor"].append(float(floor_page.evaluate(RELOAD_FLOOR_JS)))
            print(f"{visitor}→{agent_engine} resume {i + 1}: {out['resume'][-1]:.0f} ms; floor {out['resume_floor'][-1]:.0f} ms", flush=True)
        consumer.click(".lpcall-call .lpcall-hangup")
    finally:
        server.stop()
    return out


def measure(runs: int) -> dict[str, dict[str, list[float]]]:
    from firefoxkit import FirefoxBrowser
    from playwright.sync_api import sync_playwright
    from support import launch_chromium

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    results: dict[str, dict[str, list[float]]] = {}
    with sync_playwright() as pw:
        for visitor, agent in PAIRS:
            firefox = FirefoxBrowser()
            chromium = launch_chromium(pw)
            try:
                results[f"{visitor}-{agent}"] = _pair({"firefox": firefox, "chromium": chromium}, visitor, agent, runs)
            finally:
                firefox.close()
                chromium.close()
    return results


def render(results: dict[str, dict[str, list[float]]], runs: int, load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    for key, r in results.items():
        visitor, agent = key.split("-")
        s50, s95 = statistics.median(r["setup"]), percentile(r["setup"], 0.95)
        fv, fa = statistics.median(r[f"floor_{visitor}"]), statistics.median(r[f"floor_{agent}"])
        floor = max(fv, fa)
        ratio = s50 / floor
        r50, r95 = statistics.median(r["resume"]), percentile(r["resume"], 0.95)
        rf = statistics.median(r["resume_floor"])
        rows.append(
            f"| {visitor.title()} visitor × {agent.title()} agent | {s50:.0f} / {s95:.0f} ms | {visitor} {fv:.0f} ms, "
            f"{agent} {fa:.0f} ms | **{ratio:.2f}×** {'✅' if ratio <= 1.5 else '❌'} | {r50:.0f} / {r95:.0f} ms "
            f"{'✅' if r50 <= 1000 else '❌'} | {rf:.0f} ms ({r50 / rf:.2f}×) |"
        )
    listing = "\n".join(
        f"- {k}: setup {', '.join(f'{v:.0f}' for v in r['setup'])}; resume {', '.join(f'{v:.0f}' for v in r['resume'])}"
        for k, r in results.items()
    )
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f} while
measuring); Firefox ESR (Debian, WebDriver BiDi) and Chromium (Debian, Playwright) headless with fake devices, one
browser process per participant, private network namespace; `python -m benchmarks browsers` ({runs} runs per row).

| pair | setup p50 / p95 (Accept → first frame both sides) | in-page floor p50 per engine | setup ÷ slower floor (target ≤ 1.5×) | resume p50 / p95 (target p50 ≤ 1 s) | resume floor p50 (reload + in-page call, visitor's engine) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

All runs (ms):
{listing}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    results = measure(args.runs)
    load = (load0 + os.getloadavg()[0]) / 2
    text = render(results, args.runs, load)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
