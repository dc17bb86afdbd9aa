"""'Continue on my phone' (issue 18) in Chromium, three contexts: the visitor's desktop tab (the
example site's chat window, in a video call with the agent), a phone-emulated visitor that opens
the one-time link of the QR code, and the agent. After the handoff, media flows from the phone and
stops from the desktop; the agent keeps its side (no new invitation); the desktop keeps the chat."""

from __future__ import annotations

import time
from typing import Any

from resumekit import INIT, Rig, diagnose
from support import wait_for

from flask_lpcall.state import get_state

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

DESKTOP_MEDIA_JS = """() => ({
  open: (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed').length,
  current: Boolean(window.__lpcallCallApp && window.__lpcallCallApp.current),
  stored: sessionStorage.getItem('lpcall.call'),
})"""




def _phone(r: Rig) -> Any:
    ctx = r.browser.new_context(**PHONE)
    ctx.add_init_script(INIT)
    r.contexts.append(ctx)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    return page


def _show_code(desktop: Any) -> str:
    desktop.click(".lpcall-call .lpcall-handoff")
    desktop.wait_for_selector(".lpcall-handoff-panel .lpcall-handoff-qr")
    wait_for(lambda: desktop.evaluate("document.querySelector('.lpcall-handoff-qr').naturalWidth") > 0, timeout=5,
             message="the QR code image decoded")
    return str(desktop.input_value(".lpcall-handoff-url"))


def handoff(r: Rig) -> dict[str, float]:
    """A connected call moves from the desktop tab to a phone; returns the timings (seconds)."""
    desktop = r.consumer
    sid = r.engine(desktop)["serviceId"]
    agent_before = r.peer_count(r.agent)
    invitations = len([e for e in r.events(r.agent) if e["ev"] == "cobrowseOffered"])
    url = _show_code(desktop)
    phone = _phone(r)
    t0 = time.monotonic()
    assert phone.goto(url).status == 200
    r.wait_frames(phone, timeout=30)
    t_phone = time.monotonic() - t0
    r.wait_frames(r.agent, min_index=agent_before)
    t_agent = time.monotonic() - t0
    assert r.engine(phone)["serviceId"] == sid
    assert len([e for e in r.events(r.agent) if e["ev"] == "cobrowseOffered"]) == invitations
    return {"phone_media": t_phone, "agent_media": t_agent, "phone": phone}  # type: ignore[dict-item]


def test_the_call_moves_to_the_phone_media_flows_from_it_and_stops_from_the_desktop(rig: Any) -> None:
    r = rig()
    sid = r.start("VIDEO_CALL")
    desktop = r.consumer
    try:
        got = handoff(r)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{diagnose(r)}") from None
    phone = got["phone"]
    print(f"handoff: phone media {got['phone_media']:.2f}s, agent media {got['agent_media']:.2f}s")
    # the desktop let the call go: no open peer connection, no stored call, the camera is off
    wait_for(lambda: desktop.evaluate(DESKTOP_MEDIA_JS) == {"open": 0, "current": False, "stored": None}, timeout=5,
             message="the desktop left the call")
    live_tracks = desktop.evaluate("""() => (window.__lpcallEngines || []).flatMap(e => e.localStream ? e.localStream.getTracks() : [])
                                        .filter(t => t.readyState === 'live').length""")
    assert live_tracks == 0
    moved = desktop.inner_text(".lp_cobrowse_callscreen_container .lpcall-call-moved")
    assert "The call continues on your phone." in moved
    # ...and keeps the chat
    desktop.fill("#lpcall-message", "still here")
    desktop.click(".lpcall-composer [type=submit]")
    r.agent.wait_for_selector(".lpcall-transcript >> text=still here")
    # the agent's frames keep coming, from the phone's connection; the phone gets the agent's
    before = r.newest(r.agent)["framesDecoded"]
    r.wait_frames(r.agent, above=before + 5)
    r.wait_frames(phone, above=r.newest(phone)["framesDecoded"] + 5)
    assert r.engine(r.agent)["serviceId"] == sid and r.engine(r.agent)["closed"] is None
    # the phone's page said so to its host app too, as a resume
    assert [e["ev"] for e in r.events(phone, "cobrowse")] == ["sessionResume"]

    # the phone's page resumes after a reload, like the embedded window
    before_peers = r.peer_count(r.agent)
    phone.reload()
    r.wait_frames(phone)
    r.wait_frames(r.agent, min_index=before_peers)
    assert r.engine(phone)["serviceId"] == sid

    # the link worked once: another device gets the clear page
    other = _phone(r)
    resp = other.goto(phone.url)
    assert resp.status == 410 and other.inner_text("h1") == "This link was used already"


def test_the_desktop_cancels_the_code_and_keeps_the_call(rig: Any) -> None:
    r = rig()
    r.start("VIDEO_CALL")
    desktop = r.consumer
    url = _show_code(desktop)
    desktop.click(".lpcall-handoff-panel .lpcall-handoff-cancel")
    desktop.wait_for_selector(".lpcall-handoff-panel", state="detached")

    store = get_state(r.app).store

    def cancelled() -> bool:
        docs = [store.get(k) for k in store.keys("handoff:")]
        return bool(docs) and all(d["state"] == "cancelled" for d in docs)
    wait_for(cancelled, timeout=5, message="the code cancelled on the server")
    phone = _phone(r)
    resp = phone.goto(url)
    assert resp.status == 410 and phone.inner_text("h1") == "This link was cancelled"
    # the desktop's call goes on
    before = r.newest(desktop)["framesDecoded"]
    r.wait_frames(desktop, above=before + 5)
    assert desktop.evaluate(DESKTOP_MEDIA_JS)["current"] is True
    assert desktop.is_enabled(".lpcall-call .lpcall-handoff")


def test_from_the_invitation_the_phone_answers_and_the_desktop_keeps_the_chat(rig: Any) -> None:
    r = rig()
    r.open_agent()
    desktop = r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    desktop.wait_for_selector(".lpcall-invitation .lpcall-handoff")
    desktop.click(".lpcall-invitation .lpcall-handoff")
    desktop.wait_for_selector(".lpcall-invitation .lpcall-handoff-panel .lpcall-handoff-qr")
    url = desktop.input_value(".lpcall-handoff-url")
    phone = _phone(r)
    assert phone.goto(url).status == 200
    phone.wait_for_selector(".lpcall-callpage-invitation .lpcall-accept")
    desktop.wait_for_selector(".lpcall-invitation", state="detached")
    assert desktop.inner_text(".lpcall-status") == "Answer the call on your phone. The chat stays here."
    phone.click(".lpcall-callpage-invitation .lpcall-accept")
    r.wait_frames(phone)
    r.wait_frames(r.agent)
    assert desktop.evaluate(DESKTOP_MEDIA_JS) == {"open": 0, "current": False, "stored": None}
    desktop.fill("#lpcall-message", "chat goes on")
    desktop.click(".lpcall-composer [type=submit]")
    r.agent.wait_for_selector(".lpcall-transcript >> text=chat goes on")
