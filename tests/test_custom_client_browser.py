"""Custom messaging clients (issue 14, finding 10), in Chromium.

The page below is a site's own chat client written only from README.md's "Messaging-Window
protocol" section (identity, socket frames, the invitation's lpCoBrowse events, the call
container, ``sessionError``); it is not the example site's /custom page. Three visitors:

* ``readme``: stores the identity exactly as the README says: the call connects with media;
* ``none``: keeps its identity to itself: the Accept ends in ``sessionError`` UNABLE_TO_CONNECT,
  shown in the container, with a console error that says what is missing; no 404s;
* ``wrong``: stores another consumer's identity: the same, and the console names both consumers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import INBOUND_STATS_JS, wait_for

from example_site.app import create_app

INIT = """
window.__lpcallTest = true;
window.__events = [];
window.lpTag = window.lpTag || {};
window.lpTag.events = {publish: function (app, ev, data) {
  window.__events.push({app: app, ev: ev, data: JSON.parse(JSON.stringify(data || null))});
}};
"""

# The site's own client: every step is one of the README's (section "Messaging-Window protocol").
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Our own chat</title></head>
<body>
<p id="status">starting</p>
<div id="invite" hidden><span id="invite-text"></span> <button id="accept">Accept</button></div>
<p id="error" role="alert"></p>
<div id="call-area"></div>
<script>
(async () => {
  const mode = new URLSearchParams(location.search).get('store');
  const base = '/lpcall';
  const $ = (id) => document.getElementById(id);
  async function session() {
    const r = await fetch(base + '/api/consumer/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                          body: JSON.stringify({vid: 'our-visitor'})});
    return r.json();
  }
  const id = await session();
  if (mode === 'readme') localStorage.setItem('lpcall.consumer', JSON.stringify({consumerId: id.consumerId, token: id.token}));
  if (mode === 'wrong') {  // an identity left from another visit
    const old = await session();
    localStorage.setItem('lpcall.consumer', JSON.stringify({consumerId: old.consumerId, token: old.token}));
  }
  lpTag.events.bind({appName: 'cobrowse', eventName: 'sessionError', func: (data) => { $('error').textContent = data.msg; }});
  const ws = new WebSocket(location.origin.replace('http', 'ws') + base + '/ws/consumer');
  let n = 0, conv = null;
  const send = (type, body, extra) => ws.send(JSON.stringify({kind: 'req', id: String(n++), type, body, ...extra}));
  ws.onopen = () => {
    send('InitConnection', undefined, {headers: [
      {type: '.ams.headers.ClientProperties', deviceFamily: 'DESKTOP', os: 'LINUX', features: ['CO_BROWSE']},
      {type: '.ams.headers.ConsumerAuthentication', jwt: id.token}]});
    send('cm.ConsumerRequestConversation', {visitorName: 'Vera'});
    send('cqm.SubscribeExConversations', {convState: ['OPEN']});
  };
  const offered = new Set();
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'cm.ConsumerRequestConversationResponse') { conv = msg.body.conversationId; $('status').textContent = 'chatting'; }
    if (msg.type !== 'cqm.ExConversationChangeNotification') return;
    for (const change of msg.body.changes) {
      const details = change.result.conversationDetails;
      for (const dialog of details.dialogs) {
        if (dialog.channelType !== 'COBROWSE' || dialog.metaData.sessionState !== 'INVITED' || offered.has(dialog.dialogId)) continue;
        offered.add(dialog.dialogId);
        const sdk = lpTag.taglets.lp_monitoringSDK;
        const payload = {serviceId: dialog.metaData.serviceId, agentId: details.agent.id, visitorName: 'Vera',
                         mode: dialog.metaData.mode, ssid: sdk.getSid(), svid: sdk.getVid()};
        lpTag.events.publish('lpCoBrowse', 'cobrowseOffered', payload);
        $('invite-text').textContent = details.agent.name + ' invites you to a call';
        $('invite').hidden = false;
        $('accept').onclick = () => {
          const c = document.createElement('div');
          c.className = 'lp_cobrowse_callscreen_container';
          c.textContent = 'Connecting…';
          $('call-area').append(c);
          lpTag.events.publish('lpCoBrowse', 'cobrowseAccepted', payload);
        };
      }
    }
  };
})();
</script>
</body></html>
"""


