"""The connection-quality indicator (issue 17 part 3) in Chromium, under the network shaper
(tests/netshape.py) inside the test session's private network namespace.

* 15 % random loss of the visitor's incoming media (UDP to the visitor's selected local address and
  port): the visitor's own level turns poor ("Your connection is losing packets") within 5 s, the
  agent sees "Vera's connection is weak", and the agent's own level does not turn poor (its incoming
  media is whole); both return to good after the loss stops.
* 300 kbit/s on both sides' incoming media: the video keeps being decoded on both sides at a lower
  rate, and the indicator says the connection is weak ("…video at lower quality").
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netshape import NetShape, in_private_netns
from resumekit import Rig, diagnose
from stallkit import FRAMES_JS
from support import require, wait_for

#: the local (address, port) of the selected candidate pair of the newest open connection
SELECTED_JS = """async () => {
  const pc = (window.__lpcallPeers || []).filter(p => p.connectionState !== 'closed').at(-1);
  if (!pc) return null;
  const stats = await pc.getStats();
  let out = null;
  stats.forEach(r => {
    if (r.type !== 'transport' || !r.selectedCandidatePairId) return;
    const pair = stats.get(r.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    if (local && local.protocol === 'udp') out = [local.address, local.port];
  });
  return out;
}"""

#: what the call UI's indicator shows
SHOWN_JS = """() => {
  const q = document.querySelector('.lpcall-call .lpcall-quality');
  if (!q) return null;
  const reason = q.querySelector('.lpcall-quality-reason');
  return {own: q.dataset.own || '', peer: q.dataset.peer || '',
          reason: reason && !reason.hidden ? reason.textContent : '',
          live: reason ? reason.getAttribute('aria-live') : null,
          ownText: (q.querySelector('.lpcall-quality-own') || {}).textContent || ''};
}"""

#: decoded video frames per second and frame width on the newest connection
VIDEO_JS = """async () => {
  const pc = (window.__lpcallPeers || []).filter(p => p.connectionState !== 'closed').at(-1);
  let out = null;
  if (pc) (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
    out = {fps: r.framesPerSecond || 0, width: r.frameWidth || 0, decoded: r.framesDecoded || 0}; });
  return out;
}"""


@pytest.fixture(name="shape")
def shape_fixture() -> Iterator[NetShape]:
    require("iptables", shutil.which("iptables") is not None, "apt-get install iptables")
    require("tc", shutil.which("tc") is not None, "apt-get install iproute2")
    if not in_private_netns():
        pytest.skip("only inside the private test namespace (never touch the host's network)")
    with NetShape() as s:
        yield s


def _shown(page: Any) -> dict[str, Any]:
    return page.evaluate(SHOWN_JS) or {}


def _both_good(r: Rig) -> bool:
    return all(_shown(p).get("own") == "good" and _shown(p).get("peer") == "good" for p in (r.agent, r.consumer))


def _started(rig: Callable[..., Rig]) -> Rig:
    r = rig()
    r.start("VIDEO_CALL")
    wait_for(lambda: _both_good(r), timeout=30, message="both indicators good on a clean network")
    return r


@pytest.mark.browser
def test_loss_turns_the_right_side_poor_and_back(rig: Callable[..., Rig], shape: NetShape) -> None:
    r = _started(rig)
    try:
        addr, port = wait_for(lambda: r.consumer.evaluate(SELECTED_JS), timeout=10, message="visitor's selected pair")
        shape.loss(0.15, to=(addr, port))
        agent_own: list[str] = []

        def visitor_poor() -> bool:
            agent_own.append(_shown(r.agent).get("own", ""))
            return _shown(r.consumer).get("own") == "poor"

        wait_for(visitor_poor, timeout=5, message="the visitor's own level poor within 5 s of the loss")
        shown = _shown(r.consumer)
        assert shown["reason"] == "Your connection is losing packets", shown
        assert shown["live"] == "polite"

        def agent_sees_it() -> dict[str, Any] | None:
            s = _shown(r.agent)
            agent_own.append(s.get("own", ""))
            return s if s.get("peer") == "poor" else None

        seen = wait_for(agent_sees_it, timeout=10, message="the agent sees the visitor's level")
        assert "poor" not in agent_own, agent_own  # the agent's own incoming media is whole
        assert seen["reason"] in ("Vera's connection is weak", ""), seen  # unless the agent's own is fair
        assert shape.dropped() > 0

        shape.clear_loss()
        wait_for(lambda: _shown(r.consumer).get("own") == "good" and _shown(r.agent).get("peer") == "good",
                 timeout=20, message="back to good after the loss stopped")
    except BaseException:
        print(diagnose(r))
        raise


@pytest.mark.browser
def test_300_kbits_keeps_video_going_and_says_so(rig: Callable[..., Rig], shape: NetShape) -> None:
    r = _started(rig)
    try:
        before = {p: wait_for(lambda p=p: p.evaluate(VIDEO_JS), timeout=5) for p in (r.agent, r.consumer)}
        for page in (r.consumer, r.agent):
            addr, port = wait_for(lambda p=page: p.evaluate(SELECTED_JS), timeout=10, message="selected pair")
            shape.rate(300, to=(addr, port))

        def weak_on_both() -> bool:
            return all(_shown(p).get("own") in ("fair", "poor") and "video at lower quality" in _shown(p).get("reason", "")
                       for p in (r.agent, r.consumer))

        wait_for(weak_on_both, timeout=30, message="both sides say their connection is weak")
        for page in (r.agent, r.consumer):
            n = int(page.evaluate(FRAMES_JS))
            wait_for(lambda p=page, n=n: int(p.evaluate(FRAMES_JS)) > n + 30, timeout=20,
                     message="video still decoded under 300 kbit/s")
            assert page.evaluate("window.__lpcallEngines.at(-1).status") == "connected"
        after = {p: p.evaluate(VIDEO_JS) for p in (r.agent, r.consumer)}
        print("video before/after the limit:", [(before[p], after[p]) for p in (r.agent, r.consumer)])
    except BaseException:
        print(diagnose(r))
        raise
