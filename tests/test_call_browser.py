"""Calls end to end in Chromium: the example site's engagement window, the agent workspace, real media.

One Chromium for the module, launched *without* ``--use-fake-ui-for-media-stream`` so that
camera/microphone permission is real: contexts that are granted ``camera``/``microphone`` get
the fake devices, a context without the grant is denied (NO_CAMERA_ACCESS). Two contexts per
call (agent, consumer); TTLs are short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callkit import call_keys
from playwright.sync_api import Error as PlaywrightError
from support import CHROMIUM, CHROMIUM_ARGS, INBOUND_STATS_JS, wait_for

from example_site.app import create_app
from flask_lpcall.state import get_state

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

DIAGNOSE_JS = """() => ({
  engines: (window.__lpcallEngines || []).map(e => ({status: e.status, role: e.role, peer: e.peerPresent,
    session: e.sessionState, closed: e.closedInfo, trace: (e.trace || []).filter(t => !t.includes('candidate')).join(' | '), cands: (e.trace || []).filter(t => t.includes('candidate')).length, ws: e.ws && e.ws.readyState, local: e.localStream && e.localStream.getTracks().length})),
  peers: (window.__lpcallPeers || []).map(pc => ({conn: pc.connectionState, ice: pc.iceConnectionState, sig: pc.signalingState,
    tr: pc.getTransceivers().map(t => `${t.mid}:${t.direction}:${t.currentDirection}:${t.receiver.track && t.receiver.track.kind}`)})),
})"""

NO_WEBRTC = "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    # no fake-UI flag: permissions are real; two fake cameras (switch camera); a host name that
    # resolves to loopback but is not a secure context (http://insecure.test)
    args = [a for a in CHROMIUM_ARGS if a not in ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")]
    args += ["--use-fake-device-for-media-stream=device-count=2", "--host-resolver-rules=MAP insecure.test 127.0.0.1"]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
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

    def page(self, permissions: list[str] | None = MEDIA, init: str = "", phone: bool = False) -> Any:
        size = {"width": 360, "height": 740} if phone else {"width": 1000, "height": 800}
        ctx = self.chromium.new_context(permissions=permissions or [], viewport=size, is_mobile=phone, has_touch=phone)
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

    def open_consumer(
        self, init: str = "", permissions: list[str] | None = MEDIA, path: str = "/", phone: bool = False, host: str = "localhost"
    ) -> Any:
        page = self.consumer = self.page(permissions, init, phone)
        page.goto(f"http://{host}:{self.server.port}{path}")
        page.click(".lpcall-launcher")
        page.fill("#lpcall-visitor-name", "Vera")
        page.click(".lpcall-start [type=submit]")
        page.wait_for_selector(".lpcall-composer:not([hidden])")
        return page

    def invite(self, mode: str) -> None:
        self.agent.click(".lpcall-mine .lpcall-conv-open")
        self.agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")

    def start(
        self, mode: str = "VIDEO_CALL", agent_init: str = "", consumer_init: str = "", consumer_permissions: list[str] | None = MEDIA, phone: bool = False
    ) -> None:
        self.open_agent(agent_init)
        self.open_consumer(consumer_init, consumer_permissions, phone=phone)
        self.invite(mode)
        self.consumer.click(".lpcall-invitation .lpcall-accept")

    def stats(self, page: Any) -> dict[str, Any]:
        return page.evaluate(INBOUND_STATS_JS)  # type: ignore[no-any-return]

    def wait_media(self, video: bool = True) -> None:
        try:
            for page in (self.agent, self.consumer):
                if video:
                    wait_for(lambda p=page: self.stats(p)["framesDecoded"] > 0, timeout=30, message="remote frames decoded")
                wait_for(lambda p=page: self.stats(p)["audioBytes"] > 0, timeout=30, message="remote audio received")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent: {self.diagnose(self.agent)}\nconsumer: {self.diagnose(self.consumer)}") from None

    @staticmethod
    def diagnose(page: Any) -> Any:
        return page.evaluate(DIAGNOSE_JS)

    def events(self, page: Any, app: str | None = None, ev: str | None = None) -> list[dict[str, Any]]:
        out = page.evaluate("window.__events")
        return [e for e in out if (app is None or e["app"] == app) and (ev is None or e["ev"] == ev)]

    def transcript(self) -> list[str]:
        state = get_state(self.app)
        convs = state.conversations
        out: list[str] = []
        for conv_id in state.store.members("convs:open") | {k.split(":")[1] for k in state.store.keys("conv:") if k.count(":") == 1}:
            out += [e.get("systemKey") for e in convs.events(conv_id) if e.get("role") == "SYSTEM"]
        return out

    def wait_closed_everywhere(self, system_key: str) -> None:
        wait_for(lambda: call_keys(self.app) == [], timeout=15, message="no call keys in the store")
        wait_for(lambda: system_key in self.transcript(), timeout=10, message=f"system message {system_key}")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")
        # both sides show it in their transcript too
        self.consumer.wait_for_selector(".lpcall-transcript li.lpcall-msg-system >> nth=-1")

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


def test_video_call_decodes_frames_on_both_sides_and_agent_hangs_up(rig: Any, artifacts_dir: Path) -> None:
    r = rig()
    r.start("VIDEO_CALL")
    r.wait_media(video=True)
    consumer = r.consumer
    consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call")
    consumer.screenshot(path=str(artifacts_dir / "call-video-consumer.png"))
    r.agent.screenshot(path=str(artifacts_dir / "call-video-agent.png"))
    # the container's loading indicator is replaced by the call UI once connected
    consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call.lpcall-video")
    assert consumer.locator(".lp_cobrowse_callscreen_container .lpcall-loading").count() == 0
    assert consumer.locator(".lpcall-call video.lpcall-remote").count() == 1
    assert consumer.locator(".lpcall-call video.lpcall-local").count() == 1
    for page in (r.agent, consumer):  # the remote picture is on screen, not only decoded
        wait_for(lambda p=page: p.evaluate(REMOTE_VIDEO_WIDTH_JS) > 0, timeout=10, message="remote video shown")
    for page in (r.agent, consumer):
        for sel in (".lpcall-mute", ".lpcall-camera", ".lpcall-hangup"):
            btn = page.locator(f".lpcall-call {sel}")
            assert btn.get_attribute("aria-label"), sel
        assert page.locator(".lpcall-call .lpcall-switch").is_visible()  # two fake cameras
    wait_for(lambda: consumer.locator(".lpcall-timer").inner_text() not in ("", "0:00"), timeout=5)
    # switch camera: the consumer's camera changes on the same peer connection (replaceTrack)
    label = "window.__lpcallEngines.at(-1).localStream.getVideoTracks()[0].label"
    before = consumer.evaluate(label)
    consumer.click(".lpcall-call .lpcall-switch")
    wait_for(lambda: consumer.evaluate(label) != before, timeout=10, message="camera switched")
    sent = """() => window.__lpcallEngines.at(-1).pc.getSenders().find(s => s.track && s.track.kind === 'video').track.label"""
    assert consumer.evaluate(sent) == consumer.evaluate(label)  # the peer connection sends the new camera
    # Chromium's second fake camera delivers Y16 (depth) frames, which are not sent as video:
    # switch back to the first one and see the agent decode it again through the same connection
    consumer.click(".lpcall-call .lpcall-switch")
    wait_for(lambda: consumer.evaluate(label) == before, timeout=10, message="camera switched back")
    assert consumer.evaluate(sent) == before
    frames = r.stats(r.agent)["framesDecoded"]
    wait_for(lambda: r.stats(r.agent)["framesDecoded"] > frames + 2, timeout=20, message="video after the switch")
    connected = r.events(consumer, "lpCall", "callConnected")
    assert connected and connected[0]["data"]["mode"] == "VIDEO_CALL"
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")
    consumer.wait_for_selector(".lpcall-call[data-status=closed]")
    ended = r.events(consumer, "lpCall", "callEnded")
    assert ended and ended[0]["data"]["reason"] == "hangup_agent"
    assert consumer.evaluate("sessionStorage.getItem('lpcall.call')") is None


REMOTE_VIDEO_WIDTH_JS = "(document.querySelector('.lpcall-call video.lpcall-remote') || {}).videoWidth || 0"
#: the visitor's window listens on the call and holds the agent's offer, unanswered
OFFER_KEPT_JS = """() => (window.__lpcallEngines || []).some((e) => e._waiting && e.pc && e.pc.signalingState === 'have-remote-offer')"""


def test_the_window_listens_while_the_invitation_is_shown_and_sends_nothing(rig: Any) -> None:
    """PROTOCOL §5 "Before the Accept": the offer is there before the visitor decides; no camera,
    no answer, no candidate of the visitor's before the Accept; after it the call runs as usual."""
    r = rig()
    r.open_agent()
    r.open_consumer()
    r.invite("VIDEO_CALL")
    consumer = r.consumer
    consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")
    wait_for(lambda: consumer.evaluate(OFFER_KEPT_JS), timeout=20, message="the window holds the agent's offer")
    listener = "window.__lpcallEngines.at(-1)"
    assert consumer.evaluate(f"{listener}.localStream") is None  # no camera before the Accept
    assert consumer.evaluate(f"{listener}.pc.localDescription") is None  # nothing answered
    agent_pc = "window.__lpcallEngines.at(-1).pc.signalingState"
    assert r.agent.evaluate(agent_pc) == "have-local-offer"  # the agent still waits for an answer
    calls = get_state(r.app).calls
    assert calls.get(consumer.evaluate(f"{listener}.serviceId")).state == "INVITED"
    consumer.click(".lpcall-invitation .lpcall-accept")
    r.wait_media(video=True)
    for page in (r.agent, consumer):  # tracks that came before the call UI are shown in it
        wait_for(lambda p=page: p.evaluate(REMOTE_VIDEO_WIDTH_JS) > 0, timeout=10, message="remote video shown")
    consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def cobrowse_dialog(r: Rig) -> dict[str, Any] | None:
    state = get_state(r.app)
    convs = state.conversations
    docs = [convs.get(k.split(":")[1]) for k in state.store.keys("conv:") if k.count(":") == 1]
    dialogs = [d["cobrowse"] for d in docs if d and d.get("cobrowse")]
    return dialogs[-1] if dialogs else None