@pytest.fixture
def site(live_server: Any) -> Iterator[Any]:
    app = create_app(LPCALL_ENGAGEMENT_WINDOW=False, LPCALL_REPORT_DB=":memory:")
    app.add_url_rule("/our-chat", "our_chat", lambda: PAGE)
    yield live_server(app)


def _agent(browser: Any, url: str) -> Any:
    ctx = browser.new_context(permissions=["camera", "microphone"])
    ctx.add_init_script(INIT)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{url}/lpcall/agent/login")
    page.fill("#lpcall-username", "bob")
    page.fill("#lpcall-password", "bob")
    page.click(".lpcall-login-form [type=submit]")
    page.wait_for_selector("#lpcall-agent")
    return page


def _visitor(browser: Any, url: str, store: str) -> tuple[Any, list[str]]:
    ctx = browser.new_context(permissions=["camera", "microphone"])
    ctx.add_init_script(INIT)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("response", lambda r: console.append(f"http {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(f"{url}/our-chat?store={store}")
    page.wait_for_selector("#status:has-text('chatting')")
    return page, console


def _invite_and_accept(agent: Any, visitor: Any) -> None:
    agent.click(".lpcall-mine .lpcall-conv-open")
    agent.click("button.lpcall-call-btn[data-mode=VOICE_CALL]")
    agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
    visitor.wait_for_selector("#invite:not([hidden])")
    visitor.click("#accept")


def _events(page: Any, app: str, ev: str) -> list[Any]:
    return [e["data"] for e in page.evaluate("window.__events") if e["app"] == app and e["ev"] == ev]


def test_a_client_that_stores_the_identity_as_the_readme_says_gets_its_call(browser: Any, site: Any) -> None:
    agent = _agent(browser, site.url)
    visitor, console = _visitor(browser, site.url, "readme")
    try:
        _invite_and_accept(agent, visitor)
        for page in (visitor, agent):
            wait_for(lambda p=page: p.evaluate(INBOUND_STATS_JS)["audioBytes"] > 0, timeout=30, message="remote audio")
        visitor.wait_for_selector(".lp_cobrowse_callscreen_container > .lpcall-call")
        assert _events(visitor, "cobrowse", "sessionError") == []
        assert not [line for line in console if line.startswith("http 4")], console
    finally:
        visitor.context.close()
        agent.context.close()


@pytest.mark.parametrize("store", ["none", "wrong"])
def test_a_client_without_the_right_identity_gets_unable_to_connect_with_a_message(browser: Any, site: Any,
                                                                                   store: str) -> None:
    agent = _agent(browser, site.url)
    visitor, console = _visitor(browser, site.url, store)
    try:
        _invite_and_accept(agent, visitor)
        errors = wait_for(lambda: _events(visitor, "cobrowse", "sessionError"), timeout=20, message="sessionError")
        assert [e["id"] for e in errors] == ["UNABLE_TO_CONNECT"]
        assert errors[0]["msg"]  # the catalog's text, shown by the page …
        visitor.wait_for_selector(f"#error:has-text('{errors[0]['msg'][:20]}')")
        # … and in the call container
        visitor.wait_for_selector(f".lp_cobrowse_callscreen_container:has-text('{errors[0]['msg'][:20]}')")
        explained = [line for line in console if line.startswith("error:") and "lpcall.consumer" in line]
        assert explained, console
        if store == "wrong":
            assert "another consumer" in explained[0] or "is for consumer" in explained[0], explained
        assert not [line for line in console if line.startswith("http 404")], console
    finally:
        visitor.context.close()
        agent.context.close()
