"""Calls that survive (issue 5) in Chromium: reloads, navigation, agent reload, agent gone, tabs, bad input.

The example site with its engagement window (which answers `cobrowse`/`sessionResume` with the
container and `lpCoBrowse`/`sliderOpened`, like a brand's page would), the agent workspace,
real media. Remote media is checked on the NEWEST peer connection of each page: a resumed call
must decode frames on the connection created after the reload, not on a stale one.
"""

from __future__ import annotations

from typing import Any

from resumekit import Rig, call_keys
from support import wait_for

from flask_lpcall import signals
from flask_lpcall.state import get_state

STATUS_RECORDER = """() => {
  window.__statusTexts = [];
  const seen = (t) => { if (t && window.__statusTexts.at(-1) !== t) window.__statusTexts.push(t); };
  new MutationObserver(() => {
    for (const n of document.querySelectorAll('.lpcall-call-status')) seen(n.textContent);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""




def _resumed(r: Rig, sid: str, agent_peers_before: int, agent_frames_before: int) -> None:
    """After a reload/navigation of the visitor: one sessionResume, UI back, media decoded anew on both sides."""
    page = r.consumer
    wait_for(lambda: r.events(page, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
    resume = r.events(page, "cobrowse", "sessionResume")
    assert len(resume) == 1 and resume[0]["data"]["serviceId"] == sid
    slider = r.events(page, "lpCoBrowse", "sliderOpened")
    assert len(slider) == 1  # the engagement window answered the event (recorded first: nested publish)
    page.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call.lpcall-video")
    r.wait_frames(page)  # this page's own (new) peer connection
    r.wait_frames(r.agent, min_index=agent_peers_before)  # the agent's connection made for the new page
    # and the agent's decoded frames keep increasing there
    now = r.newest(r.agent)["framesDecoded"]
    r.wait_frames(r.agent, min_index=agent_peers_before, above=now + 3)
    assert r.engine(page)["serviceId"] == sid
    assert r.stored_call(page)["serviceId"] == sid
    del agent_frames_before


def test_ten_reloads_resume_the_same_call_with_media_and_the_visitors_mute_state(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    r.agent.evaluate(STATUS_RECORDER)
    for i in range(10):
        if i == 4:  # muted before this reload: muted after it
            r.consumer.click(".lpcall-call .lpcall-mute")
            r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])")
        before = r.peer_count(r.agent)
        r.consumer.reload()
        _resumed(r, sid, before, 0)
        if i == 4:
            assert r.engine(r.consumer)["muted"] is True
            assert r.consumer.get_attribute(".lpcall-call .lpcall-mute", "aria-pressed") == "true"
            assert r.consumer.evaluate("window.__lpcallCallApp.current.engine.localStream.getAudioTracks().every(t => !t.enabled)")
            r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])", state="attached")
            r.consumer.click(".lpcall-call .lpcall-mute")
            r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted[hidden]", state="attached")
    wait_for(lambda: _timer_seconds(r.consumer) >= 3, timeout=5, message="the visitor's call timer goes on across reloads")
    # the agent was told, in words, and kept the call without doing anything
    texts = get_state(r.app).texts
    assert texts["call.peer_reconnecting"].format(name="Vera") in r.agent.evaluate("window.__statusTexts")
    assert r.agent.locator(".lpcall-agent-call .lpcall-call").count() == 1
    assert r.engine(r.agent)["serviceId"] == sid and r.engine(r.agent)["closed"] is None
    assert get_state(r.app).calls.get(sid).state == "ACCEPTED"
    # camera off survives a reload too
    r.consumer.click(".lpcall-call .lpcall-camera")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])")
    r.consumer.reload()
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
    r.consumer.wait_for_selector(".lpcall-call .lpcall-camera[aria-pressed=true]")
    assert r.consumer.evaluate("window.__lpcallCallApp.current.engine.localStream.getVideoTracks().every(t => !t.enabled)")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])", state="attached")
    r.wait_frames(r.consumer)  # the agent's video still arrives
    r.consumer.click(".lpcall-call .lpcall-hangup")
    wait_for(lambda: call_keys(r.app) == [], timeout=10, message="empty store after hang-up")


def test_navigation_to_another_page_resumes_the_call(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    before = r.peer_count(r.agent)
    r.consumer.click("nav a[href='/support']")
    r.consumer.wait_for_url("**/support")
    _resumed(r, sid, before, 0)
    before = r.peer_count(r.agent)
    r.consumer.click("nav a[href='/products/aurora-espresso']")
    r.consumer.wait_for_url("**/products/aurora-espresso")
    _resumed(r, sid, before, 0)
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.consumer.wait_for_selector(".lpcall-call[data-status=closed]")
    wait_for(lambda: call_keys(r.app) == [], timeout=10, message="empty store")
    assert r.stored_call(r.consumer) is None


def _timer_seconds(page: Any) -> int:
    text = page.evaluate("(document.querySelector('.lpcall-call .lpcall-timer') || {}).textContent || '0:00'")
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def test_agent_reload_gets_the_call_back(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    r.agent.click(".lpcall-call .lpcall-mute")
    r.consumer.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])")
    r.consumer.evaluate(STATUS_RECORDER)
    consumer_before = r.peer_count(r.consumer)
    wait_for(lambda: _timer_seconds(r.agent) >= 3, timeout=10, message="three seconds of call")
    r.agent.reload()
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call.lpcall-video")
    wait_for(lambda: _timer_seconds(r.agent) >= 3, timeout=10, message="the timer goes on after the reload")
    r.wait_frames(r.agent)
    r.wait_frames(r.consumer, min_index=consumer_before)
    now = r.newest(r.consumer)["framesDecoded"]
    r.wait_frames(r.consumer, min_index=consumer_before, above=now + 3)
    assert r.engine(r.agent)["serviceId"] == sid
    assert r.engine(r.agent)["muted"] is True  # the agent's own mute state came back with the call
    assert r.agent.get_attribute(".lpcall-call .lpcall-mute", "aria-pressed") == "true"
    texts = get_state(r.app).texts
    assert texts["call.peer_reconnecting"].format(name="Bob") in r.consumer.evaluate("window.__statusTexts")
    assert not r.events(r.consumer, "cobrowse", "sessionError")
    r.agent.click(".lpcall-call .lpcall-hangup")
    wait_for(lambda: call_keys(r.app) == [], timeout=10, message="empty store")


def test_agent_gone_for_good_gives_agent_disconnected_after_the_grace_period(rig: Any) -> None:
    r = rig(LPCALL_RECONNECT_GRACE=2, LPCALL_HEARTBEAT_INTERVAL=0.5)
    ended: list[dict[str, Any]] = []

    def on_end(sender: Any, call: dict[str, Any]) -> None:
        ended.append(call)

    signals.call_ended.connect(on_end, r.app)
    sid = r.start("VIDEO_CALL")
    r.consumer.evaluate(STATUS_RECORDER)
    t_close = r.consumer.evaluate("performance.now()")
    r.agent.context.close()  # the agent's browser window is gone, no hang-up
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionError"), timeout=15, message="sessionError")
    err = r.events(r.consumer, "cobrowse", "sessionError")
    texts = get_state(r.app).texts
    assert [e["data"] for e in err] == [{"id": "AGENT_DISCONNECTED", "msg": texts["error.AGENT_DISCONNECTED"]}]
    assert err[0]["t"] - t_close >= 2000  # not before the grace period
    assert texts["call.peer_reconnecting"].format(name="Bob") in r.consumer.evaluate("window.__statusTexts")
    r.consumer.wait_for_selector(".lpcall-call[data-status=closed]")
    assert texts["error.AGENT_DISCONNECTED"] in r.consumer.inner_text(".lp_cobrowse_callscreen_container")
    assert r.stored_call(r.consumer) is None
    wait_for(lambda: call_keys(r.app) == [], timeout=5, message="no call:/presence: keys")
    assert [(c["serviceId"], c["sessionState"], c["closeReason"], c["errorId"]) for c in ended] == [
        (sid, "CLOSED", "agent_disconnected", "AGENT_DISCONNECTED")
    ]
    ended_event = r.events(r.consumer, "lpCall", "callEnded")
    assert ended_event and ended_event[-1]["data"]["reason"] == "agent_disconnected"


def test_call_ended_while_the_visitor_was_away_no_event_storage_cleared(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    r.consumer.goto("about:blank")  # left the site
    r.agent.click(".lpcall-call .lpcall-hangup")
    wait_for(lambda: call_keys(r.app) == [], timeout=10, message="closed on the server")
    r.consumer.goto(r.server.url + "/support")
    wait_for(lambda: r.stored_call(r.consumer) is None, timeout=10, message="stale call forgotten")
    assert r.events(r.consumer, "cobrowse") == []
    assert r.consumer.locator(".lpcall-call").count() == 0
    # sliderOpened without a call is ignored and the page keeps working: the visitor can chat
    assert r.consumer.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')")
    r.consumer.wait_for_selector(".lpcall-launcher", state="attached")
    if not r.consumer.locator(".lpcall-composer").is_visible():  # the window remembers whether it was open
        r.consumer.click(".lpcall-launcher")
    r.consumer.wait_for_selector(".lpcall-composer:not([hidden])")
    r.consumer.fill("#lpcall-message", "still here")
    r.consumer.press("#lpcall-message", "Enter")
    r.agent.wait_for_selector(".lpcall-transcript :text('still here')")
    assert r.events(r.consumer, "cobrowse") == [] and r.consumer.locator(".lpcall-call").count() == 0
    del sid


def test_bad_stored_calls_are_refused_quietly(rig: Any) -> None:
    """A foreign serviceId, garbage and a stale consumer token in storage: no event, storage cleared, page works."""
    r = rig()
    sid = r.start("VIDEO_CALL")
    other = r.context().new_page()
    for stored in (
        {"serviceId": sid, "mode": "VIDEO_CALL"},  # someone else's call (another visitor's storage)
        {"serviceId": "nobody#0000", "mode": "VIDEO_CALL"},
        {"serviceId": 12, "mode": None},
    ):
        other.goto(r.server.url + "/")
        other.evaluate("(v) => sessionStorage.setItem('lpcall.call', JSON.stringify(v))", stored)
        other.reload()
        wait_for(lambda: other.evaluate("sessionStorage.getItem('lpcall.call')") is None, timeout=10, message="refused")
        other.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')")
        assert r.events(other, "cobrowse") == []
        assert other.locator(".lpcall-call").count() == 0
    # a stale (forged) consumer token with a real-looking call: refused the same way
    other.evaluate("(sid) => { localStorage.setItem('lpcall.consumer', JSON.stringify({consumerId: 'x', token: 'stale.token'}));"
                   " sessionStorage.setItem('lpcall.call', JSON.stringify({serviceId: sid, mode: 'VIDEO_CALL'})); }", sid)
    other.reload()
    wait_for(lambda: other.evaluate("sessionStorage.getItem('lpcall.call')") is None, timeout=10, message="refused")
    assert r.events(other, "cobrowse") == []
    # the real call did not notice any of it
    assert not r.events(r.consumer, "cobrowse", "sessionError")
    now = r.newest(r.agent)["framesDecoded"]
    r.wait_frames(r.agent, above=now + 3)
    assert r.engine(r.agent)["peerPresent"] is True


def test_lost_and_silent_signaling_sockets_are_replaced_and_the_call_goes_on(rig: Any) -> None:
    """A socket that closes, and one that stops delivering (no pong for 2.5 heartbeats), are reopened
    with a fresh token; the other side waits, a fresh negotiation brings media back, the call is the same."""
    r = rig(LPCALL_HEARTBEAT_INTERVAL=0.5, LPCALL_CALL_TOKEN_TTL=5)
    sid = r.start("VIDEO_CALL")
    calls = get_state(r.app).calls
    for how in ("close", "silence"):
        before = r.peer_count(r.agent)
        if how == "close":  # long after the first call token expired: the fresh one from /api/call/resume joins
            wait_for(lambda: r.consumer.evaluate("performance.now()") > 11000, timeout=15, message="token expiry")
            r.consumer.evaluate("window.__lpcallCallApp.current.engine.ws.close()")
        else:  # the socket stays open but nothing arrives any more: a dead connection
            r.consumer.evaluate("window.__lpcallCallApp.current.engine.ws.onmessage = null")
        r.wait_frames(r.agent, min_index=before, timeout=30)
        r.wait_frames(r.consumer)
        now = r.newest(r.agent)["framesDecoded"]
        r.wait_frames(r.agent, min_index=before, above=now + 3)
        assert r.engine(r.consumer)["serviceId"] == sid and r.engine(r.consumer)["status"] == "connected"
        assert calls.get(sid).state == "ACCEPTED"
    assert not r.events(r.consumer, "cobrowse")  # no sessionResume, no sessionError: the same page throughout
    r.agent.click(".lpcall-call .lpcall-hangup")
    wait_for(lambda: call_keys(r.app) == [], timeout=10, message="empty store")


def test_visitor_gone_for_good_ends_the_call_for_the_agent_after_the_grace_period(rig: Any) -> None:
    r = rig(LPCALL_RECONNECT_GRACE=2, LPCALL_HEARTBEAT_INTERVAL=0.5)
    sid = r.start("VIDEO_CALL")
    r.agent.evaluate(STATUS_RECORDER)
    r.consumer.context.close()  # the visitor closed the browser window
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]", timeout=15_000)
    texts = get_state(r.app).texts
    assert texts["call.peer_reconnecting"].format(name="Vera") in r.agent.evaluate("window.__statusTexts")
    wait_for(lambda: call_keys(r.app) == [], timeout=5, message="no call:/presence: keys")
    assert get_state(r.app).calls.get(sid) is None
    assert "system.ended" in [e.get("systemKey") for e in _transcript(r)]


def _transcript(r: Rig) -> list[dict[str, Any]]:
    state = get_state(r.app)
    convs = state.conversations
    out: list[dict[str, Any]] = []
    for key in state.store.keys("conv:"):
        if key.count(":") == 1:
            out += convs.events(key.split(":")[1])
    return out


def test_visitor_reloads_while_the_agent_is_away_then_agent_disconnected(rig: Any) -> None:
    """The agent's tab is gone; the visitor reloads within the grace period: the call resumes on the
    page, says the agent is reconnecting, and ends with AGENT_DISCONNECTED when the grace runs out."""
    r = rig(LPCALL_RECONNECT_GRACE=4, LPCALL_HEARTBEAT_INTERVAL=0.5)
    sid = r.start("VIDEO_CALL")
    r.agent.context.close()
    r.consumer.wait_for_selector(".lpcall-call .lpcall-call-status:text('Bob is reconnecting…')")
    r.consumer.reload()
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
    r.consumer.wait_for_selector(".lp_cobrowse_callscreen_container .lpcall-call-status:text('Bob is reconnecting…')")
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionError"), timeout=15, message="sessionError")
    assert [e["data"]["id"] for e in r.events(r.consumer, "cobrowse", "sessionError")] == ["AGENT_DISCONNECTED"]
    wait_for(lambda: call_keys(r.app) == [], timeout=5, message="empty store")
    assert r.stored_call(r.consumer) is None
    del sid
