"""The invitation's and the window's look and feel (issue 18, 3) in Chromium: the example site's /styled
page sets the documented CSS custom properties and replaces the invitation's markup through the
template block (lpcall/invitation_template.html); the styles apply and the brand's Accept starts
the call with media both ways."""

from __future__ import annotations

from typing import Any

from support import wait_for

STYLE_JS = """() => {
  const win = document.querySelector('.lpcall-window');
  const accept = document.querySelector('.lpcall-invitation [data-lpcall-accept]');
  const inv = document.querySelector('.lpcall-invitation');
  const ws = getComputedStyle(win), as = getComputedStyle(accept), is = getComputedStyle(inv);
  return {left: ws.left, right: ws.right, font: ws.fontFamily, acceptBg: as.backgroundColor,
          acceptRadius: as.borderTopLeftRadius, invitationBg: is.backgroundColor,
          brand: Boolean(inv.querySelector('.brand-invite-icon')), text: inv.querySelector('[data-lpcall-invitation-text]').textContent,
          accept: accept.textContent, role: inv.getAttribute('role')};
}"""


def test_the_styled_page_applies_the_custom_properties_and_its_own_invitation_accepts(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer("/styled")
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    page = r.consumer
    page.wait_for_selector(".lpcall-invitation [data-lpcall-accept]")
    style = page.evaluate(STYLE_JS)
    assert style["brand"] is True and style["role"] == "alertdialog"
    assert style["text"] == "Bob from our roastery would like a video call with you"
    assert style["accept"] == "Yes, call me"
    assert style["acceptBg"] == "rgb(138, 59, 18)"  # --lpcall-accent
    assert style["acceptRadius"] == "18px"  # --lpcall-radius
    assert style["invitationBg"] == "rgb(253, 241, 228)"  # --lpcall-invitation-bg
    assert style["font"].startswith("Georgia")  # --lpcall-font
    assert style["left"] == "16px"  # --lpcall-window-left: the window on the left
    page.click(".lpcall-invitation [data-lpcall-accept]")
    r.wait_frames(page)
    r.wait_frames(r.agent)
    call_bg = page.evaluate("getComputedStyle(document.querySelector('.lpcall-call')).backgroundColor")
    assert call_bg == "rgb(43, 26, 16)"  # the call UI's --lpcall-bg, set by the page
    assert [e["ev"] for e in r.events(page, "lpCoBrowse")][:2] == ["cobrowseOffered", "cobrowseAccepted"]


def test_a_page_without_the_template_keeps_the_built_in_invitation(rig: Any) -> None:
    r = rig()
    r.open_agent()
    r.open_consumer("/support")
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VOICE_CALL]")
    page = r.consumer
    page.wait_for_selector(".lpcall-invitation .lpcall-accept")
    wait_for(lambda: page.inner_text(".lpcall-invitation-text") == "Bob invites you to a voice call", timeout=5,
             message="the built-in invitation text")
    assert page.evaluate("getComputedStyle(document.querySelector('.lpcall-window')).right") == "16px"
