"""Back-to-back calls (issue 19): the stress run shared by the test and the benchmark.

One example site, one agent workspace and one visitor page (Chromium, the private namespace), and
``n`` video calls in a row in the same conversation. Each call mixes, from a seeded random
generator: the Accept at once or after the agent's offer is kept by the listening visitor
(PROTOCOL §5), an agent or visitor reload at a random moment around the Accept, and the hang-up from
either side; once connected, one call in four each gets a replayed answer (the visitor's last
`description` sent again on its socket), a replayed offer (the agent's), or both sides offering at
the same instant (an ICE restart each): the races the issue saw behind "Failed to set remote answer
sdp: Called in wrong state: stable". A call "never connects" when remote video is not decoded on both sides in time.
Every console error and warning of both pages is kept; "wrong state" ones are negotiation wedges.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from resumekit import Rig, call_keys, diagnose
from support import wait_for

#: test-only switch (engine.js): perfect negotiation off, to show what it prevents
NO_PN_JS = "window.__lpcallNoPerfectNegotiation = true;"

WEDGE = re.compile(r"wrong state|signaling step failed|offer failed|Failed to set (remote|local)", re.IGNORECASE)

OFFER_KEPT_JS = """() => (window.__lpcallEngines || []).some(e => !e._destroyed && (e.trace || []).some(t => t.includes('offer kept until the Accept')))"""

STALE_JS = "() => (window.__lpcallEngines || []).reduce((n, e) => n + (e.staleFrames || 0), 0)"

#: every page: the last `description` frame each call socket sent, and ``__lpcallReplay(kind)`` to send
#: it again on the same socket, as a network or a reconnecting socket that replays a frame would
REPLAY_INIT_JS = """
(() => { const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try { const f = JSON.parse(data);
      if (f && f.type === 'description' && String(this.url).includes('/ws/call')) { this.__lastDescription = data; window.__lpcallLastSocket = this; }
    } catch (e) { /* not JSON */ }
    return send.call(this, data);
  };
  window.__lpcallReplay = () => { const ws = window.__lpcallLastSocket;
    if (!ws || ws.readyState !== 1 || !ws.__lastDescription) return false;
    send.call(ws, ws.__lastDescription); return true; };
})();
"""

#: in a page: an ICE restart (a new offer) on the call's connection, at the wall-clock instant ``at``
RESTART_AT_JS = """(at) => { setTimeout(() => {
  const e = (window.__lpcallEngines || []).filter(x => !x._destroyed).at(-1);
  if (e && e.pc && e.pc.connectionState !== 'closed') e.pc.restartIce();
}, Math.max(0, at - Date.now())); return true; }"""


@dataclass
class StressResult:
    calls: int = 0
    never_connected: list[str] = field(default_factory=list)  # one line per failed call
    console: list[str] = field(default_factory=list)          # every error / warning of both pages
    stale_dropped: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def wedges(self) -> list[str]:
        return [m for m in self.console if WEDGE.search(m)]


class StressRig(Rig):
    """The resume tests' rig, recording the console of every page, optionally without perfect negotiation."""

    def __init__(self, browser: Any, live_server: Any, *, no_pn: bool = False, **config: Any) -> None:
        super().__init__(browser, live_server, **config)
        self.no_pn = no_pn
        self.console: list[str] = []

    def context(self) -> Any:
        ctx = super().context()
        ctx.add_init_script(REPLAY_INIT_JS)
        if self.no_pn:
            ctx.add_init_script(NO_PN_JS)
        ctx.on("console", self._on_console)
        return ctx

    def _on_console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.console.append(f"{msg.type}: {msg.text}")


def _media_both_ways(r: Rig, agent_from: int, consumer_from: int, timeout: float) -> None:
    r.wait_frames(r.agent, min_index=agent_from, timeout=timeout)
    r.wait_frames(r.consumer, min_index=consumer_from, timeout=timeout)


def _hangup(r: Rig, side: str) -> None:
    page = r.agent if side == "agent" else r.consumer
    sel = ".lpcall-agent-call .lpcall-call .lpcall-hangup" if side == "agent" else ".lpcall-call .lpcall-hangup"
    try:
        page.click(sel, timeout=5000)
    except Exception:  # noqa: BLE001 - the other side's button then
        other = r.consumer if side == "agent" else r.agent
        other.click(".lpcall-call .lpcall-hangup", timeout=5000)
    wait_for(lambda: call_keys(r.app) == [], timeout=20, message="the call closed in the store")


