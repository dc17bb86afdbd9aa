"""Helpers of the agent tests: a logged-in test client, the workspace login form."""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Flask

from flask_lpcall.web.auth import SESSION_AGENT, SESSION_SID


def logged_in_client(app: Flask, agent_id: str) -> Any:
    """A test client holding an agent login, as the login form makes it (agent id and session id)."""
    client = app.test_client()
    sid = secrets.token_urlsafe(8)
    with client.session_transaction() as s:
        s[SESSION_AGENT] = agent_id
        s[SESSION_SID] = sid
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def form_login(client: Any, username: str, password: str, prefix: str = "/lpcall") -> Any:
    """Log in through the workspace login form; returns the POST's response."""
    page = client.get(f"{prefix}/agent/login")
    return client.post(f"{prefix}/agent/login", data={"csrf_token": csrf_of(page.get_data(as_text=True)),
                                                      "username": username, "password": password})
