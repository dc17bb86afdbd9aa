"""Agent sessions (issue 14, "Sessions"): logout revokes the login on the server, and the session
cookie is SameSite=Lax (configurable) and Secure on HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentkit import csrf_of, form_login
from flask import Flask
from websockets.exceptions import ConnectionClosed
from wsclients import Agent as AgentClient
from wsclients import FrameClient

from flask_lpcall import LPCall
from flask_lpcall.core.agents import PERM_VIDEO, PERM_VOICE
from flask_lpcall.state import get_state
from flask_lpcall.store.keys import SESSION_KEY_PREFIX


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("sessions", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="sessions-test", LPCALL_REPORT_DB=":memory:", LPCALL_AGENT_DB=":memory:", **config)
    LPCall(app)
    get_state(app).agent_directory.add("bob", "pw", {PERM_VOICE, PERM_VIDEO})
    return app


def _set_cookie(resp: Any) -> str:
    (cookie,) = [v for v in resp.headers.getlist("Set-Cookie") if v.startswith("session=")]
    return cookie


def test_a_cookie_copied_before_logout_opens_nothing_after_it(tmp_path: Path, live_server: Any) -> None:
    app = make_app(tmp_path)
    server = live_server(app)
    agent = AgentClient(server.url, "bob", "pw")
    copied = agent.cookie()  # what an attacker copied while the agent was logged in
    assert agent.connect()["code"] == 200  # the live socket of the agent
    assert agent.client is not None

    workspace = agent.http.get(f"{server.url}/lpcall/agent/", timeout=10)
    assert workspace.status_code == 200
    out = agent.http.post(f"{server.url}/lpcall/agent/logout", data={"csrf_token": csrf_of(workspace.text)},
                          timeout=10, allow_redirects=False)
    assert out.status_code == 302
    (ended,) = [k for k in get_state(app).store.keys("") if k.startswith(SESSION_KEY_PREFIX)]
    assert get_state(app).store.get(ended) == "bob"  # the server remembers this login as ended

    # the copied cookie: no workspace, no agent socket
    import requests

    page = requests.get(f"{server.url}/lpcall/agent/", headers={"Cookie": copied}, allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"].endswith("/lpcall/agent/login")
    thief = FrameClient(f"{server.ws_url}/lpcall/ws/agent", origin=server.url, cookie=copied)
    try:
        refused = thief.wait_notification(lambda m: True)
        assert refused["body"]["error"]["code"] == "NOT_AUTHENTICATED", refused
        with pytest.raises(ConnectionClosed):
            thief.request("agent.Subscribe", {"available": True})
    finally:
        thief.close()

    # the socket opened before the logout is told and closed
    told = agent.client.wait_notification(lambda m: m.get("body", {}).get("error", {}).get("code") == "NOT_AUTHENTICATED")
    assert "logged out" in told["body"]["error"]["message"]
    with pytest.raises(ConnectionClosed):
        agent.client.request("call.Invite", {"conversationId": "c-1", "mode": "VIDEO_CALL"})
    agent.close()

    # a new login works again
    again = AgentClient(server.url, "bob", "pw")
    try:
        assert again.connect()["code"] == 200
    finally:
        again.close()


def test_the_session_cookie_is_samesite_lax_and_secure_on_https(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    plain = form_login(app.test_client(), "bob", "pw")
    cookie = _set_cookie(plain)
    assert "SameSite=Lax" in cookie and "Secure" not in cookie
    secure_client = app.test_client()
    page = secure_client.get("/lpcall/agent/login", base_url="https://shop.example")
    resp = secure_client.post("/lpcall/agent/login", base_url="https://shop.example",
                              data={"csrf_token": csrf_of(page.get_data(as_text=True)), "username": "bob", "password": "pw"})
    assert resp.status_code == 302
    cookie = _set_cookie(resp)
    assert "SameSite=Lax" in cookie and "Secure" in cookie


def test_samesite_is_configurable_and_the_sites_own_setting_wins(tmp_path: Path) -> None:
    strict = make_app(tmp_path / "a", LPCALL_SESSION_COOKIE_SAMESITE="Strict")
    assert "SameSite=Strict" in _set_cookie(form_login(strict.test_client(), "bob", "pw"))
    site = make_app(tmp_path / "b", SESSION_COOKIE_SAMESITE="Strict")  # the site chose: kept
    assert "SameSite=Strict" in _set_cookie(form_login(site.test_client(), "bob", "pw"))
    off = make_app(tmp_path / "c", LPCALL_SESSION_COOKIE_SAMESITE=None)
    assert "SameSite" not in _set_cookie(form_login(off.test_client(), "bob", "pw"))