def _cleanup(r: Rig) -> None:
    """After a failed call: end it from the server side so the next one can start."""
    from flask_lpcall.state import get_state

    calls = get_state(r.app).calls
    for key in call_keys(r.app):
        if key.startswith("call:"):
            sid = key.split(":", 1)[1]
            try:
                session = calls.get(sid)
                if session is not None:
                    calls.hangup("agent", session.uid_of("agent"), sid)
            except Exception as exc:  # noqa: BLE001 - best effort, reported by the wait below
                print(f"cleanup: {exc}")
    try:
        wait_for(lambda: call_keys(r.app) == [], timeout=20, message="cleanup")
    except AssertionError:
        r.agent.reload()
        r.consumer.reload()


def one_call(r: Rig, rng: random.Random, result: StressResult, connect_timeout: float) -> None:
    agent_from = r.peer_count(r.agent)
    consumer_from = r.peer_count(r.consumer)
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]:not([disabled])")
    r.consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")
    accept = rng.choice(["at_once", "after_offer"])
    if accept == "after_offer":
        wait_for(lambda: r.consumer.evaluate(OFFER_KEPT_JS), timeout=15, message="the offer kept before the Accept")
    r.consumer.click(".lpcall-invitation .lpcall-accept")
    event = rng.choice(["none", "none", "reload_agent", "reload_consumer"])
    if event != "none":
        time.sleep(rng.uniform(0.0, 1.5))  # the scenario: a reload at a random moment (not a synchronisation)
        page = r.agent if event == "reload_agent" else r.consumer
        page.reload()
        if event == "reload_agent":
            agent_from = 0
            r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
        else:
            consumer_from = 0
    side = rng.choice(["agent", "consumer"])
    # once connected: a replayed answer (visitor) or offer (agent), or both sides offering at once
    after = rng.choice(["none", "replay_answer", "replay_offer", "both_offer"])
    kind = f"{accept}+{event}+hangup_{side}" + ("" if after == "none" else f"+{after}")
    result.kinds[kind] = result.kinds.get(kind, 0) + 1
    try:
        _media_both_ways(r, agent_from, consumer_from, connect_timeout)
    except AssertionError as exc:
        result.never_connected.append(f"call {result.calls} ({kind}): {exc}\n{diagnose(r)}")
        _cleanup(r)
        return
    if after != "none":
        try:
            before = [r.newest(p) for p in (r.agent, r.consumer)]
            _disturb(r, after)
            for page, b in zip((r.agent, r.consumer), before):  # video goes on on both sides
                wait_for(lambda p=page, b=b: _advanced(r.newest(p), b), timeout=connect_timeout, message=f"video after {after}")
        except AssertionError as exc:
            result.never_connected.append(f"call {result.calls} ({kind}): {exc}\n{diagnose(r)}")
            _cleanup(r)
            return
    result.stale_dropped += int(r.agent.evaluate(STALE_JS)) + int(r.consumer.evaluate(STALE_JS))
    _hangup(r, side)
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")


def _advanced(now: dict[str, Any], before: dict[str, Any]) -> bool:
    """15 more video frames decoded on the same connection, or 15 on a newer one."""
    if now["index"] == before["index"]:
        return bool(now["framesDecoded"] > before["framesDecoded"] + 15)
    return bool(now["framesDecoded"] > 15)


def _disturb(r: Rig, what: str) -> None:
    """Once the call is up: a replayed answer (visitor) or offer (agent) arrives again, or both sides
    start an offer at the same instant (an ICE restart each): the races behind a wedged negotiation."""
    if what == "both_offer":
        at = time.time() * 1000 + 150
        for page in (r.agent, r.consumer):
            page.evaluate(f"({RESTART_AT_JS})({at})")  # returns at once; both fire at ``at``
        return
    page = r.consumer if what == "replay_answer" else r.agent
    assert page.evaluate("window.__lpcallReplay()"), f"nothing to replay ({what})"


def stress(r: StressRig, n: int, seed: int = 19, connect_timeout: float = 30) -> StressResult:
    """``n`` calls in a row; returns what happened (the caller asserts)."""
    rng = random.Random(seed)
    result = StressResult()
    t0 = time.monotonic()
    r.open_agent()
    r.open_consumer()
    for _ in range(n):
        one_call(r, rng, result, connect_timeout)
        result.calls += 1
    result.console = list(r.console)
    result.seconds = time.monotonic() - t0
    return result
