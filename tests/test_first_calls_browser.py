"""What a person meets in the first calls (issue 13 point 6), in Chromium on the development server.

The example site on Werkzeug's server (tests/support.start_live_server), an agent workspace and a
visitor page, real media: the ended call gives the chat its room back, the agent keeps the
transcript and reply box during a call, a pending invitation stays with its conversation and
closes early when the visitor's page is gone, the invitation is reachable by keyboard, and a
whole call logs no console error.
"""

from __future__ import annotations

import time
from typing import Any

import test_call_browser
from callkit import call_keys
from support import wait_for
from test_call_browser import Rig, cobrowse_dialog

from flask_lpcall.state import get_state

# the call tests' fixtures: one Chromium for the module (real permissions, two fake cameras), Rig factory
chromium = test_call_browser.chromium
rig = test_call_browser.rig

ACTIVE_JS = """() => { const a = document.activeElement; return a ? (a.className || a.tagName) + '|' + (a.id || '') : ''; }"""


def watch_console(page: Any) -> list[str]:
    """Every console error and uncaught page error of ``page``, as text."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"{msg.type}: {msg.text} @ {msg.location}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    return seen


def open_agent(r: Rig, width: int = 1000, height: int = 800) -> Any:
    page = r.agent = r.page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{r.server.url}/lpcall/agent/login")
    page.fill("#lpcall-username", "bob")
    page.fill("#lpcall-password", "bob")
    page.click(".lpcall-login-form [type=submit]")
    page.wait_for_selector("#lpcall-agent")
    return page


def open_visitor(r: Rig, name: str = "Vera") -> Any:
    page = r.page()
    page.goto(f"{r.server.url}/")
    page.click(".lpcall-launcher")
    page.fill("#lpcall-visitor-name", name)
    page.click(".lpcall-start [type=submit]")
    page.wait_for_selector(".lpcall-composer:not([hidden])")
    return page


def open_conversation(agent: Any, name: str) -> None:
    agent.click(f".lpcall-mine .lpcall-conv-open:has-text('{name}')")
    agent.wait_for_selector(f".lpcall-chat-title:text-is('{name}')")


def in_viewport(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= size["height"] and box["x"] + box["width"] <= size["width"]


def height(page: Any, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    return box["height"] if box else 0.0


def test_the_ended_call_closes_by_itself_and_the_chat_gets_its_room_back(rig: Any) -> None:
    r: Rig = rig(LPCALL_CALL_ENDED_SECONDS=2)
    open_agent(r)
    visitor = r.consumer = open_visitor(r)
    room = height(visitor, ".lpcall-window .lpcall-transcript")
    agent_room = height(r.agent, ".lpcall-chat-main .lpcall-transcript")
    r.invite("VIDEO_CALL")
    visitor.click(".lpcall-invitation .lpcall-accept")
    r.wait_media(video=True)
    assert height(visitor, ".lpcall-window .lpcall-transcript") < room * 0.7  # the call takes the room meanwhile
    visitor.click(".lpcall-call .lpcall-hangup")
    for page in (visitor, r.agent):  # "Call ended" with a labelled close button instead of the controls
        page.wait_for_selector(".lpcall-call[data-status=closed] .lpcall-close")
        assert page.get_attribute(".lpcall-call .lpcall-close", "aria-label") == "Close the call panel"
        assert page.locator(".lpcall-call .lpcall-hangup").is_hidden()
    r.wait_closed_everywhere("system.ended")
    # then it goes by itself, and the transcripts have their height back
    visitor.wait_for_selector(".lp_cobrowse_callscreen_container", state="detached", timeout=10_000)
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call", state="detached", timeout=10_000)
    assert r.agent.locator(".lpcall-agent-call").is_hidden()
    wait_for(lambda: height(visitor, ".lpcall-window .lpcall-transcript") >= room - 2, timeout=5, message="the visitor's transcript has its room back")
    wait_for(lambda: height(r.agent, ".lpcall-chat-main .lpcall-transcript") >= agent_room - 2, timeout=5, message="the agent's transcript has its room back")


def test_the_agent_keeps_transcript_and_reply_box_in_view_during_a_video_call(rig: Any) -> None:
    r: Rig = rig()
    agent = open_agent(r, 1280, 800)
    visitor = r.consumer = open_visitor(r)
    for i in range(6):  # a conversation that already has a history
        visitor.fill("#lpcall-message", f"question {i}")
        visitor.press("#lpcall-message", "Enter")
    open_conversation(agent, "Vera")
    agent.wait_for_selector(".lpcall-transcript li:has-text('question 5')")
    agent.fill("#lpcall-agent-input", "Hi Vera, let me call you")
    agent.press("#lpcall-agent-input", "Enter")
    greeting = visitor.locator(".lpcall-transcript li:has-text('let me call you')")
    greeting.wait_for()
    assert greeting.locator(".lpcall-msg-who").inner_text() == "Bob"  # the visitor sees who writes
    r.invite("VIDEO_CALL")
    visitor.click(".lpcall-invitation .lpcall-accept")
    r.wait_media(video=True)
    wait_for(lambda: agent.evaluate("(document.querySelector('.lpcall-agent-call video.lpcall-remote') || {}).videoWidth || 0") > 0,
             timeout=10, message="the visitor's video on the agent's screen")
    for selector in ("#lpcall-agent-input", ".lpcall-composer [type=submit]", ".lpcall-agent-call video.lpcall-remote",
                     ".lpcall-agent-call .lpcall-hangup", ".lpcall-chat-main .lpcall-transcript li >> nth=-1"):
        assert in_viewport(agent, selector), (selector, agent.locator(selector).bounding_box())
    assert agent.evaluate("document.scrollingElement.scrollHeight <= innerHeight + 1"), "the page itself does not scroll"
    # a link sent while talking reaches the visitor, and shows as the last message on both sides
    agent.fill("#lpcall-agent-input", "Here is the manual: https://example.com/manual")
    agent.press("#lpcall-agent-input", "Enter")
    visitor.wait_for_selector(".lpcall-transcript li:has-text('https://example.com/manual')")
    agent.wait_for_selector(".lpcall-chat-main .lpcall-transcript li:last-child:has-text('example.com/manual')")
    assert in_viewport(agent, ".lpcall-chat-main .lpcall-transcript li >> nth=-1")
    assert r.stats(agent)["framesDecoded"] > 0 and agent.evaluate("window.__lpcallEngines.at(-1).status") == "connected"
    agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def test_a_pending_invitation_stays_with_its_conversation_and_can_be_cancelled_from_another(rig: Any) -> None:
    r: Rig = rig()
    agent = open_agent(r)
    r.consumer = open_visitor(r, "Vera")
    walt = open_visitor(r, "Walt")
    open_conversation(agent, "Vera")
    agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
    r.consumer.wait_for_selector(".lpcall-invitation")
    open_conversation(agent, "Walt")
    # Walt's conversation shows no call pane; a bar says where the invitation is and can cancel it
    assert agent.locator(".lpcall-agent-call").is_hidden()
    assert agent.locator(".lpcall-agent-call .lpcall-call").is_hidden()
    agent.wait_for_selector(".lpcall-call-elsewhere:not([hidden])")
    assert agent.inner_text(".lpcall-call-elsewhere-text") == "Invitation to Vera pending"
    assert agent.locator("button.lpcall-call-btn[data-mode=VIDEO_CALL]").is_disabled()  # one call at a time
    # back to Vera: the pane is there again
    agent.click(".lpcall-call-show")
    agent.wait_for_selector(".lpcall-chat-title:text-is('Vera')")
    assert agent.locator(".lpcall-agent-call .lpcall-call").is_visible()
    assert agent.locator(".lpcall-call-elsewhere").is_hidden()
    open_conversation(agent, "Walt")
    agent.click(".lpcall-call-stop")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
    wait_for(lambda: "system.cancelled" in r.transcript(), timeout=10, message="system.cancelled")
    r.consumer.wait_for_selector(".lpcall-invitation", state="detached")
    agent.wait_for_selector(".lpcall-call-elsewhere", state="hidden")
    assert agent.locator(".lpcall-agent-call").is_hidden()  # Vera's ended pane stays with Vera
    wait_for(lambda: agent.locator("button.lpcall-call-btn[data-mode=VIDEO_CALL]").is_enabled(), timeout=5, message="Walt can be called")
    assert walt.locator(".lpcall-invitation").count() == 0


def test_an_invitation_closes_early_when_the_visitors_page_is_gone(rig: Any) -> None:
    grace = 2
    r: Rig = rig(LPCALL_RECONNECT_GRACE=grace, LPCALL_INVITE_TTL=120)
    agent = open_agent(r)
    r.consumer = open_visitor(r, "Vera")
    walt = open_visitor(r, "Walt")
    open_conversation(agent, "Vera")
    agent.click("button.lpcall-call-btn[data-mode=VOICE_CALL]")
    r.consumer.wait_for_selector(".lpcall-invitation")
    # a reload within the grace period is no departure
    r.consumer.reload()
    r.consumer.wait_for_selector(".lpcall-invitation")
    calls = get_state(r.app).calls
    sid = agent.evaluate("window.__lpcallEngines.at(-1).serviceId")
    r.consumer.close()  # the visitor closes the tab
    gone_at = time.monotonic()
    agent.wait_for_selector(".lpcall-call[data-status=closed] .lpcall-call-error:not([hidden])", timeout=30_000)
    waited = time.monotonic() - gone_at
    assert grace <= waited + 0.5 and waited < 20, waited  # after the grace period, long before the 120 s TTL
    assert agent.inner_text(".lpcall-call .lpcall-call-error") == "Vera left the page, so the invitation was closed."
    assert agent.evaluate("window.__lpcallEngines.at(-1).closedInfo.reason") == "consumer_disconnected"
    assert calls.get(sid) is None and call_keys(r.app) == []
    wait_for(lambda: "system.visitor_left" in r.transcript(), timeout=10, message="system.visitor_left")
    assert cobrowse_dialog(r)["metaData"] == {"sessionState": "CLOSED"}
    agent.wait_for_selector(".lpcall-chat-main .lpcall-transcript li:has-text('Vera left the page')")
    # the agent is free for the next visitor at once
    open_conversation(agent, "Walt")
    agent.click("button.lpcall-call-btn[data-mode=VOICE_CALL]")
    walt.wait_for_selector(".lpcall-invitation")


def test_the_invitation_is_announced_and_reached_by_keyboard_alone(rig: Any) -> None:
    r: Rig = rig(LPCALL_CALL_ENDED_SECONDS=0)
    open_agent(r)
    visitor = r.consumer = r.page()
    visitor.goto(f"{r.server.url}/")
    # the window stays invisible until its stylesheet has loaded, and an invisible button takes no focus
    visitor.wait_for_selector(".lpcall-launcher", state="visible")
    visitor.focus(".lpcall-launcher")
    assert visitor.evaluate(ACTIVE_JS).startswith("lpcall-launcher"), visitor.evaluate(ACTIVE_JS)
    visitor.keyboard.press("Enter")
    visitor.keyboard.type("Vera")
    visitor.keyboard.press("Enter")
    visitor.wait_for_selector(".lpcall-composer:not([hidden])")
    assert visitor.get_attribute(".lpcall-invitations", "aria-live") == "assertive"  # the live region is there first
    r.invite("VIDEO_CALL")
    visitor.wait_for_selector(".lpcall-invitations .lpcall-invitation[role=alertdialog]")
    label = visitor.evaluate("document.getElementById(document.querySelector('.lpcall-invitation').getAttribute('aria-labelledby')).textContent")
    assert label == "Bob invites you to a video call"
    wait_for(lambda: "system.invited" in r.transcript(), timeout=5)
    visitor.wait_for_selector(".lpcall-transcript li:has-text('invitation')")  # later updates keep the focus where it is
    assert visitor.evaluate(ACTIVE_JS).startswith("lpcall-accept"), visitor.evaluate(ACTIVE_JS)
    visitor.keyboard.press("Enter")
    r.wait_media(video=True)
    wait_for(lambda: visitor.evaluate("!!document.activeElement.closest('.lpcall-controls')"), timeout=10,
             message=f"the focus on the call's controls (it is on {visitor.evaluate(ACTIVE_JS)})")
    for _ in range(6):  # Tab on to the hang-up button
        if visitor.evaluate(ACTIVE_JS).startswith("lpcall-hangup"):
            break
        visitor.keyboard.press("Tab")
    assert visitor.evaluate(ACTIVE_JS).startswith("lpcall-hangup")
    visitor.keyboard.press("Enter")
    r.wait_closed_everywhere("system.ended")
    wait_for(lambda: visitor.evaluate(ACTIVE_JS).startswith("lpcall-close"), timeout=5, message="the focus on the close button")
    visitor.keyboard.press("Enter")
    visitor.wait_for_selector(".lp_cobrowse_callscreen_container", state="detached")
    assert visitor.evaluate(ACTIVE_JS) == "TEXTAREA|lpcall-message"  # back in the chat


def test_a_whole_call_on_the_development_server_logs_no_console_error(rig: Any) -> None:
    r: Rig = rig()
    agent = r.page()
    agent_errors = watch_console(agent)
    r.agent = agent
    agent.goto(f"{r.server.url}/lpcall/agent/login")
    agent.fill("#lpcall-username", "bob")
    agent.fill("#lpcall-password", "bob")
    agent.click(".lpcall-login-form [type=submit]")
    agent.wait_for_selector("#lpcall-agent")
    consumer = r.page()
    consumer_errors = watch_console(consumer)
    r.consumer = consumer
    consumer.goto(f"{r.server.url}/")
    consumer.click(".lpcall-launcher")
    consumer.fill("#lpcall-visitor-name", "Vera")
    consumer.click(".lpcall-start [type=submit]")
    consumer.wait_for_selector(".lpcall-composer:not([hidden])")
    r.invite("VIDEO_CALL")
    consumer.click(".lpcall-invitation .lpcall-accept")
    r.wait_media(video=True)
    consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")
    # the sockets of the call are gone on both sides (their close handshake has run)
    for page in (agent, consumer):
        wait_for(lambda p=page: p.evaluate("(window.__lpcallEngines || []).every(e => !e.ws || e.ws.readyState === 3)"),
                 timeout=10, message="call sockets closed")
    # a second page load: the favicon and the reloaded window's sockets
    consumer.reload()
    consumer.wait_for_selector(".lpcall-window")
    agent.reload()
    agent.wait_for_selector("#lpcall-agent")
    wait_for(lambda: agent.evaluate("document.getElementById('lpcall-agent').dataset.status") == "open", timeout=10)
    assert not agent_errors and not consumer_errors, "\n".join(["agent:", *agent_errors, "visitor:", *consumer_errors])
    assert call_keys(r.app) == []