def test_malformed_signaling_frames_get_an_error_and_media_keeps_flowing(rig: Any) -> None:
    r = rig()
    r.start("VIDEO_CALL")
    r.wait_media()
    errors = r.consumer.evaluate(
        """async () => {
        const e = window.__lpcallCallApp.current.engine, got = [];
        e.addEventListener('signalingerror', (ev) => got.push(ev.detail));
        for (const f of ['{bad json', JSON.stringify({type: 'description', description: {type: 'nope'}}),
                         JSON.stringify({type: 'state', muted: 'yes', cameraOff: false})]) e.ws.send(f);
        const t0 = Date.now();
        while (got.length < 3 && Date.now() - t0 < 5000) await new Promise(r => setTimeout(r, 50));
        return got;
    }"""
    )
    assert [e["field"] for e in errors] == ["(frame)", "description.type", "muted"]
    before = r.stats(r.consumer)["framesDecoded"]
    wait_for(lambda: r.stats(r.consumer)["framesDecoded"] > before + 5, timeout=10, message="frames keep coming")
    assert consumer_state(r.consumer)["status"] == "connected"
    r.consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def test_voice_call_has_audio_both_ways_and_no_video_then_consumer_hangs_up(rig: Any, artifacts_dir: Path) -> None:
    r = rig()
    r.start("VOICE_CALL")
    r.wait_media(video=False)
    r.consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call")
    r.consumer.screenshot(path=str(artifacts_dir / "call-voice-consumer.png"))
    for page in (r.agent, r.consumer):
        s = r.stats(page)
        assert s["videoTracks"] == 0 and s["framesDecoded"] == 0
        assert page.evaluate("window.__lpcallPeers.every(pc => pc.getTransceivers().every(t => !t.receiver.track || t.receiver.track.kind === 'audio'))")
        assert page.locator(".lpcall-call.lpcall-voice .lpcall-avatar").is_visible()
        assert page.locator(".lpcall-call .lpcall-camera").count() == 0
        assert page.locator(".lpcall-call video").count() == 0
        assert page.evaluate("window.__lpcallEngines.at(-1).localStream.getVideoTracks().length") == 0  # no camera requested
    r.consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-voice")
    r.consumer.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")
    ended = r.events(r.consumer, "lpCall", "callEnded")
    assert ended[0]["data"]["reason"] == "hangup_consumer"


