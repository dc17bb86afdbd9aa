"""The standalone call page's link (issue 18), server side: the agent's API, the page, and the clear
4xx pages for a forged, expired, used or ended link (browser behaviour: test_callpage_browser.py)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from agentkit import csrf_of, logged_in_client
from callkit import BOB, cobrowse_payload, consumer_token, conversation, make_app, services
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from flask_lpcall.web.auth import SESSION_CSRF


def _agent(app: Any) -> tuple[Any, str]:
    client = logged_in_client(app, BOB.id)
    page = client.get("/lpcall/agent/")
    return client, csrf_of(page.get_data(as_text=True))


def _invited(app: Any) -> tuple[Any, str]:
    setup = conversation(app)
    calls, _ = services(app)
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    return setup, info["serviceId"]


def _link(client: Any, csrf: str, sid: str) -> Any:
    return client.post("/lpcall/api/agent/call-link", json={"serviceId": sid}, headers={"X-CSRF-Token": csrf})


def _path(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def _page_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="lpcall-callpage-data">(.*?)</script>', html, re.DOTALL)
    assert m, html
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def test_the_agent_gets_a_link_that_carries_ids_only_and_opens_the_call_page() -> None:
    app = make_app(LPCALL_CALL_LINK_TTL=120)
    setup, sid = _invited(app)
    client, csrf = _agent(app)
    resp = _link(client, csrf, sid)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["serviceId"] == sid and body["url"].startswith("http://localhost/lpcall/call/")
    assert time.time() + 100 < body["expires"] <= time.time() + 121
    token = body["url"].rsplit("/", 1)[1]
    payload = URLSafeTimedSerializer("test-secret", salt="lpcall.calllink").loads(token)
    assert set(payload) == {"sid", "jti"} and payload["sid"] == sid  # no name, no consumer id
    assert "Vera" not in body["url"]

    visitor = app.test_client()
    page = visitor.get(_path(body["url"]))
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    data = _page_data(page.get_data(as_text=True))
    assert data["call"]["serviceId"] == sid and data["call"]["sessionState"] == "INVITED"
    assert data["identity"]["consumerId"] == setup.consumer_id
    # the page's identity works on the consumer's call API
    calls_api = visitor.post("/lpcall/api/call/prepare", json=cobrowse_payload({"serviceId": sid, "mode": "VIDEO_CALL"}),
                             headers={"Authorization": f"Bearer {data['identity']['token']}"})
    assert calls_api.status_code == 200, calls_api.get_json()
    # a reload of the same browser opens it again (it resumes); another browser gets "used"
    assert visitor.get(_path(body["url"])).status_code == 200
    other = app.test_client().get(_path(body["url"]))
    assert other.status_code == 410
    text = other.get_data(as_text=True)
    assert "This link was used already" in text and "Traceback" not in text


def test_a_forged_link_gets_a_clear_404_page_in_the_sites_language() -> None:
    app = make_app(LPCALL_LOCALE="de", LPCALL_TEXTS={"callpage.invalid": "Dieser Link ist kaputt."})
    _, sid = _invited(app)
    forged = URLSafeTimedSerializer("another-secret", salt="lpcall.calllink").dumps({"sid": sid, "jti": "x"})
    for path in (f"/lpcall/call/{forged}", "/lpcall/call/nonsense", "/lpcall/call/a/b/c"):
        resp = app.test_client().get(path)
        assert resp.status_code == 404, path
        assert resp.mimetype == "text/html"
        text = resp.get_data(as_text=True)
        assert "Dieser Link funktioniert nicht" in text and "Dieser Link ist kaputt." in text
        assert 'lang="de"' in text and "Traceback" not in text


class _OldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 3600


def test_an_expired_link_gets_410() -> None:
    app = make_app(LPCALL_CALL_LINK_TTL=60)
    _, sid = _invited(app)
    old = URLSafeTimedSerializer("test-secret", salt="lpcall.calllink", signer=_OldSigner).dumps({"sid": sid, "jti": "j1"})
    resp = app.test_client().get(f"/lpcall/call/{old}")
    assert resp.status_code == 410
    assert "This link has expired" in resp.get_data(as_text=True)


def test_a_link_of_a_call_that_is_over_gets_410() -> None:
    app = make_app()
    _, sid = _invited(app)
    client, csrf = _agent(app)
    url = _link(client, csrf, sid).get_json()["url"]
    calls, _ = services(app)
    calls.cancel(BOB, sid)
    resp = app.test_client().get(_path(url))
    assert resp.status_code == 410
    assert "This call is over" in resp.get_data(as_text=True)


def test_the_link_api_wants_the_agent_of_the_invited_call_and_the_csrf_token() -> None:
    app = make_app()
    _, sid = _invited(app)
    anonymous = app.test_client().post("/lpcall/api/agent/call-link", json={"serviceId": sid})
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "NOT_AUTHENTICATED"
    client, csrf = _agent(app)
    no_csrf = client.post("/lpcall/api/agent/call-link", json={"serviceId": sid})
    assert no_csrf.status_code == 403 and no_csrf.get_json()["error"]["field"] == "X-CSRF-Token"
    bad = _link(client, csrf, "")
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "serviceId"
    unknown = _link(client, csrf, "nobody#x")
    assert unknown.status_code == 404
    with client.session_transaction() as s:
        assert s[SESSION_CSRF] == csrf
    # an answered call: the link would open nothing to accept
    calls, _ = services(app)
    calls.accept(conversation_consumer(app, sid), cobrowse_payload({"serviceId": sid, "mode": "VIDEO_CALL"}))
    answered = _link(client, csrf, sid)
    assert answered.status_code == 409, answered.get_json()


def conversation_consumer(app: Any, sid: str) -> str:
    calls, _ = services(app)
    return str(calls.get(sid).consumer_id)


def test_an_opened_link_page_keeps_the_invitation_when_the_chat_tab_closes() -> None:
    app = make_app(LPCALL_INVITE_TTL=3600)
    setup, sid = _invited(app)
    calls, _ = services(app)
    calls.consumer_page_opened(setup.consumer_id, "desktop-chat")
    client, csrf = _agent(app)
    url = _link(client, csrf, sid).get_json()["url"]
    assert app.test_client().get(_path(url)).status_code == 200
    calls.consumer_page_closed(setup.consumer_id, "desktop-chat")  # the visitor closed the chat tab
    closed = calls.sweep(now=time.time() + 120)  # well past LPCALL_RECONNECT_GRACE
    assert closed == [] and calls.get(sid).state == "INVITED"


def _accepted(app: Any) -> tuple[Any, str]:
    setup, sid = _invited(app)
    calls, _ = services(app)
    calls.accept(setup.consumer_id, cobrowse_payload({"serviceId": sid, "mode": "VIDEO_CALL"}))
    return setup, sid


def _bearer(setup: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {setup.consumer_token}"}


def test_handoff_link_of_an_answered_call_with_a_qr_code_opened_once_and_cancellable() -> None:
    app = make_app(LPCALL_CALL_LINK_TTL=120)
    setup, sid = _accepted(app)
    visitor = app.test_client()
    made = visitor.post("/lpcall/api/call/handoff", json={"serviceId": sid}, headers=_bearer(setup))
    assert made.status_code == 200, made.get_json()
    body = made.get_json()
    assert body["qrSvg"].startswith("<svg") and "<script" not in body["qrSvg"]
    payload = URLSafeTimedSerializer("test-secret", salt="lpcall.calllink").loads(body["url"].rsplit("/", 1)[1])
    assert payload == {"sid": sid, "jti": body["handoffId"], "h": 1}
    status = visitor.get(f"/lpcall/api/call/handoff/{body['handoffId']}", headers=_bearer(setup)).get_json()
    assert status["state"] == "waiting"
    # the phone opens it: the desktop sees "opened"; the page knows it is a handoff
    phone = app.test_client()
    page = phone.get(_path(body["url"]))
    assert page.status_code == 200
    data = _page_data(page.get_data(as_text=True))
    assert data["handoff"] == {"id": body["handoffId"]} and data["call"]["sessionState"] == "ACCEPTED"
    status = visitor.get(f"/lpcall/api/call/handoff/{body['handoffId']}", headers=_bearer(setup)).get_json()
    assert status["state"] == "opened"
    assert app.test_client().get(_path(body["url"])).status_code == 410  # once
    assert phone.get(_path(body["url"])).status_code == 200  # the phone's reload
    # cancelled before it was opened: the page says so
    second = visitor.post("/lpcall/api/call/handoff", json={"serviceId": sid}, headers=_bearer(setup)).get_json()
    cancelled = visitor.delete(f"/lpcall/api/call/handoff/{second['handoffId']}", headers=_bearer(setup))
    assert cancelled.get_json()["state"] == "cancelled"
    refused = app.test_client().get(_path(second["url"]))
    assert refused.status_code == 410 and "This link was cancelled" in refused.get_data(as_text=True)


def test_handoff_wants_the_visitors_own_open_call() -> None:
    app = make_app()
    setup, sid = _invited(app)
    visitor = app.test_client()
    invited = visitor.post("/lpcall/api/call/handoff", json={"serviceId": sid}, headers=_bearer(setup))
    assert invited.status_code == 200  # from the invitation: the phone answers it
    stranger = {"Authorization": f"Bearer {consumer_token(app, 'someone-else')}"}
    assert visitor.post("/lpcall/api/call/handoff", json={"serviceId": sid}, headers=stranger).status_code == 404
    assert visitor.post("/lpcall/api/call/handoff", json={"serviceId": sid}).status_code == 401
    assert visitor.post("/lpcall/api/call/handoff", json={}, headers=_bearer(setup)).get_json()["error"]["field"] == "serviceId"
    assert visitor.get("/lpcall/api/call/handoff/unknown", headers=_bearer(setup)).status_code == 404


def test_the_claim_cookie_is_samesite_none_over_https_and_the_claim_also_opens_the_link_without_it() -> None:
    """A host app's cross-site iframe: no Lax cookie there, so SameSite=None; Secure over https, and the
    claim the page keeps in sessionStorage opens the link again as ?claim= (callpage_claim.js)."""
    app = make_app()
    _, sid = _invited(app)
    client, csrf = _agent(app)
    path = _path(_link(client, csrf, sid).get_json()["url"])
    secure = app.test_client()
    first = secure.get(path, base_url="https://localhost")
    cookie = first.headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    claim = _page_data(first.get_data(as_text=True))["claim"]
    # over http SameSite=None is refused by browsers: Lax there
    client2, csrf2 = _agent(app)
    _, sid2 = _invited(app)
    plain = app.test_client().get(_path(_link(client2, csrf2, sid2).get_json()["url"]))
    assert "SameSite=Lax" in plain.headers["Set-Cookie"]
    # a browser without the cookie: "used", with the script that retries with this tab's claim
    used = app.test_client().get(path)
    assert used.status_code == 410 and "lpcall/callpage_claim.js" in used.get_data(as_text=True)
    assert app.test_client().get(f"{path}?claim=wrong").status_code == 410
    again = app.test_client().get(f"{path}?claim={claim}")
    assert again.status_code == 200 and _page_data(again.get_data(as_text=True))["call"]["serviceId"] == sid
    # the other problem pages have no such script
    assert "callpage_claim.js" not in app.test_client().get("/lpcall/call/forged").get_data(as_text=True)
