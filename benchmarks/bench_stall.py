"""Stalled media in Chromium (issue 19): the frozen-video gap after a cut of the media path.

* call: the example shop (werkzeug, threaded, memory store) in this process, the real agent workspace and
  the real engagement window in one headless Chromium with fake devices, one VIDEO_CALL. Two cuts, made
  with iptables inside this benchmark's private network namespace (UDP only: the signaling socket stays):
  - ``udp3s``: all UDP dropped for 3 s, then restored. Gap = from the restore to the first decoded
    video frame on the later of the two sides;
  - ``pair``: UDP to the selected candidate pair's addresses dropped for good while another path (the
    other veth address, loopback) is there. Gap = from the cut to the first decoded frame after the freeze
    on the later side (the other path exists from the cut on).
  Decoded video frames are counted (``framesDecoded`` of the newest connection, polled every 10 ms in each
  page), not ``<video>.currentTime``, which moves on audio alone.
* floor: the same cuts on two RTCPeerConnections in one page with direct signaling, where ICE is restarted
  at the ideal moment (the restore, or the cut) with a zero-latency offer/answer; for the pair cut also a
  fresh pair of connections made at the cut (what the call does): what a recovery costs at least (new
  ICE checks, DTLS for a fresh connection, a key frame, decoding).

Cuts and floor runs are interleaved; the path is let settle between them.

    python benchmarks/bench_stall.py [--cuts 10] [--no-write]
    python -m benchmarks stall
"""

from __future__ import annotations

import argparse
import itertools
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

from benchmarks.common import enter_netns, percentile, wait

ISSUE = 19
NAME = "stall"
CUT_S = 3.0
FREEZE_MS = 250  # a pause in decoded frames at least this long is the freeze

#: every page: epoch ms (Date.now(), the clock Python's time.time() reads) of each increase of decoded video frames on the newest open connection (10 ms poll)
TRACKER_JS = """
window.__lpcallTest = true;
window.__adv = [];
(() => { let last = -1, lastPc = null;
  setInterval(async () => {
    const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
    const pc = pcs.at(-1); if (!pc) return;
    let n = 0; (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
    if (pc !== lastPc) { lastPc = pc; last = n; return; }
    if (n > last) { window.__adv.push(Date.now()); if (window.__adv.length > 4000) window.__adv.splice(0, 2000); }
    last = n;
  }, 10);
})();
"""

#: the floor page: two connections with direct signaling, both sending camera video; window.__lpcallPeers = [a, b]
FLOOR_SETUP_JS = """async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate).catch(() => {});
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate).catch(() => {});
  for (const t of stream.getTracks()) { a.addTrack(t, stream); b.addTrack(t.clone(), stream); }
  window.__floorRestart = async () => {
    a.restartIce();
    await a.setLocalDescription(); await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(); await a.setRemoteDescription(b.localDescription);
  };
  await window.__floorRestart();
  window.__adv = []; window.__advB = [];
  const track = (pc, out) => { let last = 0; const t = setInterval(async () => { if (pc.connectionState === 'closed') return clearInterval(t);
    let n = 0; (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded || 0; });
    if (n > last) out.push(Date.now()); last = n; }, 10); };
  track(a, window.__adv); track(b, window.__advB);
  window.__floorPeers = [a, b];
  // the fresh-connection floor: a new pair of connections made at the cut, switched to when connected
  window.__floorFresh = async () => {
    const [oa, ob] = window.__floorPeers;
    const na = new RTCPeerConnection(), nb = new RTCPeerConnection();
    na.onicecandidate = (e) => e.candidate && nb.addIceCandidate(e.candidate).catch(() => {});
    nb.onicecandidate = (e) => e.candidate && na.addIceCandidate(e.candidate).catch(() => {});
    for (const t of stream.getTracks()) { na.addTrack(t, stream); nb.addTrack(t, stream); }
    await na.setLocalDescription(); await nb.setRemoteDescription(na.localDescription);
    await nb.setLocalDescription(); await na.setRemoteDescription(nb.localDescription);
    track(na, window.__adv); track(nb, window.__advB);
    await new Promise((r) => { const f = () => (na.connectionState === 'connected' ? r() : setTimeout(f, 5)); f(); });
    oa.close(); ob.close();
    window.__floorPeers = [na, nb];
    window.__floorRestart = async () => {
      na.restartIce();
      await na.setLocalDescription(); await nb.setRemoteDescription(na.localDescription);
      await nb.setLocalDescription(); await na.setRemoteDescription(nb.localDescription);
    };
  };
  return true;
}"""

SELECTED_JS = """async (which) => {
  const pcs = which === 'floor' ? window.__floorPeers : (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = which === 'floor' ? pcs[0] : pcs.at(-1);
  const stats = await pc.getStats(); let out = null;
  stats.forEach(r => { if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
    const p = stats.get(r.selectedCandidatePairId); const l = p && stats.get(p.localCandidateId), m = p && stats.get(p.remoteCandidateId);
    if (l && m) out = [l.address, m.address]; });
  return out;
}"""