def test_mute_and_camera_off_are_seen_by_the_remote_side(rig: Any) -> None:
    r = rig()
    r.start("VIDEO_CALL", phone=True)  # the consumer is on a phone
    r.wait_media()
    r.consumer.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call")
    width = r.consumer.evaluate("document.documentElement.clientWidth")
    for sel in (".lpcall-call", ".lpcall-remote", ".lpcall-local", ".lpcall-mute", ".lpcall-camera", ".lpcall-hangup", ".lpcall-timer"):
        box = r.consumer.locator(f".lpcall-call {sel}" if sel != ".lpcall-call" else sel).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (sel, box, width)
        if sel in (".lpcall-mute", ".lpcall-hangup"):
            assert box["height"] >= 44, (sel, box)  # touch-sized
    r.consumer.click(".lpcall-call .lpcall-mute")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])")
    assert "Vera" in r.agent.inner_text(".lpcall-call .lpcall-remote-muted")
    assert r.consumer.get_attribute(".lpcall-call .lpcall-mute", "aria-pressed") == "true"
    assert r.consumer.get_attribute(".lpcall-call .lpcall-mute", "aria-label") == "Unmute microphone"
    r.agent.focus(".lpcall-call .lpcall-camera")
    r.agent.keyboard.press("Enter")  # keyboard-reachable
    r.consumer.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])")
    assert r.consumer.locator(".lpcall-call.lpcall-remote-camera-off .lpcall-avatar").is_visible()
    r.consumer.click(".lpcall-call .lpcall-mute")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted[hidden]", state="attached")
    r.agent.click(".lpcall-call .lpcall-camera")
    r.consumer.wait_for_selector(".lpcall-call .lpcall-remote-camera-off[hidden]", state="attached")
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def test_both_camera_off_at_start_options(rig: Any) -> None:
    r = rig(LPCALL_AGENT_CAMERA_OFF_AT_START=True, LPCALL_CONSUMER_CAMERA_OFF_AT_START=True)
    r.start("VIDEO_CALL")
    r.wait_media(video=False)
    for page, peer in ((r.agent, "Vera"), (r.consumer, "Bob")):
        page.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])")
        assert peer in page.inner_text(".lpcall-call .lpcall-remote-camera-off")
        assert page.get_attribute(".lpcall-call .lpcall-camera", "aria-pressed") == "true"
        assert page.get_attribute(".lpcall-call .lpcall-camera", "aria-label") == "Turn camera on"
        assert page.evaluate("window.__lpcallEngines.at(-1).localStream.getVideoTracks().every(t => !t.enabled)")
    r.consumer.click(".lpcall-call .lpcall-camera")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off[hidden]", state="attached")
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def test_one_option_alone_turns_only_that_camera_off(rig: Any) -> None:
    r = rig(LPCALL_CONSUMER_CAMERA_OFF_AT_START=True)
    r.start("VIDEO_CALL")
    r.wait_media(video=False)
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])")
    assert r.consumer.locator(".lpcall-call .lpcall-remote-camera-off").is_hidden()
    assert r.agent.get_attribute(".lpcall-call .lpcall-camera", "aria-pressed") == "false"
    wait_for(lambda: r.stats(r.consumer)["framesDecoded"] > 0, timeout=20, message="agent video reaches the consumer")
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")


