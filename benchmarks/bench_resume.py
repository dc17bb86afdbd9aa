"""Resume in Chromium: the visitor reloads the page mid-call → remote video decoded again on both sides.

* resume: the example shop (werkzeug, threaded, memory store) in this process, the real agent
  workspace and the real engagement window in one headless Chromium with fake devices, one
  VIDEO_CALL. Per run the visitor's page is reloaded. t0 = the new document's navigation start
  (``performance.timeOrigin``, i.e. when the reload began); the page loads, the tag finds the call
  in sessionStorage, ``/api/call/resume``, ``cobrowse``/``sessionResume``, the window's container
  and ``sliderOpened``, getUserMedia, the signaling join, a fresh negotiation with the agent, ICE.
  t1 = the later of: the visitor's first decoded remote frame, and the agent's first decoded
  frame on the peer connection made for the new page (each polled every 10 ms in its page).
* floor: the same reload of a tagged page without a call in a second tab of the same browser,
  then getUserMedia and two in-page RTCPeerConnections with direct offer/answer; t1 = both decoded
  a frame. The least any resume can cost: a page load plus a new WebRTC connection.

Runs and floors are interleaved; a private network namespace like the tests (loopback only).

    python benchmarks/bench_resume.py [--runs 12] [--no-write]
    python -m benchmarks resume
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

ISSUE = 5
NAME = "resume"

# first-decoded-frame time (epoch ms) of every peer connection of the page
INIT = """
window.__lpcallTest = true;
window.__ff = [];
setInterval(async () => {
  const peers = window.__lpcallPeers || [];
  for (let i = 0; i < peers.length; i++) {
    if (window.__ff[i] !== undefined || peers[i].connectionState === 'closed') continue;
    let n = 0;
    (await peers[i].getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
    if (n > 0 && window.__ff[i] === undefined) window.__ff[i] = performance.timeOrigin + performance.now();
  }
}, 10);
"""

FLOOR_JS = """
async () => {
  const now = () => performance.timeOrigin + performance.now();
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  for (const t of stream.getTracks()) { a.addTrack(t, stream); b.addTrack(t.clone(), stream); }
  await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
  const frames = async (pc) => { let n = 0; (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; }); return n; };
  const first = [null, null];
  while ((first[0] === null || first[1] === null) && now() - performance.timeOrigin < 30000) {
    if (first[0] === null && await frames(a) > 0) first[0] = now();
    if (first[1] === null && await frames(b) > 0) first[1] = now();
    await new Promise((r) => setTimeout(r, 10));
  }
  a.close(); b.close(); stream.getTracks().forEach((t) => t.stop());
  if (first[0] === null || first[1] === null) throw new Error('floor: no frame');
  return Math.max(first[0], first[1]) - performance.timeOrigin;
}
"""


def _enter_netns() -> None:
    if os.environ.get("LPCALL_IN_NETNS") or os.environ.get("LPCALL_NO_NETNS") or not shutil.which("unshare"):
        return
    if subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True).returncode != 0:
        return
    os.environ["LPCALL_IN_NETNS"] = "1"
    script = 'ip link set lo up && ip addr add 127.0.0.2/32 dev lo && exec "$@"'
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])


def _wait(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a deadline wait


def _one_resume(agent: Any, consumer: Any) -> float:
    n_agent = agent.evaluate("(window.__lpcallPeers || []).length")
    consumer.reload()
    t0 = consumer.evaluate("performance.timeOrigin")
    mine = _wait(lambda: consumer.evaluate("window.__ff.find((t) => t !== undefined)"), 30, "visitor frame")
    theirs = _wait(lambda: agent.evaluate(f"window.__ff.slice({n_agent}).find((t) => t !== undefined)"), 30, "agent frame")
    return float(max(mine, theirs) - t0)


def _one_floor(page: Any) -> float:
    page.reload()
    return float(page.evaluate(FLOOR_JS))


def measure(runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright
    from resumekit import Rig
    from support import launch_chromium

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    servers: list[Any] = []

    def live_server(app: Any) -> Any:
        from support import start_live_server

        servers.append(start_live_server(app))
        return servers[-1]

    out: dict[str, list[float]] = {"resume": [], "floor": []}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            rig = Rig(browser, live_server)
            rig.start("VIDEO_CALL")
            rig.consumer.context.add_init_script(INIT)  # for every reloaded visitor page
            rig.agent.evaluate(f"() => {{ {INIT} }}")  # the agent's page stays
            floor = browser.new_context().new_page()
            floor.add_init_script(INIT)
            floor.goto(rig.server.url + "/support")
            _one_resume(rig.agent, rig.consumer)  # warm-up: the INIT poller is now in the visitor's page
            _one_floor(floor)
            for i in range(runs):  # interleaved: both see the same machine load
                if i % 2:
                    out["floor"].append(_one_floor(floor))
                    out["resume"].append(_one_resume(rig.agent, rig.consumer))
                else:
                    out["resume"].append(_one_resume(rig.agent, rig.consumer))
                    out["floor"].append(_one_floor(floor))
                print(f"run {i + 1}: resume {out['resume'][-1]:.0f} ms, floor {out['floor'][-1]:.0f} ms", flush=True)
            rig.close()
            browser.close()
    finally:
        for s in servers:
            s.stop()
    return out


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def render(results: dict[str, list[float]], runs: int, load: float) -> str:
    r50, r95 = statistics.median(results["resume"]), _p(results["resume"], 0.95)
    f50, f95 = statistics.median(results["floor"]), _p(results["floor"], 0.95)
    ok50 = "✅" if r50 <= 1000 else "❌"
    ok95 = "✅" if r95 <= 2000 else "❌"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    resumes = ", ".join(f"{v:.0f}" for v in results["resume"])
    floors = ", ".join(f"{v:.0f}" for v in results["floor"])
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring), Chromium headless with fake devices, private network namespace;
`python -m benchmarks resume` ({runs} reloads and {runs} floor runs, interleaved, one browser).

**Visitor reloads mid-call → remote video decoded again on both sides** (VIDEO_CALL, the real engagement
window and agent workspace, example shop on werkzeug in-process, memory store; t0 = the reload's
navigation start):

| | p50 | p95 | target |
|---|---|---|---|
| resume through flask-lpcall (page load, `/api/call/resume`, `sessionResume` → `sliderOpened`, getUserMedia, `/ws/call` join, fresh negotiation, ICE) | {r50:.0f} ms | {r95:.0f} ms | p50 ≤ 1000 ms {ok50}, p95 ≤ 2000 ms {ok95} |
| floor: reload of a tagged page without a call + in-page RTCPeerConnection loopback (same browser) | {f50:.0f} ms | {f95:.0f} ms | |

Ratio p50: **{r50 / f50:.2f}×** the floor, p95: {r95 / f95:.2f}×. All runs (ms) — resume: {resumes}; floor: {floors}.
The resume path adds to the floor: the resume API round trip, the signaling socket's connect and
join, and one relay hop per offer/answer/candidate through the server (the agent keeps its camera
and makes the fresh offer the moment the visitor's socket joins).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    _enter_netns()
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
