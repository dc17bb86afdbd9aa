"""Chromium: a visitor chats in the example site's engagement window with an agent in the workspace.

One browser, two contexts (visitor on a phone-sized viewport, agent on a desktop one).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect
from support import start_live_server, wait_for
from wsclients import Consumer

from example_site.app import create_app
from flask_lpcall.state import get_state

pytestmark = pytest.mark.browser

XSS_NAME = '<img src=x onerror="window.__xss=1">Eve'
XSS_MESSAGE = "<script>window.__xss=2</script><b>not bold</b>"
TIMEOUT = 15_000
# Records, when cobrowseAccepted is published, whether the call container already exists (PROTOCOL §10).
ACCEPT_PROBE = """
(function wait() {
  const ev = window.lpTag && window.lpTag.events;
  if (!ev || !ev.bind) { setTimeout(wait, 10); return; }
  ev.bind({appName: 'lpCoBrowse', eventName: '*', func: (data, info) => {
    const name = (info && info.eventName) || (data && data.info && data.info.eventName);
    (window.__lpEvents = window.__lpEvents || []).push(name);
    if (name === 'cobrowseAccepted') {
      window.__accepted = {payload: data, container: !!document.querySelector('.lp_cobrowse_callscreen_container')};
    }
  }});
})();
"""


@pytest.fixture
def server() -> Any:
    srv = start_live_server(create_app(TESTING=True))
    yield srv
    srv.stop()


def login(page: Any, base: str, user: str) -> None:
    page.goto(base + "/lpcall/agent/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(user)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#lpcall-agent")).to_be_visible(timeout=TIMEOUT)


def test_visitor_and_agent_chat_live_reload_keeps_it_and_text_is_inert(browser: Any, server: Any) -> None:
    visitor_ctx = browser.new_context(viewport={"width": 390, "height": 740}, is_mobile=True, has_touch=True)
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    visitor_ctx.add_init_script(ACCEPT_PROBE)
    visitor = visitor_ctx.new_page()
    agent = agent_ctx.new_page()
    errors: list[str] = []
    for p in (visitor, agent):
        p.on("pageerror", lambda exc: errors.append(str(exc)))

    # The visitor opens the engagement window on a product page and starts a chat.
    visitor.goto(server.url + "/products/aurora-espresso")
    launcher = visitor.get_by_role("button", name="Chat with us")
    expect(launcher).to_be_visible(timeout=TIMEOUT)
    launcher.click()
    panel = visitor.get_by_role("dialog", name="Chat with us")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # fits the phone
    assert box["width"] >= 380 and box["height"] >= 700  # a full-screen sheet on a phone
    assert panel.evaluate("e => getComputedStyle(e.closest('.lpcall-window')).position") == "fixed"
    visitor.get_by_label("Your name").fill(XSS_NAME)
    visitor.get_by_role("button", name="Start chat").click()
    expect(visitor.locator(".lpcall-status")).to_have_text("Waiting for an agent…", timeout=TIMEOUT)
    message = visitor.get_by_label("Message")
    message.fill("Hello, my grinder is broken")
    visitor.get_by_role("button", name="Send").click()
    message.fill(XSS_MESSAGE)
    message.press("Enter")
    visitor_log = visitor.get_by_role("log")
    expect(visitor_log.locator(".lpcall-msg-consumer .lpcall-msg-text")).to_have_text(
        ["Hello, my grinder is broken", XSS_MESSAGE], timeout=TIMEOUT
    )

    # The agent logs in; the waiting conversation is routed to Bob and shows live.
    login(agent, server.url, "bob")
    item = agent.locator(".lpcall-mine .lpcall-conv-open")
    expect(item.locator(".lpcall-conv-name")).to_have_text(XSS_NAME, timeout=TIMEOUT)
    item.click()
    agent_log = agent.locator(".lpcall-chat .lpcall-transcript")
    expect(agent_log.locator(".lpcall-msg-consumer .lpcall-msg-text")).to_have_text(
        ["Hello, my grinder is broken", XSS_MESSAGE], timeout=TIMEOUT
    )
    expect(agent.get_by_role("button", name="Voice call")).to_be_enabled()
    expect(agent.get_by_role("button", name="Video call")).to_be_enabled()
    expect(visitor_log.locator(".lpcall-msg-system")).to_have_text(["Bob joined the conversation"], timeout=TIMEOUT)

    agent.get_by_label("Type a reply…").fill("Hi, Bob here. <i>Let's fix it</i>")
    agent.get_by_role("button", name="Send").click()
    expect(visitor_log.locator(".lpcall-msg-agent .lpcall-msg-text")).to_have_text(
        ["Hi, Bob here. <i>Let's fix it</i>"], timeout=TIMEOUT
    )
    expect(visitor_log.locator(".lpcall-msg-agent .lpcall-msg-who")).to_have_text(["Bob"])

    # A live message while the agent watches.
    message.fill("Thanks!")
    message.press("Enter")
    expect(agent_log.locator(".lpcall-msg-consumer .lpcall-msg-text").last).to_have_text("Thanks!", timeout=TIMEOUT)

    # Reload and navigation keep the conversation (id recovered from the server).
    visitor.reload()
    expect(visitor.get_by_role("log").locator(".lpcall-msg-text")).to_have_text(
        ["Hello, my grinder is broken", XSS_MESSAGE, "Bob joined the conversation",
         "Hi, Bob here. <i>Let's fix it</i>", "Thanks!"], timeout=TIMEOUT
    )
    visitor.goto(server.url + "/support")
    visitor_log = visitor.get_by_role("log")
    expect(visitor_log.locator(".lpcall-msg-text")).to_have_count(5, timeout=TIMEOUT)
    visitor.get_by_label("Message").fill("Still there after navigating")
    visitor.get_by_label("Message").press("Enter")
    expect(agent_log.locator(".lpcall-msg-consumer .lpcall-msg-text").last).to_have_text(
        "Still there after navigating", timeout=TIMEOUT
    )
    agent.reload()  # the agent's reload reopens the selected conversation
    expect(agent.locator(".lpcall-chat .lpcall-transcript .lpcall-msg-text")).to_have_count(6, timeout=TIMEOUT)

    # A call invitation appears in the window with Accept / Decline; Decline closes it on both sides.
    agent.get_by_role("button", name="Video call").click()
    invitation = visitor.get_by_role("alertdialog")
    expect(invitation).to_contain_text("Bob invites you to a video call", timeout=TIMEOUT)
    expect(invitation.get_by_role("button", name="Accept")).to_be_focused()
    invitation.get_by_role("button", name="Decline").click()
    expect(invitation).to_have_count(0)
    expect(agent_log.locator(".lpcall-msg-system .lpcall-msg-text").last).to_have_text(
        "The video call invitation was declined", timeout=TIMEOUT
    )

    # Accept: the container (with its loading indicator) exists before cobrowseAccepted is published.
    agent.get_by_role("button", name="Voice call").click()
    invitation = visitor.get_by_role("alertdialog")
    expect(invitation).to_contain_text("Bob invites you to a voice call", timeout=TIMEOUT)
    invitation.get_by_role("button", name="Accept").click()
    accepted = visitor.evaluate("() => window.__accepted")
    assert accepted is not None and accepted["container"] is True, accepted
    payload = accepted["payload"]
    assert payload["mode"] == "VOICE_CALL" and payload["agentId"] == "bob" and payload["visitorName"] == XSS_NAME
    assert payload["serviceId"] and payload["ssid"] and payload["svid"]
    assert visitor.evaluate("() => window.__lpEvents").count("cobrowseOffered") == 2
    expect(visitor.locator(".lp_cobrowse_callscreen_container")).to_have_count(1)
    expect(agent_log.locator(".lpcall-msg-system .lpcall-msg-text").last).to_have_text(
        "The voice call invitation was accepted", timeout=TIMEOUT
    )

    # Every payload stayed text: no script ran, no element was created from user text.
    for p in (visitor, agent):
        assert p.evaluate("() => window.__xss") is None
        assert p.locator("img[src=x]").count() == 0 and p.locator(".lpcall-msg-text b, .lpcall-msg-text i").count() == 0
    assert errors == []
    visitor_ctx.close()
    agent_ctx.close()


def test_call_buttons_disabled_with_reason_without_cobrowse_and_by_profile(browser: Any, server: Any) -> None:
    plain = Consumer(server.url, features=())  # a custom chat UI that did not declare CO_BROWSE
    plain.connect()
    plain.open_conversation("Plain Paula")
    ctx = browser.new_context()
    page = ctx.new_page()
    login(page, server.url, "alice")  # voice only
    item = page.locator(".lpcall-mine .lpcall-conv-open")
    expect(item).to_contain_text("Plain Paula", timeout=TIMEOUT)
    item.click()
    voice = page.get_by_role("button", name="Voice call")
    expect(voice).to_be_visible()
    expect(voice).to_be_disabled()
    expect(page.get_by_role("button", name="Video call")).to_have_count(0)
    expect(page.locator(".lpcall-call-reason")).to_have_text("The visitor's browser or window cannot take voice or video calls.")
    expect(voice).to_have_accessible_description("The visitor's browser or window cannot take voice or video calls.")

    # Not available: a new conversation waits in the queue until Alice takes it.
    page.get_by_label("Available for new conversations").uncheck()
    queued = Consumer(server.url)
    queued.connect()
    wait_for(lambda: not get_state(server.app).conversations.available_agents(), timeout=10)
    queued.open_conversation("Queued Quentin")
    waiting = page.locator(".lpcall-queue .lpcall-conv-item")
    expect(waiting).to_contain_text("Queued Quentin", timeout=TIMEOUT)
    waiting.get_by_role("button", name="Take: Queued Quentin").click()
    expect(page.locator(".lpcall-mine")).to_contain_text("Queued Quentin", timeout=TIMEOUT)
    expect(page.locator(".lpcall-queue .lpcall-conv-item")).to_have_count(0)
    expect(page.locator(".lpcall-chat-title")).to_have_text("Queued Quentin")
    expect(page.get_by_role("button", name="Voice call")).to_be_enabled()
    expect(page.locator(".lpcall-chat .lpcall-msg-system .lpcall-msg-text")).to_have_text(
        ["Alice joined the conversation"], timeout=TIMEOUT
    )
    queued.close()
    plain.close()
    ctx.close()
