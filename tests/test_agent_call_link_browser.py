"""The agent workspace makes a call link (issue 18) for the invitation waiting in the open conversation:
a labelled button reached by keyboard, the link sent into the chat, shown with a copy button and when it
stops working; the visitor's window gets the message and the link opens the call page's invitation."""

from __future__ import annotations

import re
from typing import Any

from resumekit import INIT, Rig
from support import wait_for

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until ``selector`` has the focus (it is reachable by keyboard)."""
    for _ in range(limit):
        if page.evaluate("(sel) => document.activeElement && document.activeElement.matches(sel)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} not reached with Tab")


def test_the_agent_sends_a_call_link_into_the_chat_and_copies_it(rig: Any) -> None:
    r: Rig = rig(LPCALL_CALL_LINK_TTL=600)
    r.open_agent()
    r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    # no invitation yet: no link to make
    assert r.agent.is_hidden(".lpcall-call-link")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
    r.consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")
    button = r.agent.wait_for_selector(".lpcall-call-link")
    assert button.evaluate("(b) => b.tagName") == "BUTTON" and button.inner_text() == "Send a call link"

    r.agent.focus(".lpcall-chat-title")
    r.agent.evaluate("document.activeElement.blur()")
    _tab_to(r.agent, ".lpcall-call-link")
    r.agent.keyboard.press("Enter")
    r.agent.wait_for_selector(".lpcall-call-link-result:not([hidden])")
    url = r.agent.input_value(".lpcall-call-link-url")
    assert re.fullmatch(rf"{re.escape(r.server.url)}/lpcall/call/[\w.-]+", url), url
    assert r.agent.inner_text(".lpcall-call-link-label") == "Call link for Vera"
    wait_for(lambda: "Sent in the chat. It works once, until" in r.agent.inner_text(".lpcall-call-link-status"),
             timeout=5, message="the link's status")
    # the copy button has the focus now and copies the link
    assert r.agent.evaluate("document.activeElement.className") == "lpcall-call-link-copy"
    r.agent.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=r.server.url)
    r.agent.keyboard.press("Enter")
    wait_for(lambda: r.agent.inner_text(".lpcall-call-link-copy") == "Copied", timeout=5, message="copied")
    assert r.agent.evaluate("navigator.clipboard.readText()") == url

    # the visitor's chat has it as the agent's message
    message = f"Join the call on this page: {url}"
    r.consumer.wait_for_selector(f".lpcall-transcript >> text={message}")
    r.agent.wait_for_selector(f".lpcall-transcript >> text={message}")
    # ...and it opens the call page's invitation on another device
    ctx = r.browser.new_context(**PHONE)
    ctx.add_init_script(INIT)
    r.contexts.append(ctx)
    phone = ctx.new_page()
    assert phone.goto(url).status == 200
    phone.wait_for_selector(".lpcall-callpage-invitation .lpcall-accept")

    # once the invitation is answered there is nothing to link to: the button goes
    phone.click(".lpcall-callpage-invitation .lpcall-accept")
    r.wait_frames(r.agent)
    r.agent.wait_for_selector(".lpcall-call-link-area", state="hidden")
