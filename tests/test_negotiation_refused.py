"""A description the server refuses (issue 19): the side that sent it must not wait forever.

The server answers an invalid ``description`` frame with ``error {code, field, message, gen}``
(PROTOCOL §5: ``gen`` names the refused negotiation). The sender negotiates again on a fresh
connection; a third refusal in a call ends it with UNABLE_TO_CONNECT (a clear error, not a call that
never connects). In Chromium, inside the private network namespace: a page's outgoing description is
made invalid (an empty ``sdp``) on its way out, as a frame the server must refuse.
"""

from __future__ import annotations

from typing import Any

import pytest
from resumekit import Rig, call_keys, diagnose
from support import wait_for

#: page init script: the first ``n`` outgoing descriptions of type ``kind`` leave with an empty sdp
SPOIL_JS = """([kind, n]) => {
  window.__spoiled = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    try {
      const f = JSON.parse(data);
      if (f.type === 'description' && f.description && f.description.type === kind && window.__spoiled < n) {
        window.__spoiled += 1;
        f.description.sdp = '';
        return send.call(this, JSON.stringify(f));
      }
    } catch (e) { /* not JSON */ }
    return send.call(this, data);
  };
}"""


#: page init script: `session` frames of the call socket reach the engine 500 ms late, as when the
#: server's bus is slower than its direct answers: a refused description's `error` (sent straight
#: back) then overtakes the `session` ACCEPTED of the Accept before it (published on the bus)
LATE_SESSION_JS = """(() => {
  const d = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
  Object.defineProperty(WebSocket.prototype, 'onmessage', {configurable: true, get() { return d.get.call(this); },
    set(fn) {
      const ws = this;
      d.set.call(this, fn && function (ev) {
        let f = null;
        try { f = JSON.parse(ev.data); } catch (e) { /* not JSON */ }
        if (f && f.type === 'session' && String(ws.url).includes('/ws/call')) setTimeout(() => fn.call(ws, ev), 500);
        else fn.call(ws, ev);
      });
    }});
})();"""


def _rig(rig: Any, page_role: str, kind: str, n: int) -> Rig:
    r = rig()
    orig = r.context
    made = {"n": 0}

    def context() -> Any:  # contexts are made agent first, then visitor
        ctx = orig()
        role = "agent" if made["n"] == 0 else "consumer"
        made["n"] += 1
        if role == page_role:
            ctx.add_init_script(f"({SPOIL_JS})({[kind, n]!r})".replace("'", '"'))
            if role == "consumer":
                ctx.add_init_script(LATE_SESSION_JS)
        return ctx

    r.context = context  # type: ignore[method-assign]
    return r


def _trace(r: Rig, page: Any) -> list[str]:
    return page.evaluate("window.__lpcallEngines.filter(e => !e._destroyed).at(-1)?.trace || []")  # type: ignore[no-any-return]


@pytest.mark.parametrize(("page_role", "kind"), [
    ("agent", "offer"),
    ("consumer", "answer"),  # with the `session` ACCEPTED frame late: the refusal must not fail the Accept
])
def test_a_refused_description_is_negotiated_again_and_the_call_connects(rig: Any, page_role: str, kind: str) -> None:
    r = _rig(rig, page_role, kind, 1)
    try:
        r.start("VIDEO_CALL")  # video decoded on both sides
    except AssertionError:
        raise AssertionError(diagnose(r)) from None
    sender = r.agent if page_role == "agent" else r.consumer
    assert sender.evaluate("window.__spoiled") == 1
    refused = [x for x in _trace(r, sender) if "description refused" in x]
    assert len(refused) == 1 and "description.sdp" in refused[0], _trace(r, sender)
    assert r.engine(r.consumer)["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError"), [_all_traces(p) for p in (r.agent, r.consumer)]


def _all_traces(page: Any) -> list[list[str]]:
    return page.evaluate("(window.__lpcallEngines || []).map(e => e.trace.filter(x => !x.includes('candidate')))")  # type: ignore[no-any-return]


def test_descriptions_refused_again_and_again_end_the_call_with_a_clear_error(rig: Any) -> None:
    # every offer of the agent refused: the listening visitor never gets one; the third refusal ends
    # the call (before or after the Accept) with UNABLE_TO_CONNECT on both sides
    r = _rig(rig, "agent", "offer", 100)
    r.open_agent()
    r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    closed = wait_for(lambda: r.agent.evaluate("(window.__lpcallEngines || []).at(-1)?.closedInfo"), timeout=30,
                      message="the call ends")
    assert closed["errorId"] == "UNABLE_TO_CONNECT", closed
    assert r.agent.evaluate("window.__spoiled") >= 3
    refused = r.agent.evaluate("window.__lpcallEngines.at(-1).trace.filter(x => x.includes('description refused'))")  # the ended engine
    assert len(refused) >= 3, refused  # the third ended it (one more may come before the `closed` frame)
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="the call closed in the store")
