"""The standalone call page inside a host app's iframe on another site (issue 18, webview rules): the
host (http://127.0.0.1:<port>) frames the page (http://localhost:<port>) with allow="camera;
microphone", listed in LPCALL_CALL_PAGE_FRAME_ANCESTORS. The call runs there with media, and survives a
reload of the host page: in a cross-site iframe a SameSite=Lax cookie is neither stored nor sent, so
the link's claim also lives in the frame's sessionStorage (callpage.py, "Resume in a cross-site iframe")."""

from __future__ import annotations

from typing import Any

from flask import Flask
from resumekit import INIT, Rig, diagnose
from support import wait_for

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

MAKE_LINK_JS = """async () => {
  const sid = await new Promise((resolve) => {
    const check = () => { const c = (window.__lpcallEngines || []).filter(e => e.role === 'agent').at(-1);
      if (c && c.serviceId) resolve(c.serviceId); else setTimeout(check, 50); };
    check();
  });
  const csrf = document.querySelector('input[name=csrf_token]').value;
  const resp = await fetch('/lpcall/api/agent/call-link', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify({serviceId: sid})});
  return resp.json();
}"""


def _host_page(r: Rig, live_server: Any, link: str) -> tuple[Any, str]:
    """The host app's page, served from its own server and reached as 127.0.0.1: another site than
    the call page's localhost (a real server: Chromium's local-network checks refuse a frame of a
    loopback page inside a document that has no address, e.g. one made up by page.route)."""
    html = f"""<!doctype html><html><body>
<script>window.__host = JSON.parse(sessionStorage.getItem('host') || '[]');
addEventListener('message', (e) => {{ if (e.data && e.data.source === 'lpcall') {{
  window.__host.push({{origin: e.origin, ...e.data}}); sessionStorage.setItem('host', JSON.stringify(window.__host)); }} }});</script>
<iframe id="call" src="{link}" allow="camera; microphone" style="width:390px;height:700px;border:0"></iframe>
</body></html>"""
    app = Flask("host_app")
    app.add_url_rule("/host-app.html", "host", lambda: html)
    server = live_server(app)
    ctx = r.browser.new_context(**PHONE)
    ctx.add_init_script(INIT)
    r.contexts.append(ctx)
    host = ctx.new_page()
    host.set_default_timeout(20_000)
    return host, f"http://127.0.0.1:{server.port}/host-app.html"


def _posted(host: Any, name: str) -> list[dict[str, Any]]:
    return [m for m in host.evaluate("window.__host") if m["eventName"] == name]


def test_a_cross_site_iframe_runs_the_call_and_resumes_it_after_a_reload(rig: Any, live_server: Any) -> None:
    r = rig(LPCALL_CALL_PAGE_FRAME_ANCESTORS=["'self'", "http://127.0.0.1:*"])
    r.open_agent()
    r.open_consumer()
    r.agent.click(".lpcall-mine .lpcall-conv-open")
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    r.consumer.wait_for_selector(".lpcall-invitation .lpcall-accept")
    made = r.agent.evaluate(MAKE_LINK_JS)
    host, host_url = _host_page(r, live_server, made["url"])
    resp = host.goto(host_url)
    assert resp.status == 200
    frame = host.frame_locator("#call")
    frame.locator(".lpcall-callpage-invitation .lpcall-accept").click()
    wait_for(lambda: _posted(host, "callConnected"), timeout=30, message="callConnected posted to the host")
    assert all(m["origin"] == r.server.url for m in host.evaluate("window.__host"))
    r.wait_frames(r.agent)  # the visitor in the iframe sends media

    # the host app reloads: the frame opens its link again and the call resumes there
    before = r.peer_count(r.agent)
    host.reload()
    try:
        wait_for(lambda: _posted(host, "sessionResume"), timeout=20, message="sessionResume posted to the host")
        r.wait_frames(r.agent, min_index=before)
    except AssertionError as exc:
        inner = host.frame_locator("#call").locator("body").inner_text()
        raise AssertionError(f"{exc}\nframe: {inner!r}\n{diagnose(r)}") from None
    frame = host.frame(url=made["url"])
    assert frame is not None and frame.evaluate("window.__lpcallCallPage.call.serviceId") == made["serviceId"]
    # the claim rode in the query once; the frame's address is the plain link again
    assert frame.evaluate("location.href") == made["url"]

    # the link still works for nobody else
    other = r.browser.new_context(**PHONE)
    r.contexts.append(other)
    page = other.new_page()
    assert page.goto(made["url"]).status == 410
    assert page.inner_text("h1") == "This link was used already"