def test_decline(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer()
    r.invite("VIDEO_CALL")
    r.consumer.click(".lpcall-invitation .lpcall-decline")
    r.wait_closed_everywhere("system.declined")
    assert cobrowse_dialog(r)["metaData"] == {"sessionState": "CLOSED"}
    assert r.consumer.locator(".lpcall-invitation").count() == 0
    assert r.consumer.locator(".lpcall-call").count() == 0
    offered = r.events(r.consumer, "lpCoBrowse", "cobrowseOffered")
    assert offered and offered[0]["data"]["mode"] == "VIDEO_CALL"


def test_agent_cancels_the_invitation(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer()
    r.invite("VOICE_CALL")
    r.consumer.wait_for_selector(".lpcall-invitation")
    hang = r.agent.locator(".lpcall-call .lpcall-hangup")
    assert hang.get_attribute("aria-label") == "Cancel invitation"
    hang.click()
    r.wait_closed_everywhere("system.cancelled")
    r.consumer.wait_for_selector(".lpcall-invitation", state="detached")
    assert cobrowse_dialog(r)["metaData"] == {"sessionState": "CLOSED"}


def test_invitation_expires(rig: Any) -> None:
    r = rig(LPCALL_INVITE_TTL=2)
    r.open_agent()
    r.open_consumer()
    r.invite("VIDEO_CALL")
    r.consumer.wait_for_selector(".lpcall-invitation")
    r.wait_closed_everywhere("system.expired")
    r.consumer.wait_for_selector(".lpcall-invitation", state="detached")
    assert cobrowse_dialog(r)["metaData"] == {"sessionState": "CLOSED"}


def _assert_session_error(r: Rig, error_id: str) -> None:
    wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionError"), timeout=20, message="sessionError")
    err = r.events(r.consumer, "cobrowse", "sessionError")[0]["data"]
    texts = get_state(r.app).texts
    assert err == {"id": error_id, "msg": texts[f"error.{error_id}"]}
    r.consumer.wait_for_selector(f".lp_cobrowse_callscreen_container :text('{texts[f'error.{error_id}'][:30]}')")
    if error_id == "NO_CAMERA_ACCESS":  # the call waits while "continue on my phone" is offered (issue 18)
        r.consumer.click(".lpcall-no-camera .lpcall-no-camera-end")
    # the agent is told too, and the call closes for both with the failure in the transcript
    try:
        r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    except PlaywrightError as exc:
        raise AssertionError(f"{exc}\nagent: {r.diagnose(r.agent)} {r.agent.inner_html('.lpcall-agent-call')}") from None
    assert texts[f"error.{error_id}"] in r.agent.inner_text(".lpcall-call .lpcall-call-error")
    r.wait_closed_everywhere("system.failed")


# what, inside the call container, is drawn over the chat's input (the composer)
OVER_COMPOSER_JS = """() => { const c = document.querySelector('.lpcall-composer').getBoundingClientRect();
  return [...document.querySelectorAll('.lp_cobrowse_callscreen_container *')].filter((n) => {
    const b = n.getBoundingClientRect(); if (!b.width || !b.height) return false;
    return b.left < c.right && b.right > c.left && b.top < c.bottom && b.bottom > c.top; }).map((n) => n.className); }"""


def test_no_camera_access_when_permission_is_denied(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer(permissions=[])
    r.invite("VIDEO_CALL")
    r.consumer.click(".lpcall-invitation .lpcall-accept")
    _assert_session_error(r, "NO_CAMERA_ACCESS")
    # the error is shown cleanly: not over the chat's input, which stays usable
    assert r.consumer.evaluate(OVER_COMPOSER_JS) == [], "the call container's content covers the chat's input"
    assert r.consumer.locator(".lpcall-composer textarea").is_editable()


@pytest.mark.parametrize("how", ["no-rtcpeerconnection", "insecure-context"])
def test_a_browser_that_cannot_call_is_never_invited_and_the_agent_sees_why(rig: Any, how: str) -> None:
    """The built-in window declares CO_BROWSE only when the browser can call (seed: no CO_BROWSE, no
    invitation): the agent's call buttons are disabled with the reason, before any invitation."""
    r = rig()
    r.open_agent()
    if how == "insecure-context":
        r.open_consumer(host="insecure.test")  # http, not localhost: no secure context, no mediaDevices
        assert r.consumer.evaluate("isSecureContext") is False
    else:
        r.open_consumer(init=NO_WEBRTC)
        assert r.consumer.evaluate("typeof RTCPeerConnection") == "undefined"
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    why = get_state(r.app).texts["agent.no_cobrowse"]
    r.agent.wait_for_selector(f".lpcall-call-reason:text-is(\"{why}\")")
    for button in r.agent.locator("button.lpcall-call-btn").all():
        assert button.is_disabled()


@pytest.mark.parametrize("how", ["no-rtcpeerconnection", "insecure-context"])
def test_browser_not_supported_at_the_accept_of_a_custom_client(rig: Any, how: str) -> None:
    """A site's own client that declares CO_BROWSE anyway: the Accept gives BROWSER_NOT_SUPPORTED
    with its message, on the page and for the agent, and the call closes."""
    r = rig(LPCALL_ENGAGEMENT_WINDOW=False)
    r.open_agent()
    page = r.consumer = r.page(init="" if how == "insecure-context" else NO_WEBRTC)
    host = "insecure.test" if how == "insecure-context" else "localhost"
    page.goto(f"http://{host}:{r.server.port}/custom")
    page.fill("#custom-name", "Vera")
    page.click("#custom-start [type=submit]")
    r.invite("VIDEO_CALL")
    page.click("#custom-accept")
    wait_for(lambda: r.events(page, "cobrowse", "sessionError"), timeout=20, message="sessionError")
    texts = get_state(r.app).texts
    assert [e["data"] for e in r.events(page, "cobrowse", "sessionError")] == [
        {"id": "BROWSER_NOT_SUPPORTED", "msg": texts["error.BROWSER_NOT_SUPPORTED"]}
    ]
    page.wait_for_selector(f".lp_cobrowse_callscreen_container :text('{texts['error.BROWSER_NOT_SUPPORTED'][:30]}')")
    r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    assert texts["error.BROWSER_NOT_SUPPORTED"] in r.agent.inner_text(".lpcall-call .lpcall-call-error")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
    assert "system.failed" in r.transcript()


# Delays the page's insertion of its call container by 3 s: it appears after cobrowseAccepted.
LATE_CONTAINER_JS = """() => { const area = document.getElementById('custom-call-area'), append = area.append.bind(area);
  area.append = (...nodes) => setTimeout(() => append(...nodes), 3000); }"""


@pytest.mark.parametrize("late_container", [False, True], ids=["container-first", "container-after-accept"])
def test_custom_integration_page_completes_a_call(rig: Any, late_container: bool) -> None:
    """example_site /custom: Messaging-Window socket + documented lpTag.events only, no built-in window.
    Variant: the page creates the container only after publishing cobrowseAccepted ("at the latest")."""
    r = rig(LPCALL_ENGAGEMENT_WINDOW=False)
    r.open_agent()
    page = r.consumer = r.page()
    page.goto(f"{r.server.url}/custom")
    if late_container:
        page.evaluate(LATE_CONTAINER_JS)
    page.fill("#custom-name", "Vera")
    page.click("#custom-start [type=submit]")
    r.invite("VIDEO_CALL")
    page.wait_for_selector("#custom-invite:not([hidden])")
    assert "video call" in page.inner_text("#custom-invite-text")
    page.click("#custom-accept")
    if late_container:
        assert page.locator(".lp_cobrowse_callscreen_container").count() == 0  # not there yet
    r.wait_media(video=True)
    page.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call.lpcall-video")
    assert page.locator(".custom-loading").count() == 0  # the page's loading indicator was replaced
    assert page.locator(".lpcall-window").count() == 0  # no built-in window on this site
    published = [(e["app"], e["ev"]) for e in r.events(page)]
    assert ("lpCoBrowse", "cobrowseOffered") in published and ("lpCoBrowse", "cobrowseAccepted") in published
    page.click(".lpcall-call .lpcall-hangup")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
    page.wait_for_selector("#custom-status:has-text('The call has ended.')")
    assert "system.ended" in r.transcript()


def test_unable_to_connect_when_ice_cannot_connect(rig: Any) -> None:
    # relay only, through a TURN server that is not there: no candidate pair can ever form
    r = rig(
        LPCALL_ICE_SERVERS=[{"urls": ["turn:127.0.0.1:9"], "username": "nobody", "credential": "nothing"}],
        LPCALL_FORCE_RELAY=True,
        LPCALL_CONNECT_TIMEOUT=3,
        LPCALL_ICE_RESTART_ATTEMPTS=0,
    )
    r.start("VOICE_CALL")
    _assert_session_error(r, "UNABLE_TO_CONNECT")
    assert r.stats(r.consumer)["audioBytes"] == 0


def test_both_sides_renegotiating_at_once_is_no_glare(rig: Any) -> None:
    """Perfect negotiation: both restart ICE at the same instant, both offers cross; the agent
    (impolite) ignores the visitor's, the visitor (polite) rolls back and answers; media goes on."""
    r = rig()
    r.start("VIDEO_CALL")
    r.wait_media()
    ufrag = "window.__lpcallEngines.at(-1).pc.currentRemoteDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1]"
    before = {p: p.evaluate(f"() => {ufrag}") for p in (r.agent, r.consumer)}
    at = int(time.time() * 1000) + 700
    for page in (r.agent, r.consumer):  # the same wall-clock instant in both pages
        page.evaluate(f"() => setTimeout(() => window.__lpcallEngines.at(-1).pc.restartIce(), {at} - Date.now())")
    for page in (r.agent, r.consumer):
        wait_for(lambda p=page: p.evaluate(f"() => {ufrag}") != before[p], timeout=20, message="ICE restarted")
        wait_for(lambda p=page: p.evaluate("window.__lpcallEngines.at(-1).pc.signalingState") == "stable", timeout=10)
    trace = " | ".join(r.agent.evaluate("window.__lpcallEngines.at(-1).trace") + r.consumer.evaluate("window.__lpcallEngines.at(-1).trace"))
    assert "ignored a colliding offer" in trace or "rolled back for a colliding offer" in trace, trace
    for page in (r.agent, r.consumer):
        frames = r.stats(page)["framesDecoded"]
        wait_for(lambda p=page, f=frames: r.stats(p)["framesDecoded"] > f + 2, timeout=20, message="media after the glare")
        assert page.evaluate("window.__lpcallEngines.at(-1).pc.connectionState") == "connected"
    assert r.consumer.evaluate("window.__lpcallEngines.at(-1).closedInfo") is None
    r.agent.click(".lpcall-call .lpcall-hangup")
    r.wait_closed_everywhere("system.ended")
