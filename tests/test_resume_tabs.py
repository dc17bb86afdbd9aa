"""Tabs (issue 5): a second tab of the same visitor neither steals nor duplicates the call.

The rule (README "Resume"): the call belongs to the tab whose sessionStorage holds it. Other tabs
of the visitor (same localStorage identity) get no `sessionResume`, ignore `sliderOpened`, and a
signaling join from them is refused with CALL_IN_OTHER_TAB while the owning tab is alive. A tab
the browser *duplicated* (its sessionStorage is a copy) finds the original over a BroadcastChannel,
forgets the copied call and takes a new tab id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from resumekit import Rig
from support import wait_for

from flask_lpcall.state import get_state


@pytest.fixture
def rig(browser: Any, live_server: Any) -> Iterator[Rig]:
    r = Rig(browser, live_server)
    yield r
    r.close()


def _call_undisturbed(r: Rig, agent_peers: int) -> None:
    now = r.newest(r.agent)["framesDecoded"]
    r.wait_frames(r.agent, above=now + 5, min_index=agent_peers - 1)
    assert r.peer_count(r.agent) == agent_peers  # no renegotiation, no new connection
    assert r.engine(r.agent)["peerPresent"] is True
    assert r.engine(r.consumer)["status"] == "connected"
    assert not r.events(r.consumer, "cobrowse", "sessionError")


def test_a_second_tab_sees_no_resume_and_cannot_join_the_call(rig: Rig) -> None:
    sid = rig.start("VIDEO_CALL")
    agent_peers = rig.peer_count(rig.agent)
    second = rig.consumer_ctx.new_page()  # same visitor: same localStorage identity, own sessionStorage
    second.goto(rig.server.url + "/support")
    second.wait_for_function("window.__lpcallConsumer !== undefined")
    second.evaluate("window.__lpcallConsumer")  # the consumer app has loaded (config, window, call app)
    assert second.evaluate("sessionStorage.getItem('lpcall.call')") is None
    assert second.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')")
    assert rig.events(second, "cobrowse") == []
    assert second.locator(".lpcall-call").count() == 0
    # even with a valid token for the call (the visitor's own), this tab's join is refused
    refused = second.evaluate(
        """async (sid) => {
        const id = JSON.parse(localStorage.getItem('lpcall.consumer'));
        const r = await fetch('/lpcall/api/call/resume', {method: 'POST', headers: {'Content-Type': 'application/json',
          Authorization: 'Bearer ' + id.token}, body: JSON.stringify({serviceId: sid})});
        const join = await r.json();
        const {CallEngine} = await import('/lpcall/static/lpcall/engine.js');
        const e = new CallEngine({serviceId: sid, token: join.token, mode: join.mode, role: 'consumer', iceServers: []});
        try { await e.start(); return 'joined'; } catch (err) { return err.code; } finally { e.destroy(); }
    }""",
        sid,
    )
    assert refused == "CALL_IN_OTHER_TAB"
    _call_undisturbed(rig, agent_peers)
    # the owning tab still resumes after a reload (its own tab id)
    rig.consumer.reload()
    wait_for(lambda: rig.events(rig.consumer, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
    rig.wait_frames(rig.consumer)
    assert rig.events(second, "cobrowse") == []


def test_a_duplicated_tab_forgets_the_copied_call(rig: Rig) -> None:
    sid = rig.start("VIDEO_CALL")
    agent_peers = rig.peer_count(rig.agent)
    copied = rig.consumer.evaluate("JSON.stringify(Object.fromEntries(Object.entries(sessionStorage)))")
    original_tab = json.loads(copied)["lpcall.tab"]
    assert json.loads(json.loads(copied)["lpcall.call"])["serviceId"] == sid
    # what "Duplicate tab" does: a new tab starting with a copy of the sessionStorage
    page = rig.consumer_ctx.new_page()
    page.add_init_script(f"for (const [k, v] of Object.entries({copied})) sessionStorage.setItem(k, v);")
    page.goto(rig.server.url + "/")
    wait_for(lambda: page.evaluate("sessionStorage.getItem('lpcall.call')") is None, timeout=10, message="copy forgotten")
    assert page.evaluate("sessionStorage.getItem('lpcall.tab')") not in (None, original_tab)
    assert rig.events(page, "cobrowse") == []
    assert page.locator(".lpcall-call").count() == 0
    _call_undisturbed(rig, agent_peers)
    assert rig.stored_call(rig.consumer)["serviceId"] == sid


def test_a_second_workspace_tab_of_the_agent_shows_the_call_is_elsewhere(rig: Rig) -> None:
    sid = rig.start("VIDEO_CALL")
    consumer_peers = rig.peer_count(rig.consumer)
    agent_peers = rig.peer_count(rig.agent)
    second = rig.agent.context.new_page()  # same agent session, own sessionStorage (tab id)
    second.goto(f"{rig.server.url}/lpcall/agent/")
    second.click(".lpcall-mine .lpcall-conv-open")  # a new tab has no conversation open yet
    second.wait_for_selector(".lpcall-agent-call .lpcall-call .lpcall-call-error:not([hidden])")
    texts = get_state(rig.app).texts
    assert second.inner_text(".lpcall-agent-call .lpcall-call-error") == texts["error.CALL_IN_OTHER_TAB"]
    assert second.evaluate("(window.__lpcallEngines || []).every(e => e._destroyed && !e.localStream.active)")
    # the first tab and the visitor did not notice
    _call_undisturbed(rig, agent_peers)
    assert rig.peer_count(rig.consumer) == consumer_peers
    assert rig.engine(rig.agent)["serviceId"] == sid


def test_a_duplicated_workspace_tab_takes_the_call_and_the_old_one_lets_go(browser: Any, live_server: Any) -> None:
    """The agent duplicates the workspace tab (same tab id in the copied sessionStorage): the newer
    socket takes the role, the older tab is told the call is open in another tab and does not fight back."""
    r = Rig(browser, live_server, LPCALL_HEARTBEAT_INTERVAL=0.5)
    try:
        sid = r.start("VIDEO_CALL")
        copied = r.agent.evaluate("JSON.stringify(Object.fromEntries(Object.entries(sessionStorage)))")
        old = r.agent
        dup = old.context.new_page()
        dup.add_init_script(f"for (const [k, v] of Object.entries({copied})) sessionStorage.setItem(k, v);")
        consumer_peers = r.peer_count(r.consumer)
        dup.goto(f"{r.server.url}/lpcall/agent/")
        old.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]", state="attached", timeout=15_000)
        texts = get_state(r.app).texts
        assert old.inner_text(".lpcall-agent-call .lpcall-call-error") == texts["error.CALL_IN_OTHER_TAB"]
        r.agent = dup
        r.wait_frames(dup)
        r.wait_frames(r.consumer, min_index=consumer_peers)
        # settled: no tug of war (no further rejoin) while the media keeps flowing
        settled = r.peer_count(r.consumer)
        now = r.newest(r.consumer)["framesDecoded"]
        r.wait_frames(r.consumer, above=now + 20, min_index=settled - 1)
        assert r.peer_count(r.consumer) == settled
        assert r.engine(dup)["serviceId"] == sid and r.engine(dup)["status"] == "connected"
        assert not r.events(r.consumer, "cobrowse", "sessionError")
    finally:
        r.close()
