"""The standalone call page (issue 18) in Chromium: a link the agent made opens a full-page call with
media both ways, the page's events reach the host app (iframe parent, iOS and Android webview
bridges), a reload resumes, and a used, forged or expired link shows a clear page.

The example site, the agent workspace and a visitor chatting in the embedded window (resumekit.Rig);
the call page opens in another browser context, phone sized, as a link from an SMS would.
"""

from __future__ import annotations

from typing import Any

from resumekit import Rig, diagnose
from support import wait_for

# Recorders of the webview bridges an app installs (README "For app developers").
BRIDGES = """
window.__bridged = {ios: [], android: []};
window.webkit = {messageHandlers: {lpcall: {postMessage: (m) => window.__bridged.ios.push(m)}}};
window.LPCallAndroid = {postMessage: (s) => window.__bridged.android.push(JSON.parse(s))};
window.__opened = [];
window.open = (...args) => { window.__opened.push(args); return null; };  // webviews have no windows
"""

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}




def _invite(r: Rig, mode: str = "VIDEO_CALL") -> None:
    r.open_agent()
    r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
    r.consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")


def _make_link(r: Rig) -> dict[str, Any]:
    """What the agent's workspace session gets from the link API for its invited call."""
    return r.agent.evaluate("""async () => {
      const calls = await new Promise((resolve) => {
        const check = () => { const c = (window.__lpcallEngines || []).filter(e => e.role === 'agent').at(-1);
          if (c && c.serviceId) resolve(c.serviceId); else setTimeout(check, 50); };
        check();
      });
      const csrf = document.querySelector('input[name=csrf_token]').value;
      const resp = await fetch('/lpcall/api/agent/call-link', {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify({serviceId: calls})});
      return {status: resp.status, body: await resp.json()};
    }""")


def _phone(r: Rig, bridges: bool = True) -> Any:
    ctx = r.browser.new_context(**PHONE)
    from resumekit import INIT

    ctx.add_init_script(INIT)
    if bridges:
        ctx.add_init_script(BRIDGES)
    r.contexts.append(ctx)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    return page


def test_a_link_opens_a_full_page_call_with_media_both_ways_bridged_events_and_a_reload_resumes(rig: Any) -> None:
    r = rig()
    _invite(r)
    made = _make_link(r)
    assert made["status"] == 200, made
    url = made["body"]["url"]
    phone = _phone(r)
    resp = phone.goto(url)
    assert resp.status == 200
    accept = phone.wait_for_selector(".lpcall-callpage-invitation .lpcall-accept")
    assert "Bob invites you to a video call" in phone.inner_text(".lpcall-callpage-invitation")
    accept.click()
    r.consumer = phone  # the rig's observations on the phone page
    try:
        r.wait_frames(phone)
        r.wait_frames(r.agent)
    except AssertionError:
        raise AssertionError(diagnose(r)) from None
    phone.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call.lpcall-video")
    sid = made["body"]["serviceId"]
    names = [(e["app"], e["ev"]) for e in r.events(phone)]
    for expected in [("lpCoBrowse", "cobrowseOffered"), ("lpCoBrowse", "cobrowseAccepted"), ("lpCall", "callConnected")]:
        assert expected in names, names
    accepted = r.events(phone, "lpCoBrowse", "cobrowseAccepted")[0]["data"]
    assert accepted["serviceId"] == sid and accepted["mode"] == "VIDEO_CALL" and accepted["agentId"] == "bob"
    # the same events went to the app through both webview bridges
    bridged = phone.evaluate("window.__bridged")
    for side in ("ios", "android"):
        got = [(m["appName"], m["eventName"]) for m in bridged[side]]
        assert ("lpCoBrowse", "cobrowseAccepted") in got and ("lpCall", "callConnected") in got, (side, got)
        assert all(m["source"] == "lpcall" and m["type"] == "event" for m in bridged[side])
    assert phone.evaluate("window.__opened") == []
    # the desktop tab's invitation is gone: the call was answered elsewhere
    r.consumer_ctx.pages[0].wait_for_selector(".lpcall-invitation", state="detached")

    # a reload resumes the call (same browser: the link's claim cookie, the tab's stored call)
    before = r.peer_count(r.agent)
    phone.reload()
    wait_for(lambda: r.events(phone, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
    assert r.events(phone, "lpCoBrowse", "sliderOpened")
    r.wait_frames(phone)
    r.wait_frames(r.agent, min_index=before)
    assert r.engine(phone)["serviceId"] == sid
    assert phone.is_hidden(".lpcall-callpage-invitation")

    # the link is used: another device gets the clear page, not the call
    other = _phone(r, bridges=False)
    again = other.goto(url)
    assert again.status == 410
    assert other.inner_text("h1") == "This link was used already"
    assert other.evaluate("window.__lpcallCallApp === undefined")

    # the visitor hangs up: the ended call's panel closes and the page says what is left to do
    phone.click(".lpcall-call .lpcall-hangup")
    phone.click(".lpcall-call .lpcall-close")
    phone.wait_for_selector(".lpcall-callpage-message:not([hidden])")
    assert phone.inner_text(".lpcall-callpage-message") == "The call has ended. You can close this page."
    assert any(e["data"]["reason"] == "hangup_consumer" for e in r.events(phone, "lpCall", "callEnded"))
    assert phone.evaluate("window.__opened") == []  # no window.open, from the invitation to the end


def test_the_page_in_an_iframe_posts_its_events_to_the_parent(rig: Any) -> None:
    r = rig()
    _invite(r)
    made = _make_link(r)
    host = _phone(r, bridges=False)
    parent_url = f"{r.server.url}/host-app.html"
    html = f"""<!doctype html><html><body>
<script>window.__host = []; addEventListener('message', (e) => {{
  if (e.data && e.data.source === 'lpcall') window.__host.push({{origin: e.origin, ...e.data}}); }});</script>
<iframe id="call" src="{made['body']['url']}" allow="camera; microphone; autoplay" style="width:390px;height:700px"></iframe>
</body></html>"""
    host.route(parent_url, lambda route: route.fulfill(status=200, content_type="text/html", body=html))
    host.goto(parent_url)
    frame = host.frame_locator("#call")
    frame.locator(".lpcall-callpage-invitation .lpcall-accept").click()
    wait_for(lambda: any(m["eventName"] == "callConnected" for m in host.evaluate("window.__host")), timeout=30,
             message="callConnected posted to the parent")
    got = host.evaluate("window.__host")
    names = [(m["appName"], m["eventName"]) for m in got]
    assert names[:2] == [("lpCoBrowse", "cobrowseOffered"), ("lpCoBrowse", "cobrowseAccepted")], names
    assert all(m["origin"] == r.server.url for m in got)
    assert got[1]["data"]["serviceId"] == made["body"]["serviceId"]
    r.wait_frames(r.agent)  # the visitor in the iframe sends media


def test_forged_and_expired_links_show_a_clear_page(rig: Any) -> None:
    r = rig(LPCALL_CALL_LINK_TTL=10)
    page = _phone(r, bridges=False)
    resp = page.goto(f"{r.server.url}/lpcall/call/not-a-link")
    assert resp.status == 404
    assert page.inner_text("h1") == "This link does not work"
    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            import time

            return int(time.time()) - 60

    secret = r.app.config["SECRET_KEY"]
    old = URLSafeTimedSerializer(secret, salt="lpcall.calllink", signer=Old).dumps({"sid": "c#1", "jti": "j"})
    resp = page.goto(f"{r.server.url}/lpcall/call/{old}")
    assert resp.status == 410
    assert page.inner_text("h1") == "This link has expired"
