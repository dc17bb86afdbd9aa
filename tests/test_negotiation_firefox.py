"""Issue 19 with a Firefox ESR visitor and a Chromium agent (tests/firefoxkit.py, WebDriver BiDi), in
the private network namespace: glare (both sides restarting ICE at the same instant, 20 rounds, on a
fresh connection the visitor made) keeps the call up with media both ways (it wedged at round 0 with
"Failed to set SSL role for the transport" before Firefox's offers claimed the DTLS client role,
engine.js offerForWire), and a 3 s cut of all UDP is noticed by the stall watch on both sides and
recovered (video decoded again on both sides). The glare test fails with
``LPCALL_TEST_NO_PERFECT_NEGOTIATION=1`` (no fresh connection then: the engine makes none without it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from negotiationkit import NO_PN_JS
from resumekit import diagnose
from stallkit import FRAMES_JS, Cut, in_private_netns
from support import require, wait_for
from test_firefox_calls import MixedRig, chromium, firefox  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.firefox]

GLARE_ROUNDS = 20
#: "1": perfect negotiation switched off in both pages (the glare test must fail then)
NO_PN = os.environ.get("LPCALL_TEST_NO_PERFECT_NEGOTIATION") == "1"

#: schedules one renegotiation at the wall-clock instant ``at`` and returns at once (both pages must
#: start it together); ``window.__glareDone`` turns true when it ran
GLARE_SCHEDULE_JS = """([op, at]) => { window.__glareDone = false; setTimeout(async () => {
  try {
    const e = window.__lpcallEngines.filter(x => !x._destroyed).at(-1);
    const pc = e.pc;
    if (op === 'restart') pc.restartIce();
    const extra = window.__extra && pc.getTransceivers().includes(window.__extra) ? window.__extra : null;
    if (op === 'add' && !extra) window.__extra = pc.addTransceiver(e.localStream.getVideoTracks()[0].clone(), {direction: 'sendrecv', streams: [e.localStream]});
    if (op === 'add' && extra) { extra.direction = 'sendrecv'; await extra.sender.replaceTrack(e.localStream.getVideoTracks()[0].clone()); }
    if (op === 'remove' && extra) { extra.direction = 'inactive'; await extra.sender.replaceTrack(null); }
  } finally { window.__glareDone = true; }
}, Math.max(0, at - Date.now())); return true; }"""

SETTLED_JS = """() => { const e = (window.__lpcallEngines || []).filter(x => !x._destroyed).at(-1);
  return Boolean(e && e.pc && e.pc.signalingState === 'stable' && !e._makingOffer && !e._pendingOffer && window.__glareDone !== false); }"""

#: the visitor makes a fresh connection beside the call's (engine.js startStandby, make-before-break)
FRESH_BY_VISITOR_JS = "() => window.__lpcallEngines.filter(x => !x._destroyed).at(-1).startStandby()"
SWITCHES_JS = "() => window.__lpcallEngines.filter(x => !x._destroyed).at(-1).recovery.freshConnections"

FAILED_STEPS_JS = """() => ((window.__lpcallEngines || []).flatMap(e => e.trace || [])).filter(x => /signal failed|answer failed|wrong state/i.test(x))"""


@pytest.fixture
def ff_rig(firefox: Any, chromium: Any, live_server: Any) -> Iterator[Callable[..., MixedRig]]:  # noqa: F811
    rigs: list[MixedRig] = []

    def make(**config: Any) -> MixedRig:
        r = MixedRig(firefox, chromium, live_server, **config)
        if NO_PN:
            orig = r.context_for

            def context_for(who: str) -> Any:
                ctx = orig(who)
                ctx.add_init_script(NO_PN_JS)
                return ctx

            r.context_for = context_for  # type: ignore[method-assign]
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()
    firefox.close()


QUALITY_JS = "() => window.__lpcallQuality ? JSON.stringify(window.__lpcallQuality.state) : null"

#: FRAMES_JS, or -1 when getStats did not answer within 3 s (a busy Firefox)
FRAMES_OR_LATE_JS = f"async () => Promise.race([({FRAMES_JS})(), new Promise(r => setTimeout(() => r(-1), 3000))])"

#: the audio fallback of issue 17 on this page: '' (video), 'audio' or 'offer' (video offered back)
FALLBACK_STATE_JS = """() => { const q = document.querySelector('.lpcall-call .lpcall-quality');
  return q ? (q.dataset.fallback || '') : ''; }"""


def _video_both_ways(r: MixedRig, timeout: float = 30) -> None:
    """5 more video frames decoded on each side (Firefox counts from 0 again after an ICE restart).

    A burst of ICE restarts resets Chromium's outgoing bandwidth estimate; on a loaded machine it can
    stay under the audio fallback's 120 kbit/s for 5 s, and the call pauses video (issue 17, audio keeps
    flowing) until its probe sees the estimate back and offers video again. The person takes the offer
    (the button), as in tests/test_quality_fallback_browser.py; the fallback then adds to the wait."""
    for page in (r.agent, r.consumer):
        base = [int(page.evaluate(FRAMES_JS))]
        late = [0]

        def advanced(p: Any = page, b: list[int] = base, late: list[int] = late) -> bool:
            for q in (r.agent, r.consumer):
                if q.evaluate(FALLBACK_STATE_JS) == "offer":
                    print("video paused by the audio fallback, offered back: taken")
                    q.click(".lpcall-call .lpcall-video-back")
            n = int(p.evaluate(FRAMES_OR_LATE_JS))
            if n < 0:
                late[0] += 1
                return False
            b[0] = min(b[0], n)
            return n > b[0] + 5

        paused = any(q.evaluate(FALLBACK_STATE_JS) for q in (r.agent, r.consumer))
        try:
            wait_for(advanced, timeout=timeout + (40 if paused else 0), message="video decoded")
        except AssertionError as exc:
            if not paused and any(q.evaluate(FALLBACK_STATE_JS) for q in (r.agent, r.consumer)):
                wait_for(advanced, timeout=40, message="video decoded after the audio fallback")  # it began meanwhile
                continue
            quality = [p.evaluate(QUALITY_JS) for p in (r.agent, r.consumer)]
            raise AssertionError(f"{exc} (getStats late {late[0]} times; quality: agent {quality[0]}, "
                                 f"visitor {quality[1]})") from None


def test_firefox_visitor_glare_keeps_the_call_up(ff_rig: Any) -> None:
    r = ff_rig()
    r.start("VIDEO_CALL")
    # first the call moves to a fresh connection made by the visitor (make-before-break, as after a
    # stall the visitor noticed first): Firefox offered it, so Firefox's DTLS role there is the one a
    # Firefox ICE-restart answer used to flip ("Failed to set SSL role for the transport" in Chromium)
    if not NO_PN:
        assert r.consumer.evaluate(FRESH_BY_VISITOR_JS)
        wait_for(lambda: all(int(p.evaluate(SWITCHES_JS)) >= 1 for p in (r.agent, r.consumer)), timeout=20,
                 message="both sides switched to the visitor's fresh connection")
    # both sides restarting ICE at the same instant (a track added/removed at once with Firefox is left
    # out: open, see the issue 19 report)
    for i in range(GLARE_ROUNDS):
        op = "restart"
        at = int(time.time() * 1000) + 300
        for page in (r.agent, r.consumer):
            page.evaluate(GLARE_SCHEDULE_JS, [op, at])
        try:
            for page in (r.agent, r.consumer):
                wait_for(lambda p=page: p.evaluate(SETTLED_JS), timeout=20, message=f"round {i} ({op}) settled")
            if i % 5 == 4:
                _video_both_ways(r)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    for page in (r.agent, r.consumer):
        assert page.evaluate(FAILED_STEPS_JS) == []
        assert r.engine(page)["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError")


def test_firefox_visitor_3s_udp_cut_media_comes_back(ff_rig: Any) -> None:
    require("iptables", shutil.which("iptables") is not None, "apt-get install iptables")
    if not in_private_netns():
        pytest.skip("only inside the private test namespace (never touch the host firewall)")
    r = ff_rig()
    r.start("VIDEO_CALL")
    cut = Cut()
    try:
        cut.all_udp()
        cut_at = time.monotonic()
        wait_for(lambda: all(int(p.evaluate("window.__lpcallEngines.at(-1).recovery.stalls")) > 0 for p in (r.agent, r.consumer)),
                 timeout=10, message="a stall noticed on both sides")
        time.sleep(max(0.0, cut_at + 3.0 - time.monotonic()))  # the scenario: the cut lasts 3 s (not a sync)
        assert cut.dropped() > 0
    finally:
        cut.restore()
    try:
        _video_both_ways(r)
        for page in (r.agent, r.consumer):
            wait_for(lambda p=page: r.engine(p)["status"] == "connected", timeout=15, message="connected again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    assert r.engine(r.consumer)["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError")
