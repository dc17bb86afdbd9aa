"""A visitor's network switch during a video call (issue 17), in Chromium inside the test session's
private network namespace (tests/switchkit.py): the address the call's media uses goes away and a new
one appears, and the visitor's TCP connections to the site are aborted in the same instant, as when a
phone moves from Wi-Fi to cellular.

What a person sees afterwards: the same call (no new invitation, no error), video decoded again on
both sides, and the chat still working both ways over the sockets that came back by themselves.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from resumekit import diagnose
from stallkit import FRAMES_JS, in_private_netns
from support import require, wait_for
from switchkit import SELECTED_PAIR_JS, SOCKETS_JS, Switch, SwitchRig, keep_default_route, present


@pytest.fixture
def switch() -> Iterator[Switch]:
    for tool in ("ip", "ss", "iptables"):
        require(tool, shutil.which(tool) is not None, "apt-get install iproute2 iptables")
    if not in_private_netns():
        pytest.skip("only inside the private test namespace (never touch the host's network)")
    keep_default_route()
    sw = Switch()
    sw.no_loopback_media()
    try:
        yield sw
    finally:
        sw.undo()


@pytest.fixture
def switch_rig(browser: Any, live_server: Any) -> Iterator[SwitchRig]:
    r = SwitchRig(browser, live_server)
    r.init_scripts.append(SOCKETS_JS)
    try:
        yield r
    finally:
        r.close()


def _frames(page: Any) -> int:
    return int(page.evaluate(FRAMES_JS))


def _call_socket_back(page: Any) -> bool:
    events = [e for e in page.evaluate("window.__sockets") if e["path"].endswith("/ws/call")]
    closes = [i for i, e in enumerate(events) if e["ev"] == "close"]
    return bool(closes) and any(e["ev"] == "open" for e in events[closes[0]:])


def test_a_network_switch_keeps_the_call_and_the_chat(switch_rig: SwitchRig, switch: Switch) -> None:
    r = switch_rig
    sid = r.start("VIDEO_CALL")
    pair = wait_for(lambda: (p := r.consumer.evaluate(SELECTED_PAIR_JS)) and present(p["local"]) and p,
                    timeout=10, message="a selected pair on a live address")
    before = {id(p): _frames(p) for p in (r.agent, r.consumer)}
    switch.switch("addr", pair, r.visitor_port)
    try:
        wait_for(lambda: _call_socket_back(r.consumer), timeout=30, message="the visitor's call socket back")
        for page in (r.agent, r.consumer):
            now = _frames(page)
            wait_for(lambda p=page, n=now: _frames(p) > n + 10, timeout=30, message="video decoded again")
            wait_for(lambda p=page: r.engine(p)["status"] == "connected", timeout=15, message="connected again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nswitched {pair}\n{diagnose(r)}") from None
    assert all(_frames(p) > before[id(p)] for p in (r.agent, r.consumer))
    now = r.consumer.evaluate(SELECTED_PAIR_JS)
    assert now["local"] != pair["local"], (pair, now)  # the media moved to the new network
    for page in (r.agent, r.consumer):  # the same call, nothing shown as an error
        state = r.engine(page)
        assert state["serviceId"] == sid and state["closed"] is None
    assert not r.events(r.consumer, "cobrowse", "sessionError")
    # the chat came back too, both ways
    r.consumer.get_by_label("Message").fill("Still there after the switch?")
    r.consumer.get_by_label("Message").press("Enter")
    agent_log = r.agent.locator(".lpcall-chat .lpcall-transcript .lpcall-msg-consumer .lpcall-msg-text")
    expect(agent_log.last).to_have_text("Still there after the switch?", timeout=15_000)
    r.agent.get_by_label("Type a reply…").fill("Yes, I can see you")
    r.agent.get_by_role("button", name="Send").click()
    visitor_log = r.consumer.get_by_role("log").locator(".lpcall-msg-agent .lpcall-msg-text")
    expect(visitor_log.last).to_have_text("Yes, I can see you", timeout=15_000)
    r.agent.click(".lpcall-call .lpcall-hangup")
