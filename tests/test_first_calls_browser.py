"""What a person meets in the first calls (issue 13 point 6), in Chromium on the development server.

The example site on Werkzeug's server (tests/support.start_live_server), an agent workspace and a
visitor page, real media: the ended call gives the chat its room back, the agent keeps the
transcript and reply box during a call, a pending invitation stays with its conversation and
closes early when the visitor's page is gone, the invitation is reachable by keyboard, and a
whole call logs no console error.
"""

from __future__ import annotations

from typing import Any

from callkit import call_keys
from support import wait_for
from test_call_browser import Rig, chromium, rig  # noqa: F401 - the module's fixtures

CONSOLE_JS = """
window.__console = [];
"""


def watch_console(page: Any) -> list[str]:
    """Every console error and uncaught page error of ``page``, as text."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(f"{msg.type}: {msg.text} @ {msg.location}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    return seen


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
