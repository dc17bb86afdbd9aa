"""'Continue on my phone' from ``NO_CAMERA_ACCESS`` (issue 18), three Chromium contexts: the visitor's
desktop tab, whose camera and microphone are denied (a Chromium without the fake-UI flag, so the
permission is real: a context without the grant is refused), a phone-emulated visitor that opens the
QR code's link, and the agent. The call is not failed: the error view offers the phone, the phone
takes the call over like a resume, media flows from it (decoded frames at the agent), and the desktop
says the call moved and keeps the chat. Ending the call from the error view reports NO_CAMERA_ACCESS
to the agent as before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from callkit import call_keys
from resumekit import INIT, Rig, diagnose
from support import CHROMIUM, CHROMIUM_ARGS, wait_for

from flask_lpcall.state import get_state

MEDIA = ["camera", "microphone"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture(scope="module")
def chromium(playwright: Any) -> Iterator[Any]:
    """Camera/microphone permission is real here: only contexts granted MEDIA get the fake devices."""
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    yield b
    b.close()


class NoCameraRig(Rig):
    """resumekit's rig; the visitor's desktop context has no camera/microphone grant."""

    desktop_permissions: tuple[str, ...] = ()

    def context(self, permissions: list[str] | None = None, **kw: Any) -> Any:
        ctx = self.browser.new_context(permissions=MEDIA if permissions is None else permissions,
                                       **(kw or {"viewport": {"width": 1000, "height": 800}}))
        ctx.add_init_script(INIT)
        self.contexts.append(ctx)
        return ctx

    consumer_device: dict[str, Any] | None = None  # None: a desktop

    def open_consumer(self, path: str = "/") -> Any:
        self.consumer_ctx = self.context(list(self.desktop_permissions), **(self.consumer_device or {}))
        page = self.consumer = self.consumer_ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(self.server.url + path)
        page.click(".lpcall-launcher")
        page.fill("#lpcall-visitor-name", "Vera")
        page.click(".lpcall-start [type=submit]")
        page.wait_for_selector(".lpcall-composer:not([hidden])")
        return page

    def phone(self) -> Any:
        page = self.context(MEDIA, **PHONE).new_page()
        page.set_default_timeout(20_000)
        return page


@pytest.fixture
def nocam(chromium: Any, live_server: Any) -> Iterator[NoCameraRig]:
    r = NoCameraRig(chromium, live_server)
    yield r
    r.close()


def _accept_without_camera(r: NoCameraRig) -> str:
    r.open_agent()
    desktop = r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    r.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
    wait_for(lambda: (r.engine(r.agent) or {}).get("status") not in (None, "idle", "media"), timeout=20,
             message="the agent joined its call")
    desktop.click(".lpcall-invitation .lpcall-accept")
    err = wait_for(lambda: r.events(desktop, "cobrowse", "sessionError"), timeout=20, message="sessionError")[0]["data"]
    texts = get_state(r.app).texts
    assert err == {"id": "NO_CAMERA_ACCESS", "msg": texts["error.NO_CAMERA_ACCESS"]}
    view = desktop.wait_for_selector(".lp_cobrowse_callscreen_container .lpcall-no-camera")
    assert texts["error.NO_CAMERA_ACCESS"] in view.inner_text()
    assert texts["handoff.no_camera"] in view.inner_text()
    # the offer is the focused choice, a labelled button reachable by keyboard
    assert desktop.evaluate("document.activeElement.className") == "lpcall-handoff"
    return str(r.engine(r.agent)["serviceId"])


def test_no_camera_access_offers_the_phone_which_takes_the_call_over(nocam: NoCameraRig) -> None:
    r = nocam
    sid = _accept_without_camera(r)
    desktop = r.consumer
    # the call is held, not failed: the agent is in it and sees why nothing comes from the visitor
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-muted:not([hidden])")
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off:not([hidden])")
    assert r.engine(r.agent)["closed"] is None
    assert r.agent.is_hidden(".lpcall-call .lpcall-call-error")
    agent_before = r.peer_count(r.agent)

    desktop.keyboard.press("Enter")  # "Continue on my phone", focused
    desktop.wait_for_selector(".lpcall-no-camera .lpcall-handoff-panel .lpcall-handoff-qr")
    wait_for(lambda: desktop.evaluate("document.querySelector('.lpcall-handoff-qr').naturalWidth") > 0, timeout=5,
             message="the QR code image decoded")
    url = desktop.input_value(".lpcall-handoff-url")
    phone = r.phone()
    assert phone.goto(url).status == 200
    try:
        r.wait_frames(phone, timeout=30)
        # media from the phone: frames decoded at the agent on a connection made after the desktop left
        r.wait_frames(r.agent, min_index=agent_before, above=5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(r)}\nphone: {phone.evaluate('(window.__lpcallEngines||[]).map(e=>e.trace)')}") from None
    assert r.engine(phone)["serviceId"] == sid and r.engine(phone)["muted"] is False
    assert r.engine(r.agent)["serviceId"] == sid and r.engine(r.agent)["closed"] is None
    # the agent sees the phone's real state now, and no new invitation was made
    r.agent.wait_for_selector(".lpcall-call .lpcall-remote-camera-off", state="hidden")
    assert len([e for e in r.events(r.agent) if e["ev"] == "cobrowseOffered"]) == 0
    assert [e["ev"] for e in r.events(phone, "cobrowse")] == ["sessionResume"]

    # the desktop says where the call went, holds nothing, and keeps the chat
    moved = desktop.wait_for_selector(".lp_cobrowse_callscreen_container .lpcall-call-moved")
    assert "The call continues on your phone." in moved.inner_text()
    state = desktop.evaluate("""() => ({current: Boolean(window.__lpcallCallApp.current), stored: sessionStorage.getItem('lpcall.call'),
      open: (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed').length})""")
    assert state == {"current": False, "stored": None, "open": 0}
    desktop.fill("#lpcall-message", "still here")
    desktop.click(".lpcall-composer [type=submit]")
    r.agent.wait_for_selector(".lpcall-transcript >> text=still here")
    # only the one sessionError: the handoff is not another failure
    assert len(r.events(desktop, "cobrowse", "sessionError")) == 1


def test_ending_the_call_from_the_no_camera_view_reports_it_to_the_agent(nocam: NoCameraRig) -> None:
    r = nocam
    _accept_without_camera(r)
    desktop = r.consumer
    desktop.click(".lpcall-no-camera .lpcall-no-camera-end")
    desktop.wait_for_selector(".lpcall-no-camera", state="detached")
    texts = get_state(r.app).texts
    r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    assert texts["error.NO_CAMERA_ACCESS"] in r.agent.inner_text(".lpcall-call .lpcall-call-error")
    wait_for(lambda: call_keys(r.app) == [], timeout=15, message="no call keys in the store")
    assert len(r.events(desktop, "cobrowse", "sessionError")) == 1
    assert desktop.locator(".lpcall-composer textarea").is_editable()


def test_a_phone_without_camera_gets_the_error_at_once_no_offer(nocam: NoCameraRig) -> None:
    """On a phone already (coarse pointer) there is nowhere to move the call: NO_CAMERA_ACCESS as before."""
    r = nocam
    r.consumer_device = PHONE
    r.open_agent()
    phone = r.open_consumer()
    assert phone.evaluate("matchMedia('(hover: none) and (pointer: coarse)').matches") is True
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    # the agent is in the call (its camera up, joined) before the visitor answers
    wait_for(lambda: (r.engine(r.agent) or {}).get("status") not in (None, "idle", "media"), timeout=20,
             message="the agent joined its call")
    phone.click(".lpcall-invitation .lpcall-accept")
    texts = get_state(r.app).texts
    r.agent.wait_for_selector(".lpcall-call .lpcall-call-error:not([hidden])")
    assert texts["error.NO_CAMERA_ACCESS"] in r.agent.inner_text(".lpcall-call .lpcall-call-error")
    assert phone.locator(".lpcall-no-camera").count() == 0
    assert [e["data"]["id"] for e in r.events(phone, "cobrowse", "sessionError")] == ["NO_CAMERA_ACCESS"]
