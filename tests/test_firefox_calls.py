"""Calls between Firefox and Chromium, both ways: Firefox ESR visitor × Chromium agent, and Chromium
visitor × Firefox agent.

Firefox is Debian's ``firefox-esr``, driven over WebDriver BiDi (tests/firefoxkit.py; one Firefox
process per participant), with fake camera/microphone; Chromium is Debian's, through Playwright,
launched without the fake-UI flag so that a context without the camera/microphone grant is refused,
as a visitor who says no. Everything runs in the session's private network namespace, whose veth
pair and default route let Firefox gather ICE candidates. A call passes only when both sides decode
the other's media.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from firefoxkit import FIREFOX, FirefoxBrowser
from resumekit import INIT, Rig, call_keys
from support import CHROMIUM, CHROMIUM_ARGS, require, wait_for

from flask_lpcall.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.firefox]

MEDIA = ["camera", "microphone"]
PAIRS = [("firefox", "chromium"), ("chromium", "firefox")]  # (visitor, agent)


@pytest.fixture(scope="module")
def firefox() -> Iterator[FirefoxBrowser]:
    require("firefox-esr", Path(FIREFOX).exists() or shutil.which(FIREFOX) is not None, "apt-get install firefox-esr")
    b = FirefoxBrowser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    # no fake-UI flag: permissions are real (granted per context), as in test_call_browser
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    yield b
    b.close()


class MixedRig(Rig):
    """resumekit's rig with one engine for the visitor and another for the agent."""

    def __init__(self, visitor: Any, agent: Any, live_server: Any, **config: Any) -> None:
        super().__init__(agent, live_server, **config)
        self.engines = {"visitor": visitor, "agent": agent}
        self.visitor_permissions: list[str] = MEDIA

    def context_for(self, who: str) -> Any:
        browser = self.engines[who]
        permissions = self.visitor_permissions if who == "visitor" else MEDIA
        ctx = browser.new_context(viewport={"width": 1000, "height": 800}, permissions=permissions)
        ctx.add_init_script(INIT)
        if not isinstance(browser, FirefoxBrowser):
            self.contexts.append(ctx)
        return ctx

    def open_agent(self) -> Any:
        self.context = lambda: self.context_for("agent")  # type: ignore[method-assign]
        return super().open_agent()

    def open_consumer(self, path: str = "/") -> Any:
        self.context = lambda: self.context_for("visitor")  # type: ignore[method-assign]
        return super().open_consumer(path)

    def invite(self, mode: str) -> None:
        self.agent.click(".lpcall-mine .lpcall-conv-open")
        self.agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")

    def wait_audio_both_ways(self) -> None:
        for page in (self.agent, self.consumer):
            base = self.newest(page)["audioBytes"]
            self.wait_frames(page, video=False, above=base + 1000)

    def wait_closed(self, reason: str) -> None:
        wait_for(lambda: call_keys(self.app) == [], timeout=15, message="no call keys in the store")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")
        ended = wait_for(lambda: self.events(self.consumer, "lpCall", "callEnded"), timeout=10, message="callEnded")
        assert ended[0]["data"]["reason"] == reason
        assert self.consumer.evaluate("sessionStorage.getItem('lpcall.call')") is None

    def js_errors(self) -> list[str]:
        """Console errors of the Firefox side(s) (log entries of level error)."""
        return [e for p in (self.agent, self.consumer) if hasattr(p, "errors") for e in p.errors()]


@pytest.fixture(params=PAIRS, ids=lambda p: f"{p[0]}-visitor-{p[1]}-agent")
def rig(request: Any, firefox: FirefoxBrowser, chromium: Any, live_server: Any) -> Iterator[Any]:
    visitor, agent = ({"firefox": firefox, "chromium": chromium}[name] for name in request.param)
    rigs: list[MixedRig] = []

    def make(**config: Any) -> MixedRig:
        r = MixedRig(visitor, agent, live_server, **config)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()
    firefox.close()  # one Firefox per participant and test


