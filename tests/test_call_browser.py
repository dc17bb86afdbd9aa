"""Calls end to end in Chromium: the example site's engagement window, the agent workspace, real media.

One Chromium for the module, launched *without* ``--use-fake-ui-for-media-stream`` so that
camera/microphone permission is real: contexts that are granted ``camera``/``microphone`` get
the fake devices, a context without the grant is denied (NO_CAMERA_ACCESS). Two contexts per
call (agent, consumer); TTLs are short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callkit import call_keys
from example_site.app import create_app
from flask_lpcall.extension import get_state
from support import CHROMIUM, CHROMIUM_ARGS, INBOUND_STATS_JS, require, wait_for

MEDIA = ["camera", "microphone"]

# Runs before the page's scripts: flags the engine's test hook and records every lpTag
# publish (lptag.js keeps a pre-existing lpTag.events and forwards publishes to it).
INIT = """
window.__lpcallTest = true;
window.__events = [];
window.lpTag = window.lpTag || {};
window.lpTag.events = {publish: function (app, ev, data) {
  window.__events.push({app: app, ev: ev, data: JSON.parse(JSON.stringify(data || null))});
}};
"""

NO_WEBRTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require("chromium", Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


class Rig:
    """A live example site, an agent page and a consumer page."""

    def __init__(self, chromium: Any, live_server: Any, **config: Any) -> None:
        config.setdefault("LPCALL_REPORT_DB", ":memory:")
        self.app = create_app(**config)
        self.server = live_server(self.app)
        self.chromium = chromium
        self.contexts: list[Any] = []
        self.agent: Any = None
        self.consumer: Any = None

    def page(self, permissions: list[str] | None = MEDIA, init: str = "") -> Any:
        ctx = self.chromium.new_context(permissions=permissions or [], viewport={"width": 1000, "height": 800})
        self.contexts.append(ctx)
        ctx.add_init_script(INIT + init)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        return page

    def open_agent(self, init: str = "", permissions: list[str] | None = MEDIA) -> Any:
        page = self.agent = self.page(permissions, init)
        page.goto(f"{self.server.url}/lpcall/agent/login")
        page.fill("#lpcall-username", "bob")
        page.fill("#lpcall-password", "bob")
        page.click(".lpcall-login-form [type=submit]")
        page.wait_for_selector("#lpcall-agent")
        return page

    def open_consumer(self, init: str = "", permissions: list[str] | None = MEDIA, path: str = "/") -> Any:
        page = self.consumer = self.page(permissions, init)
        page.goto(self.server.url + path)
        page.click(".lpcall-launcher")
        page.fill("#lpcall-visitor-name", "Vera")
        page.click(".lpcall-start [type=submit]")
        page.wait_for_selector(".lpcall-composer:not([hidden])")
        return page

    def invite(self, mode: str) -> None:
        self.agent.click(".lpcall-mine .lpcall-conv-open")
        self.agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")

    def start(self, mode: str = "VIDEO_CALL", agent_init: str = "", consumer_init: str = "", consumer_permissions: list[str] | None = MEDIA) -> None:
        self.open_agent(agent_init)
        self.open_consumer(consumer_init, consumer_permissions)
        self.invite(mode)
        self.consumer.click(".lpcall-invitation .lpcall-accept")

    def stats(self, page: Any) -> dict[str, Any]:
        return page.evaluate(INBOUND_STATS_JS)  # type: ignore[no-any-return]

    def wait_media(self, video: bool = True) -> None:
        for page in (self.agent, self.consumer):
            if video:
                wait_for(lambda p=page: self.stats(p)["framesDecoded"] > 0, timeout=30, message="remote frames decoded")
            wait_for(lambda p=page: self.stats(p)["audioBytes"] > 0, timeout=30, message="remote audio received")

    def events(self, page: Any, app: str | None = None, ev: str | None = None) -> list[dict[str, Any]]:
        out = page.evaluate("window.__events")
        return [e for e in out if (app is None or e["app"] == app) and (ev is None or e["ev"] == ev)]

    def transcript(self) -> list[str]:
        state = get_state(self.app)
        convs = state.services["conversations"]
        out: list[str] = []
        for conv_id in state.store.members("convs:open") | {k.split(":")[1] for k in state.store.keys("conv:") if k.count(":") == 1}:
            out += [e.get("systemKey") for e in convs.events(conv_id) if e.get("role") == "SYSTEM"]
        return out

    def wait_closed_everywhere(self, system_key: str) -> None:
        wait_for(lambda: call_keys(self.app) == [], timeout=15, message="no call keys in the store")
        wait_for(lambda: system_key in self.transcript(), timeout=10, message=f"system message {system_key}")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")
        # both sides show it in their transcript too
        self.consumer.wait_for_selector(f".lpcall-transcript li.lpcall-msg-system >> nth=-1")

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def rig(chromium: Any, live_server: Any) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(**config: Any) -> Rig:
        r = Rig(chromium, live_server, **config)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


def consumer_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => { const c = window.__lpcallCallApp && window.__lpcallCallApp.current;
        const e = c && c.engine; return e ? {status: e.status, remote: e.remoteState, closed: e.closedInfo} : null; }"""
    )


def test_video_call_decodes_frames_on_both_sides_and_agent_hangs_up(rig: Any) -> None:
    r = rig()
    r.start("VIDEO_CALL")
    r.wait_media(video=True)
    consumer = r.consumer
    # the container's loading indicator is replaced by the call UI once connected
    consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call.lpcall-video")
    assert consumer.locator(".lp_cobrowse_callscreen_container .lpcall-loading").count() == 0
    assert consumer.locator(".lpcall-call video.lpcall-remote").count() == 1
    assert consumer.locator(".lpcall-call video.lpcall-local").count() == 1
    for page in (r.agent, consumer):
        for sel in (".lpcall-mute", ".lpcall-camera", ".lpcall-hangup"):
            btn = page.locator(f".lpcall-call {sel}")
            assert btn.get_attribute("aria-label"), sel
        assert page.locator(".lpcall-call .lpcall-switch").is_hidden()  # one fake camera
    wait_for(lambda: consumer.locator(".lpcall-timer").inner_text() not in ("", "0:00"), timeout=5)
    connected = r.events(consumer, "lpCall", "callConnected")
    assert connected and connected[0]["data"]["mode"] == "VIDEO_CALL"
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")
    consumer.wait_for_selector(".lpcall-call[data-status=closed]")
    ended = r.events(consumer, "lpCall", "callEnded")
    assert ended and ended[0]["data"]["reason"] == "hangup_agent"
    assert consumer.evaluate("sessionStorage.getItem('lpcall.call')") is None
