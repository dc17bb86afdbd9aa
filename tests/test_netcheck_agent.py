"""The agent asks the visitor to run the pre-call network check and sees the result (issue 6, point 3).

* socket level: ``netcheck.Request`` on the agent socket posts a SYSTEM event with
  ``systemKey: system.netcheck_request`` to the conversation; a non-assigned agent, a closed
  conversation or a malformed body get an error frame naming the problem, and the sockets stay up;
* Chromium: the agent clicks "Check visitor's network" in the workspace, the visitor's engagement
  window shows the request with a "Check my network" button, the widget runs inline against the
  server's aiortc peer, and the verdict (path, RTT, bitrate) appears live in the agent's transcript.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from support import start_live_server, wait_for
from wsclients import Agent, Consumer

from example_site.app import create_app
from flask_lpcall.core.agents import NETCHECK_REQUEST_KEY
from flask_lpcall.texts import build_texts

TIMEOUT = 20_000


@pytest.fixture
def server() -> Iterator[Any]:
    srv = start_live_server(create_app(TESTING=True, LPCALL_REPORT_DB=":memory:"))
    yield srv
    srv.stop()


def _conversations(server: Any) -> Any:
    return server.app.extensions["lpcall"].conversations


def _system_event(msg: dict[str, Any]) -> bool:
    return msg.get("type") == "ms.MessagingEventNotification" and any(
        e.get("systemKey") == NETCHECK_REQUEST_KEY for e in msg["body"].get("events", [])
    )


def test_texts_exist_in_en_and_de() -> None:
    en, de = build_texts("en", {}), build_texts("de", {})
    for key in ("agent.netcheck", "window.netcheck", "window.netcheck_close", NETCHECK_REQUEST_KEY):
        assert en[key] and de[key] and en[key] != de[key], key


def test_request_reaches_the_consumer_and_bad_requests_get_an_error_naming_the_problem(server: Any) -> None:
    bob = Agent(server.url, "bob", "bob")
    bob.connect()  # available: the new conversation is routed to Bob
    consumer = Consumer(server.url)
    consumer.connect()
    conv_id = consumer.open_conversation("Vera")
    wait_for(lambda: _conversations(server).get(conv_id)["agentId"] == "bob", timeout=10)
    assert bob.client.request("agent.Open", {"conversationId": conv_id})["code"] == 200
    alice = Agent(server.url, "alice", "alice")
    alice.connect(available=False)

    def error(client: Any, body: Any) -> dict[str, Any]:
        resp = client.request("netcheck.Request", body)
        assert resp["type"] == "GenericResponse" and resp["code"] >= 400, resp
        return {"status": resp["code"], **resp["body"]["error"]}

    # another agent's conversation
    err = error(alice.client, {"conversationId": conv_id})
    assert (err["status"], err["code"], err["field"]) == (403, "NOT_ASSIGNED", "body.conversationId"), err
    # malformed bodies: the error names the field
    err = error(bob.client, {})
    assert (err["status"], err["code"], err["field"]) == (400, "BAD_FRAME", "body.conversationId"), err
    err = error(bob.client, {"conversationId": 42})
    assert (err["code"], err["field"]) == ("BAD_FRAME", "body.conversationId"), err
    err = error(bob.client, {"conversationId": conv_id, "mode": "VIDEO_CALL"})
    assert (err["code"], err["field"]) == ("BAD_FRAME", "body.mode"), err
    err = error(bob.client, {"conversationId": "x" * 5000})
    assert err["code"] in ("BAD_FRAME", "TOO_LARGE"), err
    err = error(bob.client, {"conversationId": "no-such-conversation"})
    assert (err["status"], err["code"], err["field"]) == (404, "NOT_FOUND", "body.conversationId"), err
    # nothing reached the transcript so far
    assert not [e for e in _conversations(server).events(conv_id) if e.get("systemKey") == NETCHECK_REQUEST_KEY]

    # the assigned agent's request: a SYSTEM event with the documented systemKey, on both sides
    ok = bob.client.request("netcheck.Request", {"conversationId": conv_id})
    assert ok["code"] == 200, ok
    assert ok["body"]["conversationId"] == conv_id and ok["body"]["systemKey"] == NETCHECK_REQUEST_KEY
    for client in (consumer.client, bob.client):
        note = client.wait_notification(_system_event)
        event = next(e for e in note["body"]["events"] if e.get("systemKey") == NETCHECK_REQUEST_KEY)
        assert event["role"] == "SYSTEM" and event["sequence"] == ok["body"]["sequence"]
        assert event["event"]["message"] == "Bob asks you to check your connection for calls."

    # every socket is still up
    for client in (bob.client, alice.client, consumer.client):
        assert client.request("ping")["code"] == 200
    assert consumer.say(conv_id, "ok, running it")["code"] == 200

    # a closed conversation cannot be asked any more
    assert bob.client.request("cm.CloseConversation", {"conversationId": conv_id})["code"] == 200
    err = error(bob.client, {"conversationId": conv_id})
    assert (err["status"], err["code"], err["field"]) == (409, "INVALID_STATE", "body.conversationId"), err
    assert bob.client.request("ping")["code"] == 200
    for c in (bob, alice, consumer):
        c.close()


def login(page: Any, base: str, user: str) -> None:
    page.goto(base + "/lpcall/agent/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(user)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#lpcall-agent")).to_be_visible(timeout=TIMEOUT)


@pytest.mark.browser
def test_agent_asks_the_visitor_to_check_the_network_and_sees_the_verdict(browser: Any, server: Any) -> None:
    visitor_ctx = browser.new_context(viewport={"width": 390, "height": 740}, is_mobile=True, has_touch=True)
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    visitor = visitor_ctx.new_page()
    agent = agent_ctx.new_page()
    errors: list[str] = []
    for p in (visitor, agent):
        p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        # The visitor starts a chat on the example site.
        visitor.goto(server.url + "/products/aurora-espresso")
        visitor.get_by_role("button", name="Chat with us").click()
        visitor.get_by_label("Your name").fill("Vera")
        visitor.get_by_role("button", name="Start chat").click()
        visitor.get_by_label("Message").fill("My video calls keep freezing")
        visitor.get_by_label("Message").press("Enter")
        visitor_log = visitor.get_by_role("log")
        expect(visitor_log.locator(".lpcall-msg-consumer .lpcall-msg-text")).to_have_text(
            ["My video calls keep freezing"], timeout=TIMEOUT
        )

        # The agent logs in, opens the conversation and asks for a network check (keyboard).
        login(agent, server.url, "bob")
        agent.locator(".lpcall-mine .lpcall-conv-open").click()
        agent_log = agent.locator(".lpcall-chat .lpcall-transcript")
        expect(agent_log.locator(".lpcall-msg-consumer .lpcall-msg-text")).to_have_text(
            ["My video calls keep freezing"], timeout=TIMEOUT
        )
        ask = agent.get_by_role("button", name="Check visitor's network")
        expect(ask).to_be_visible()
        ask.focus()
        expect(ask).to_be_focused()
        agent.keyboard.press("Enter")
        expect(agent_log.locator(".lpcall-msg-system .lpcall-msg-text").last).to_have_text(
            "Bob asks you to check your connection for calls.", timeout=TIMEOUT
        )
        expect(agent.locator(".lpcall-chat-error")).to_be_hidden()

        # The visitor sees the request with a button and runs the check inline.
        request = visitor_log.locator(".lpcall-msg-system").filter(has_text="Bob asks you to check your connection")
        expect(request).to_have_count(1, timeout=TIMEOUT)
        run = request.get_by_role("button", name="Check my network")
        run.click()
        widget = visitor.locator(".lpcall-window-netcheck .lpcall-netcheck")
        expect(widget).to_have_attribute("data-verdict", re.compile(r"^(video|degraded|voice|insufficient)$"),
                                         timeout=60_000)
        assert widget.get_attribute("data-path") == "host"
        expect(widget.locator("[data-field=path]")).to_have_text("Direct (same network)")
        rtt = widget.locator("[data-field=rtt]").inner_text()
        bitrate = widget.locator("[data-field=bitrate]").inner_text()
        assert re.fullmatch(r"\d+ ms", rtt) and re.fullmatch(r"\d+ kbit/s", bitrate), (rtt, bitrate)
        expect(widget.locator(".lpcall-netcheck-verdict")).to_contain_text("Your agent can see this result.")
        panel = visitor.get_by_role("dialog", name="Chat with us")
        box, wbox = panel.bounding_box(), widget.bounding_box()
        assert box and wbox and wbox["x"] >= box["x"] and wbox["x"] + wbox["width"] <= box["x"] + box["width"] + 1

        # The agent sees the verdict live: path, RTT and bitrate, the same figures the visitor saw.
        texts = build_texts("en", {})
        short = texts[f"netcheck.short.{widget.get_attribute('data-verdict')}"]
        expected = f"Network check: {short} (Direct (same network), {rtt}, {bitrate})"
        expect(agent_log.locator(".lpcall-msg-system .lpcall-msg-text").last).to_have_text(expected, timeout=TIMEOUT)
        events = _conversations(server).events(_conversations(server).open_conversations()[0]["convId"])
        keys = [e.get("systemKey") for e in events if e.get("role") == "SYSTEM"]
        assert keys[-2:] == [NETCHECK_REQUEST_KEY, "system.netcheck"], keys

        # The visitor closes the widget; the chat goes on.
        visitor.get_by_role("button", name="Close the network check").click()
        expect(widget).to_have_count(0)
        expect(visitor.get_by_label("Message")).to_be_focused()
        assert errors == [], errors
    finally:
        visitor_ctx.close()
        agent_ctx.close()


def test_request_is_documented() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    assert "netcheck.Request" in (root / "docs" / "PROTOCOL.md").read_text()
    assert NETCHECK_REQUEST_KEY in (root / "docs" / "PROTOCOL.md").read_text()
    assert NETCHECK_REQUEST_KEY in (root / "README.md").read_text()
