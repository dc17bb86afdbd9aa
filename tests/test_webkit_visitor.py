"""A real engine without WebRTC: Debian's WebKitGTK (built without ``RTCPeerConnection``) as the visitor.

The visitor chats normally; the agent (Chromium) sees before any invitation that this visitor's
browser cannot take calls (the built-in window declares ``CO_BROWSE`` only when the browser can call,
and the seed gives a conversation without it no invitation); a site's own client that declares
``CO_BROWSE`` anyway gets ``BROWSER_NOT_SUPPORTED`` at the Accept, with its message, cleanly and with
no console errors. WebKitGTK runs under ``xvfb-run`` (tests/webkitkit.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from callkit import call_keys
from support import wait_for
from webkitkit import MINIBROWSER, WEBKIT_DRIVER, XVFB_RUN, WebKitPage

from flask_lpcall.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.webkit]

# The page's own record of the seed's call-app events (the public lpTag.events.bind API).
RECORD_JS = """() => { window.__seen = [];
  for (const eventName of ['sessionError', 'sessionResume'])
    lpTag.events.bind({appName: 'cobrowse', eventName, func: (data) => window.__seen.push({eventName, data})});
}"""


@pytest.fixture
def webkit() -> Iterator[WebKitPage]:
    from support import require

    for path, pkg in ((WEBKIT_DRIVER, "webkit2gtk-driver"), (MINIBROWSER, "webkit2gtk-driver"), (XVFB_RUN, "xvfb")):
        require("WebKitGTK", os.path.exists(path), f"{path} missing (apt-get install {pkg})")
    page = WebKitPage()
    yield page
    page.close()




def test_webkit_visitor_chats_and_the_agent_sees_why_calls_are_off(rig: Any, webkit: WebKitPage) -> None:
    r = rig()
    texts = get_state(r.app).texts
    agent = r.open_agent()
    v = webkit
    v.goto(r.server.url + "/")
    assert v.evaluate("typeof RTCPeerConnection") == "undefined"  # the real engine really has no WebRTC
    v.click(".lpcall-launcher")
    v.fill("#lpcall-visitor-name", "Vera")
    v.click(".lpcall-start [type=submit]")
    v.wait_for_selector(".lpcall-composer:not([hidden])")
    v.fill(".lpcall-composer textarea, .lpcall-composer input[type=text]", "Hello from WebKit")
    v.click(".lpcall-composer [type=submit]")
    agent.click(".lpcall-mine .lpcall-conv-open")
    agent.wait_for_selector(".lpcall-transcript :text('Hello from WebKit')")
    # the agent is told why there is no call, before any invitation
    reason = agent.locator(".lpcall-call-reason")
    wait_for(lambda: reason.is_visible() and reason.inner_text() == texts["agent.no_cobrowse"], timeout=10, message="why no call")
    for button in agent.locator("button.lpcall-call-btn").all():
        assert button.is_disabled()
    # and the chat goes on both ways
    agent.fill(".lpcall-agent-composer textarea, .lpcall-composer textarea, .lpcall-composer input[type=text]", "Hi Vera")
    agent.keyboard.press("Enter")
    wait_for(lambda: "Hi Vera" in v.evaluate("document.querySelector('.lpcall-transcript').innerText"), timeout=10, message="reply shown")
    assert v.console() == []


def test_a_custom_client_that_declares_co_browse_gets_browser_not_supported_at_the_accept(rig: Any, webkit: WebKitPage) -> None:
    r = rig(LPCALL_ENGAGEMENT_WINDOW=False)
    texts = get_state(r.app).texts
    r.open_agent()
    v = r.consumer = webkit
    v.goto(f"{r.server.url}/custom")
    v.evaluate(RECORD_JS)
    v.fill("#custom-name", "Vera")
    v.click("#custom-start [type=submit]")
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    v.wait_for_selector("#custom-invite:not([hidden])")
    v.click("#custom-accept")
    seen = wait_for(lambda: v.evaluate("window.__seen"), timeout=20, message="sessionError")
    assert seen == [{"eventName": "sessionError", "data": {"id": "BROWSER_NOT_SUPPORTED", "msg": texts["error.BROWSER_NOT_SUPPORTED"]}}]
    container_text = "(document.querySelector('.lp_cobrowse_callscreen_container') || {}).innerText || ''"
    wait_for(lambda: texts["error.BROWSER_NOT_SUPPORTED"] in v.evaluate(container_text), timeout=10, message="the error in the container")
    r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    from resumekit import diagnose
    assert texts["error.BROWSER_NOT_SUPPORTED"] in r.agent.inner_text(".lpcall-call .lpcall-call-error"), (diagnose(r), v.evaluate("window.__console"))
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="the call is closed and freed")
    assert v.console() == []  # no "signaling step failed" or any other error or warning
