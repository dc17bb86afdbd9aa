"""'Continue on my phone' in Chromium (issue 18): the phone opens the QR code's link → media from the phone.

* handoff: the example shop (werkzeug, threaded, memory store) in this process, the real agent
  workspace and the visitor's desktop tab (engagement window) in one VIDEO_CALL; the desktop shows
  the code, a phone-sized context opens its link. t0 = the phone page's navigation start
  (``performance.timeOrigin``: the link opened); the page loads, waits for the desktop tab to see it
  opened and leave the call (it polls every 0.7 s), then resumes the call (``/api/call/resume``,
  getUserMedia, ``/ws/call`` join, fresh negotiation with the agent, ICE). t1 = the later of: the
  phone's first decoded remote frame, and the agent's first decoded frame on the peer connection
  made for the phone (each polled every 10 ms in its page).
* from NO_CAMERA_ACCESS: the same, but the desktop's camera and microphone are denied (a second
  Chromium whose permission prompts are real, the desktop context without the grant): the visitor
  accepts, the error view offers the phone, the desktop shows the code from there
  (tests/test_handoff_nocamera_browser.py); t0 and t1 as above.
* baseline (same run, same phone page): a reload of the phone's call page right after → media again,
  i.e. the resume the handoff is built on, without the desktop's leaving.

Each run is a new call (a new rig: agent, desktop, phone). A private network namespace like the tests.

    python benchmarks/bench_handoff.py [--runs 6] [--no-write]
    python -m benchmarks handoff
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

from benchmarks.common import FIRST_FRAME_POLLER_JS, enter_netns, percentile, wait

ISSUE = 18
NAME = "handoff"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def _first_frames(phone: Any, agent: Any, n_agent: int) -> float:
    mine = wait(lambda: phone.evaluate("window.__ff.find((t) => t !== undefined)"), 30, "phone frame")
    theirs = wait(lambda: agent.evaluate(f"window.__ff.slice({n_agent}).find((t) => t !== undefined)"), 30, "agent frame")
    return float(max(mine, theirs))


def _one(browser: Any, live_server: Any) -> tuple[float, float]:
    from resumekit import INIT, Rig

    rig = Rig(browser, live_server)
    try:
        rig.start("VIDEO_CALL")
        rig.agent.evaluate(f"() => {{ {FIRST_FRAME_POLLER_JS} }}")
        desktop = rig.consumer
        desktop.click(".lpcall-call .lpcall-handoff")
        desktop.wait_for_selector(".lpcall-handoff-panel .lpcall-handoff-url")
        url = desktop.input_value(".lpcall-handoff-url")
        ctx = browser.new_context(**PHONE)
        ctx.add_init_script(INIT)
        ctx.add_init_script(FIRST_FRAME_POLLER_JS)
        rig.contexts.append(ctx)
        phone = ctx.new_page()
        n_agent = rig.peer_count(rig.agent)
        phone.goto(url)
        handoff = _first_frames(phone, rig.agent, n_agent) - phone.evaluate("performance.timeOrigin")
        n_agent = rig.peer_count(rig.agent)
        phone.reload()
        resume = _first_frames(phone, rig.agent, n_agent) - phone.evaluate("performance.timeOrigin")
        return handoff, resume
    finally:
        rig.close()


def _one_nocam(browser: Any, live_server: Any) -> float:
    from test_handoff_nocamera_browser import NoCameraRig

    rig = NoCameraRig(browser, live_server)
    try:
        rig.open_agent()
        desktop = rig.open_consumer()
        rig.agent.click(".lpcall-mine .lpcall-conv-open")
        rig.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
        wait(lambda: (rig.engine(rig.agent) or {}).get("status") not in (None, "idle", "media"), 20, "agent joined")
        rig.agent.evaluate(f"() => {{ {FIRST_FRAME_POLLER_JS} }}")
        desktop.click(".lpcall-invitation .lpcall-accept")
        desktop.click(".lpcall-no-camera .lpcall-handoff")
        desktop.wait_for_selector(".lpcall-handoff-panel .lpcall-handoff-url")
        url = desktop.input_value(".lpcall-handoff-url")
        ctx = rig.context(["camera", "microphone"], **PHONE)
        ctx.add_init_script(FIRST_FRAME_POLLER_JS)
        phone = ctx.new_page()
        n_agent = rig.peer_count(rig.agent)
        phone.goto(url)
        return _first_frames(phone, rig.agent, n_agent) - float(phone.evaluate("performance.timeOrigin"))
    finally:
        rig.close()


def measure(runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    servers: list[Any] = []

    def live_server(app: Any) -> Any:
        servers.append(start_live_server(app))
        return servers[-1]

    out: dict[str, list[float]] = {"handoff": [], "resume": [], "nocam": []}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            _one(browser, live_server)  # warm-up
            for i in range(runs):
                h, r = _one(browser, live_server)
                out["handoff"].append(h)
                out["resume"].append(r)
                print(f"run {i + 1}: handoff {h:.0f} ms, resume {r:.0f} ms", flush=True)
            browser.close()
            from support import CHROMIUM, CHROMIUM_ARGS

            real_prompts = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=[a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"])
            _one_nocam(real_prompts, live_server)  # warm-up
            for i in range(runs):
                out["nocam"].append(_one_nocam(real_prompts, live_server))
                print(f"run {i + 1}: handoff from NO_CAMERA_ACCESS {out['nocam'][-1]:.0f} ms", flush=True)
            real_prompts.close()
    finally:
        for s in servers:
            s.stop()
    return out


def render(results: dict[str, list[float]], runs: int, load: float) -> str:
    h50, h95 = statistics.median(results["handoff"]), percentile(results["handoff"], 0.95)
    r50, r95 = statistics.median(results["resume"]), percentile(results["resume"], 0.95)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    hs = ", ".join(f"{v:.0f}" for v in results["handoff"])
    rs = ", ".join(f"{v:.0f}" for v in results["resume"])
    n50, n95 = statistics.median(results["nocam"]), percentile(results["nocam"], 0.95)
    ns = ", ".join(f"{v:.0f}" for v in results["nocam"])
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices, private network namespace;
`python -m benchmarks handoff` ({runs} calls, each: a handoff, then a reload of the phone's page).

**Phone opens the "continue on my phone" link → video decoded on the phone and, from the phone, at the
agent** (VIDEO_CALL; t0 = the phone page's navigation start):

| | p50 | p95 |
|---|---|---|
| handoff (page load, wait for the desktop tab to leave — it polls every 0.7 s —, resume, getUserMedia, join, negotiation, ICE) | {h50:.0f} ms | {h95:.0f} ms |
| handoff from `NO_CAMERA_ACCESS` (the desktop denied camera and microphone; its error view shows the code) | {n50:.0f} ms | {n95:.0f} ms |
| baseline, same run: reload of the phone's call page → media again (the resume alone) | {r50:.0f} ms | {r95:.0f} ms |

Ratio p50: **{h50 / r50:.2f}×** the resume; from `NO_CAMERA_ACCESS` **{n50 / r50:.2f}×**. All runs (ms) — handoff: {hs};
from NO_CAMERA_ACCESS: {ns}; resume: {rs}.
The difference is mostly the desktop tab's poll interval (up to 0.7 s until it sees the link opened)
and its socket's close reaching the server before the phone may join.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
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