def _now_ms() -> float:
    return time.time() * 1000


def _recovered(advances: list[float], t_ref: float, after_freeze: bool) -> float | None:
    """The first decoded frame after ``t_ref``; ``after_freeze``: the one that ends the pause of at least
    FREEZE_MS that began by ``t_ref`` + 1 s (the cut's freeze), or if that side never paused, the first."""
    later = [t for t in advances if t > t_ref]
    if not after_freeze:
        return later[0] if later else None
    before = [t for t in advances if t <= t_ref]
    prev = before[-1] if before else None
    for t in later:
        if prev is not None and t - prev >= FREEZE_MS and prev <= t_ref + 1000:
            return t
        if prev is not None and prev > t_ref + 1000:
            return later[0]  # frames went on without the freeze
        prev = t
    return None


def _gap(pages: list[tuple[Any, str]], t_ref: float, after_freeze: bool) -> float:
    def done() -> list[float] | None:
        out = []
        for page, var in pages:
            t = _recovered(page.evaluate(f"window.{var}"), t_ref, after_freeze)
            if t is None:
                return None
            out.append(t)
        return out

    times = wait(done, 60, "video decoded again on both sides")
    return max(times) - t_ref


def _settle(pages: list[tuple[Any, str]], seconds: float = 1.5) -> None:
    """Frames flowing steadily on every side for ``seconds`` (no pause of FREEZE_MS)."""
    def steady() -> bool:
        now = _now_ms()
        for page, var in pages:
            adv = [t for t in page.evaluate(f"window.{var}") if t > now - seconds * 1000]
            if len(adv) < 5 or any(b - a >= FREEZE_MS for a, b in itertools.pairwise(adv)) or now - adv[0] < seconds * 1000 - 300:
                return False
        return True

    wait(steady, 90, "steady media")


def _cut_udp3s(cut: Any, restart: Any = None) -> float:
    """All UDP dropped for CUT_S; returns the restore time (epoch ms)."""
    cut.all_udp()
    time.sleep(CUT_S)  # the scenario's duration
    cut.restore()
    t_end = _now_ms()
    if restart:
        restart()
    return t_end


def _cut_pair(cut: Any, page: Any, which: str, restart: Any = None) -> float:
    addrs = wait(lambda: page.evaluate(SELECTED_JS, which), 10, "a selected pair")
    t0 = _now_ms()
    for a in dict.fromkeys(addrs):
        cut.udp_to(a)
    if restart:
        restart()
    return t0


def _debug_slow(rig: Any, t: float, gap: float) -> None:
    """BENCH_STALL_DEBUG=1: for a recovery over 2 s, the engines' state, the frames and traces around the cut."""
    if not os.environ.get("BENCH_STALL_DEBUG") or gap <= 2000:
        return
    from resumekit import diagnose

    print(diagnose(rig), flush=True)
    for pg in (rig.agent, rig.consumer):
        print("adv", [round(x - t) for x in pg.evaluate("window.__adv") if t - 1500 < x < t + 4000], flush=True)
        at = pg.evaluate(f"performance.now() - (Date.now() - {t})")
        tr = pg.evaluate("window.__lpcallEngines.filter(e => !e._destroyed).at(-1).trace")
        print("cut at page time", at, [x for x in tr if float(x.split()[0]) > at - 500 and "candidate" not in x], flush=True)


