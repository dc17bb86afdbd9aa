"""The standalone call page's token (issue 18): bound to its one call, not the visitor's 30-day
consumer token. It works on the call API for that call only; everything else (another call, the
messaging socket and so the conversations, a re-issue of the consumer's identity) refuses it; it dies
with its call and after PAGE_TOKEN_TTL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import itsdangerous.timed
import pytest
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from support import start_live_server
from wsclients import Consumer

from flask_lpcall.state import get_state
from flask_lpcall.web.callpage import call_link
from flask_lpcall.web.jsonapi import PAGE_TOKEN_TTL, make_page_token


def _page_token(app: Any) -> tuple[Any, str, str]:
    """(setup, serviceId, the token the call page's HTML carries) for an invited video call."""
    setup = conversation(app)
    calls, _ = services(app)
    sid = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")["serviceId"]
    with app.test_request_context():
        url = call_link(sid)["url"]
    html = app.test_client().get(url.split("localhost", 1)[1]).get_data(as_text=True)
    m = re.search(r'"identity": \{"consumerId": "[^"]+", "token": "([^"]+)"', html)
    assert m, html
    return setup, sid, m.group(1)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app() -> Iterator[Any]:
    a = make_app()
    yield a
    get_state(a).calls.stop()


def test_the_page_token_works_for_its_call_only(app: Any) -> None:
    setup, sid, token = _page_token(app)
    client = app.test_client()
    payload = cobrowse_payload({"serviceId": sid, "mode": "VIDEO_CALL"})
    assert client.post("/lpcall/api/call/prepare", json=payload, headers=_bearer(token)).status_code == 200
    assert client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers=_bearer(token)).status_code == 200
    assert client.get("/lpcall/api/call/active", headers=_bearer(token)).get_json()["call"]["serviceId"] == sid

    # another visitor's call: the page token's consumer does not own it, and the token is not for it
    other = conversation(app, "Otto")
    calls, _ = services(app)
    other_sid = calls.invite(BOB, other.conv_id, "VOICE_CALL")["serviceId"]
    for path, body in [("/lpcall/api/call/resume", {"serviceId": other_sid}),
                       ("/lpcall/api/call/prepare", cobrowse_payload({"serviceId": other_sid, "mode": "VOICE_CALL"})),
                       ("/lpcall/api/call/decline", cobrowse_payload({"serviceId": other_sid, "mode": "VOICE_CALL"})),
                       ("/lpcall/api/call/handoff", {"serviceId": other_sid})]:
        resp = client.post(path, json=body, headers=_bearer(token))
        assert resp.status_code == 403, (path, resp.get_json())
        assert resp.get_json()["error"]["code"] == "NOT_ALLOWED" and resp.get_json()["error"]["field"] == "token"

    # it is no consumer token: no re-issue of the visitor's identity (a 30-day token) ...
    session = client.post("/lpcall/api/consumer/session", json={"vid": "x"}, headers=_bearer(token)).get_json()
    assert session["consumerId"] != setup.consumer_id
    # ... and with the consumer's own token the re-issue does keep it (the control)
    again = client.post("/lpcall/api/consumer/session", json={"vid": "x"}, headers=_bearer(setup.consumer_token)).get_json()
    assert again["consumerId"] == setup.consumer_id

    # ... and it cannot open the messaging socket, so no conversation is readable with it
    server = start_live_server(app)
    try:
        visitor = Consumer(server.url)
        visitor.token = token
        resp = visitor.connect()
        assert resp["code"] == 401 and resp["body"]["error"]["code"] == "TOKEN_INVALID", resp
        visitor.client.close()  # type: ignore[union-attr]
        owner = Consumer(server.url)
        owner.token = setup.consumer_token
        assert owner.connect()["code"] == 200  # the control: the consumer's own token
        owner.client.close()  # type: ignore[union-attr]
    finally:
        server.stop()


def test_the_page_token_dies_with_its_call_and_after_its_ttl(app: Any) -> None:
    setup, sid, token = _page_token(app)
    client = app.test_client()
    # minted longer ago than PAGE_TOKEN_TTL: expired
    real = time.time
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(itsdangerous.timed.time, "time", lambda: real() - PAGE_TOKEN_TTL - 5)
        old = make_page_token(get_state(app), services(app)[0].get(sid))
    resp = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers=_bearer(old))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "TOKEN_EXPIRED"
    assert PAGE_TOKEN_TTL <= 24 * 3600 < get_state(app).settings.consumer_token_ttl

    # the call ends: the token goes with it, also for a new call of the same conversation
    calls, _ = services(app)
    calls.cancel(BOB, sid)
    resp = client.post("/lpcall/api/call/resume", json={"serviceId": sid}, headers=_bearer(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "TOKEN_EXPIRED"
    new_sid = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")["serviceId"]
    resp = client.post("/lpcall/api/call/resume", json={"serviceId": new_sid}, headers=_bearer(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "TOKEN_EXPIRED"
    assert client.post("/lpcall/api/call/resume", json={"serviceId": new_sid},
                       headers=_bearer(setup.consumer_token)).status_code == 200
