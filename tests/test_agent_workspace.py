"""Agent workspace: login through the site's loader, CSRF, call buttons by profile and switch, escaping,
live permission changes and a server without a call service."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from support import start_live_server
from wsclients import Agent as AgentClient
from wsclients import Consumer

from flask_lpcall import LPCall
from flask_lpcall.core.agents import PERM_VIDEO, PERM_VOICE, Agent


def make_app(agents: dict[str, Agent], **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="workspace-test", TESTING=True, **config)
    ext = LPCall()
    ext.agent_loader(lambda agent_id: agents.get(agent_id))
    ext.agent_authenticator(lambda u, p: agents.get(u) if p == "pw" else None)
    ext.init_app(app)
    return app


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def login(client: Any, user: str, password: str = "pw") -> Any:
    token = csrf(client.get("/lpcall/agent/login").get_data(as_text=True))
    return client.post("/lpcall/agent/login", data={"username": user, "password": password, "csrf_token": token})


def test_login_logout_and_csrf() -> None:
    app = make_app({"bob": Agent("bob", "Bob", frozenset({PERM_VOICE}))})
    client = app.test_client()
    resp = client.get("/lpcall/agent/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/lpcall/agent/login")
    page = client.get("/lpcall/agent/login").get_data(as_text=True)
    assert '<label for="lpcall-username">User name</label>' in page and 'type="password"' in page
    no_token = client.post("/lpcall/agent/login", data={"username": "bob", "password": "pw"})
    assert no_token.status_code == 400 and "CSRF" in no_token.get_data(as_text=True)
    wrong = login(client, "bob", "nope")
    assert wrong.status_code == 401 and "Unknown user name or password." in wrong.get_data(as_text=True)
    ok = login(client, "bob")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/lpcall/agent/")
    workspace = client.get("/lpcall/agent/")
    html = workspace.get_data(as_text=True)
    assert workspace.status_code == 200 and 'data-agent-id="bob"' in html and "Log out" in html
    assert workspace.headers["Cache-Control"] == "no-store" and workspace.headers["X-Frame-Options"] == "DENY"
    assert "data-lpcall-tag" not in html  # the workspace is not a brand page: no tag
    assert client.post("/lpcall/agent/logout").status_code == 400  # no token: still logged in
    assert client.get("/lpcall/agent/").status_code == 200
    assert client.post("/lpcall/agent/logout", data={"csrf_token": csrf(html)}).status_code == 302
    assert client.get("/lpcall/agent/").status_code == 302


@pytest.mark.parametrize("voice_switch", [True, False])
@pytest.mark.parametrize("video_switch", [True, False])
def test_buttons_need_permission_and_switch(voice_switch: bool, video_switch: bool) -> None:
    agents = {
        "alice": Agent("alice", "Alice", frozenset({PERM_VOICE})),
        "bob": Agent("bob", "Bob", frozenset({PERM_VOICE, PERM_VIDEO})),
    }
    app = make_app(agents, LPCALL_VOICE_ENABLED=voice_switch, LPCALL_VIDEO_ENABLED=video_switch)
    for name, perms in (("alice", {"VOICE_CALL"}), ("bob", {"VOICE_CALL", "VIDEO_CALL"})):
        client = app.test_client()
        login(client, name)
        html = client.get("/lpcall/agent/").get_data(as_text=True)
        shown = {m for m in ("VOICE_CALL", "VIDEO_CALL") if f'data-mode="{m}"' in html}
        expected = {m for m in perms if {"VOICE_CALL": voice_switch, "VIDEO_CALL": video_switch}[m]}
        assert shown == expected, (name, voice_switch, video_switch)


def test_agent_name_is_escaped_and_texts_are_localised() -> None:
    evil = Agent("x", '<script>alert("x")</script>', frozenset())
    app = make_app({"x": evil}, LPCALL_LOCALE="de")
    client = app.test_client()
    login(client, "x")
    html = client.get("/lpcall/agent/").get_data(as_text=True)
    assert '<script>alert("x")</script>' not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "Abmelden" in html and "Arbeitsplatz" in html and 'lang="de"' in html


def test_invite_after_a_live_permission_change() -> None:
    agents = {"bob": Agent("bob", "Bob", frozenset({PERM_VOICE, PERM_VIDEO}))}
    app = make_app(agents)
    server = start_live_server(app)
    try:
        consumer = Consumer(server.url)
        consumer.connect()
        conv_id = consumer.open_conversation("Vera")
        bob = AgentClient(server.url, "bob", "pw")
        bob.connect()
        bob.take_and_open(conv_id)

        # The profile changes while the agent is logged in: the next invitation is refused.
        agents["bob"] = Agent("bob", "Bob", frozenset({PERM_VOICE}))
        refused = bob.client.request("call.Invite", {"conversationId": conv_id, "mode": "VIDEO_CALL"})
        assert refused["code"] == 403 and refused["body"]["error"]["code"] == "NO_PERMISSION"
        assert "Initiate live video conversation" in refused["body"]["error"]["message"]

        bad = bob.client.request("call.Invite", {"conversationId": conv_id, "mode": "SCREEN_SHARE"})
        assert bad["code"] == 400 and bad["body"]["error"]["field"] == "body.mode"
        extra = bob.client.request("agent.Take", {"conversationId": conv_id, "oops": 1})
        assert extra["code"] == 400 and extra["body"]["error"]["field"] == "body.oops"

        # Removed from the site: the socket refuses further invitations.
        del agents["bob"]
        gone = bob.client.request("call.Invite", {"conversationId": conv_id, "mode": "VOICE_CALL"})
        assert gone["code"] == 401 and gone["body"]["error"]["code"] == "NOT_AUTHENTICATED"
        consumer.close()
        bob.close()
    finally:
        server.stop()