def measure(cuts: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright
    from resumekit import Rig
    from stallkit import Cut
    from support import launch_chromium

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    servers: list[Any] = []

    def live_server(app: Any) -> Any:
        from support import start_live_server

        servers.append(start_live_server(app))
        return servers[-1]

    out: dict[str, list[Any]] = {"udp3s": [], "pair": [], "floor_udp3s": [], "floor_pair": [], "fresh_pair": [],
                                 "restarts": [], "switches": [], "stuck": []}
    cut = Cut()
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            rig = Rig(browser, live_server)
            rig.init_scripts.append(TRACKER_JS)
            rig.start("VIDEO_CALL")
            call = [(rig.agent, "__adv"), (rig.consumer, "__adv")]
            fpage = browser.new_context().new_page()
            fpage.goto(rig.server.url + "/support")
            fpage.evaluate(FLOOR_SETUP_JS)
            floor = [(fpage, "__adv"), (fpage, "__advB")]

            def frestart() -> None:
                fpage.evaluate("window.__floorRestart()")

            def ffresh() -> None:
                fpage.evaluate("window.__floorFresh()")

            for i in range(cuts):
                for kind in ("udp3s", "pair"):
                    try:
                        _settle(call)
                    except TimeoutError:  # the call did not come back: a finding, reported with the engines' traces
                        from resumekit import diagnose

                        out["stuck"].append(f"before cut {i + 1} {kind}: {diagnose(rig)}")
                        print(out["stuck"][-1], flush=True)
                        break
                    if kind == "udp3s":
                        t = _cut_udp3s(cut)
                        out[kind].append(_gap(call, t, after_freeze=False))
                        _debug_slow(rig, t, out[kind][-1])
                    else:
                        t = _cut_pair(cut, rig.agent, "call")
                        out[kind].append(_gap(call, t, after_freeze=True))
                        _debug_slow(rig, t, out[kind][-1])
                        cut.restore()
                    _settle(floor)
                    if kind == "udp3s":
                        t = _cut_udp3s(cut, frestart)
                        out[f"floor_{kind}"].append(_gap(floor, t, after_freeze=False))
                    else:
                        t = _cut_pair(cut, fpage, "floor", frestart)
                        out[f"floor_{kind}"].append(_gap(floor, t, after_freeze=True))
                        cut.restore()
                        _settle(floor)
                        t = _cut_pair(cut, fpage, "floor", ffresh)
                        out["fresh_pair"].append(_gap(floor, t, after_freeze=True))
                        cut.restore()
                    extra = f", fresh-connection floor {out['fresh_pair'][-1]:.0f} ms" if kind == "pair" else ""
                    print(f"cut {i + 1} {kind}: call {out[kind][-1]:.0f} ms, floor {out['floor_' + kind][-1]:.0f} ms{extra}", flush=True)
                if out["stuck"]:
                    break
            out["restarts"] = [float(p.evaluate("window.__lpcallEngines.filter(e => !e._destroyed).at(-1).recovery.stallRestarts"))
                               for p in (rig.agent, rig.consumer)]
            out["switches"] = [float(p.evaluate("window.__lpcallEngines.filter(e => !e._destroyed).at(-1).recovery.freshConnections"))
                               for p in (rig.agent, rig.consumer)]
            rig.close()
            browser.close()
    finally:
        cut.restore()
        for s in servers:
            s.stop()
    return out


def render(results: dict[str, list[Any]], cuts: int, load: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    floors = {"udp3s": [("floor_udp3s", "in-page floor: ICE restarted at the restore, direct signaling")],
              "pair": [("floor_pair", "in-page floor: ICE restarted at the cut, direct signaling"),
                       ("fresh_pair", "in-page floor: a fresh connection made at the cut, direct signaling")]}
    for kind, label in (("udp3s", "3 s cut of all UDP, from the restore"), ("pair", "selected pair cut for good, from the cut (another path is there)")):
        v = results[kind]
        p50, p95 = statistics.median(v), percentile(v, 0.95)
        ok = f"p50 ≤ 1000 ms {'✅' if p50 <= 1000 else '❌'}, p95 ≤ 2000 ms {'✅' if p95 <= 2000 else '❌'}"
        rows.append(f"| {label}: flask-lpcall call | {p50:.0f} ms | {p95:.0f} ms | {ok} |")
        for key, flabel in floors[kind]:
            f = results[key]
            rows.append(f"| {flabel} | {statistics.median(f):.0f} ms | {percentile(f, 0.95):.0f} ms | |")
    runs = "; ".join(f"{k}: " + ", ".join(f"{x:.0f}" for x in results[k]) for k in ("udp3s", "floor_udp3s", "pair", "floor_pair", "fresh_pair"))
    table = "\n".join(rows)
    stuck = f" A call did not settle again: {len(results['stuck'])} time(s) (run stopped)." if results["stuck"] else " Every cut recovered."
    busy = " — a loaded machine: other test suites and benchmarks ran at the same time" if load > (os.cpu_count() or 1) else ""
    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}
while measuring{busy}), Chromium headless with fake devices, private network namespace (iptables inside it);
`python benchmarks/bench_stall.py --cuts {cuts}` ({cuts} cuts of each kind and as many floor runs, interleaved, one browser).

**Frozen remote video after a cut of the media path → decoded frames advancing again on both sides**
(VIDEO_CALL, the real engagement window and agent workspace; decoded frames of the connection the call
shows, counted every 10 ms):

| | p50 | p95 | target |
|---|---|---|---|
{table}

The call notices the stall from its inbound media (no decoded frame and no audio packet for 250 ms,
sampled every 100 ms) and at once negotiates a fresh connection beside the stalled one (a spare: its
offer made and its candidates gathered in advance; the stalled path's addresses last in its checks),
switching to it when it connects (make-before-break); media coming back on the old one first is shown
meanwhile. After 700 ms without media it shows "Reconnecting…" and restarts ICE on the old connection
too, with back-off. Over the whole run (agent, visitor): switches to a fresh connection
{", ".join(f"{x:.0f}" for x in results["switches"])}; stall ICE restarts {", ".join(f"{x:.0f}" for x in results["restarts"])} (the floor runs' cuts hit the
call too: one namespace, so these count the floor's cuts as well).
All runs (ms) — {runs}.{stuck}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    results = measure(args.cuts)
    load = (load0 + os.getloadavg()[0]) / 2
    text = render(results, args.cuts, load)
    print(text)
    if not args.no_write:
        from benchmarks import write_section

        write_section(NAME, text, ISSUE)


if __name__ == "__main__":
    main()
