"""Issue 19 with a Firefox ESR visitor and a Chromium agent (tests/firefoxkit.py, WebDriver BiDi), in
the private network namespace: glare (both sides restarting ICE at the same instant, 50 rounds, on a
fresh connection the visitor made) settles every round with no failed signaling step and keeps the call
up with audio both ways (it wedged within the first rounds, "Failed to set SSL role for the transport", before
Firefox's offers claimed the DTLS client role, engine.js offerForWire), and with video both ways
afterwards (in about half the runs Firefox took no more of Chromium's video after the burst while audio
went on, and Chromium's estimate sank towards the audio fallback's line for want of feedback, until the
stall watch noticed a video stall with audio flowing and made a fresh connection, recovery.js); and a 3 s
cut of all UDP is noticed by the stall watch on both sides and recovered (video decoded again on both sides). The glare test fails with
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
from stallkit import Cut, in_private_netns
from support import require, wait_for
from test_firefox_calls import MixedRig, chromium, firefox  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.firefox]

GLARE_ROUNDS = 50
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
QUALITY_FALLBACK_JS = "() => window.__lpcallQuality.state.fallback.mode"

#: on the newest open connection: video frames decoded (kind 'video') or audio packets received
#: ('audio'), -1 when getStats did not answer within 3 s (a busy Firefox)
INBOUND_JS = """async (kind) => Promise.race([(async () => {
  const pc = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed').at(-1);
  let n = 0;
  if (pc) (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === kind) n += (kind === 'video' ? r.framesDecoded : r.packetsReceived) || 0; });
  return n;
})(), new Promise(r => setTimeout(() => r(-1), 3000))])"""


def _media_both_ways(r: MixedRig, kind: str, timeout: float = 30) -> None:
    """More inbound media of ``kind`` on each side (Firefox counts from 0 again after an ICE restart)."""
    more = 5 if kind == "video" else 25
    for page in (r.agent, r.consumer):
        base = [int(page.evaluate(INBOUND_JS, kind))]

        def advanced(p: Any = page, b: list[int] = base) -> bool:
            n = int(p.evaluate(INBOUND_JS, kind))
            if n < 0:
                return False
            b[0] = min(b[0], n) if b[0] >= 0 else n
            return n > b[0] + more

        try:
            wait_for(advanced, timeout=timeout, message=f"{kind} received")
        except AssertionError as exc:
            quality = [p.evaluate(QUALITY_JS) for p in (r.agent, r.consumer)]
            raise AssertionError(f"{exc} on the {'agent' if page is r.agent else 'visitor'}'s side (quality: "
                                 f"agent {quality[0]}, visitor {quality[1]})") from None


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
                _media_both_ways(r, "audio")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    for page in (r.agent, r.consumer):
        assert page.evaluate(FAILED_STEPS_JS) == []
        assert r.engine(page)["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError")
    # video both ways after the burst, and no audio fallback (the estimate's dips around the restarts
    # and a Firefox that took no more video are no network limit)
    try:
        _media_both_ways(r, "video")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    for page in (r.agent, r.consumer):
        assert page.evaluate(QUALITY_FALLBACK_JS) == "video"


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
        _media_both_ways(r, "video")
        for page in (r.agent, r.consumer):
            wait_for(lambda p=page: r.engine(p)["status"] == "connected", timeout=15, message="connected again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    assert r.engine(r.consumer)["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError")