def test_video_call_media_both_ways_mute_camera_off_and_agent_hangs_up(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    assert sid
    for page in (r.agent, r.consumer):
        base = r.newest(page)["framesDecoded"]
        r.wait_frames(page, above=base + 5)
    r.wait_audio_both_ways()
    # the visitor mutes and turns the camera off: the agent sees both
    r.consumer.click(".lpcall-call .lpcall-mute")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])")
    r.consumer.click(".lpcall-call .lpcall-camera")
    wait_for(lambda: r.engine(r.consumer)["cameraOff"] is True, timeout=10, message="visitor camera off")
    r.consumer.click(".lpcall-call .lpcall-camera")
    r.consumer.click(".lpcall-call .lpcall-mute")
    wait_for(lambda: r.engine(r.consumer)["muted"] is False, timeout=10, message="visitor unmuted")
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed("hangup_agent")
    assert r.js_errors() == []


def test_voice_call_audio_both_ways_no_video_and_visitor_hangs_up(rig: Any) -> None:
    r = rig()
    r.start("VOICE_CALL")
    r.wait_audio_both_ways()
    for page in (r.agent, r.consumer):
        assert r.newest(page)["framesDecoded"] == 0
        assert page.evaluate("document.querySelectorAll('.lpcall-call.lpcall-video').length") == 0
    r.consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed("hangup_consumer")


def test_decline(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer()
    r.invite("VIDEO_CALL")
    r.consumer.click(".lpcall-invitation .lpcall-decline")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")
    offered = r.events(r.consumer, "lpCoBrowse", "cobrowseOffered")
    declined = r.events(r.consumer, "lpCoBrowse", "cobrowseDeclined")
    assert offered and offered[0]["data"]["mode"] == "VIDEO_CALL"
    assert declined and declined[0]["data"]["serviceId"] == offered[0]["data"]["serviceId"]
    assert r.consumer.evaluate("document.querySelectorAll('.lpcall-invitation, .lpcall-call').length") == 0


def test_visitor_reload_resumes_the_call(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    before = r.peer_count(r.consumer)
    agent_frames = r.newest(r.agent)["framesDecoded"]
    r.consumer.reload()
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionResume"), timeout=15, message="sessionResume")
    r.wait_frames(r.consumer)  # the reloaded page's new peer connection decodes the agent
    r.wait_frames(r.agent, above=agent_frames + 10)  # and the agent sees the visitor again
    assert r.engine(r.consumer)["serviceId"] == sid
    assert before >= 1 and not r.events(r.consumer, "cobrowse", "sessionError")
    r.consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed("hangup_consumer")


def test_agent_reload_gets_the_call_back(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    consumer_before = r.peer_count(r.consumer)
    r.agent.reload()
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call.lpcall-video")
    r.wait_frames(r.agent)
    r.wait_frames(r.consumer, min_index=consumer_before)
    assert r.engine(r.agent)["serviceId"] == sid
    assert not r.events(r.consumer, "cobrowse", "sessionError")
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed("hangup_agent")


def test_no_camera_access(rig: Any) -> None:
    r = rig()
    r.visitor_permissions = []
    r.open_agent()
    r.open_consumer()
    r.invite("VIDEO_CALL")
    r.consumer.click(".lpcall-invitation .lpcall-accept")
    err = wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionError"), timeout=20, message="sessionError")[0]["data"]
    texts = get_state(r.app).texts
    assert err == {"id": "NO_CAMERA_ACCESS", "msg": texts["error.NO_CAMERA_ACCESS"]}
    # the call waits while "continue on my phone" is offered (issue 18); the visitor ends it instead
    r.consumer.click(".lpcall-no-camera .lpcall-no-camera-end")
    r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    assert texts["error.NO_CAMERA_ACCESS"] in r.agent.evaluate("document.querySelector('.lpcall-call .lpcall-call-error').innerText")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
