"""Who is the agent of this request: the login session (cookie), CSRF, and Flask-Login.

Each login has a session id; logout records it in the store (``core.agents.session_key``), so a
copied cookie dies with it. The agents themselves and their permissions are ``core.agents``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, request, session, url_for

from ..core.agents import Agent, load_agent, session_valid
from ..optional import require
from ..state import LPCallState, get_state
from ..store.keys import CH_AGENTS, session_key

logger = logging.getLogger(__name__)

SESSION_AGENT = "lpcall_agent"
SESSION_CSRF = "lpcall_csrf"
SESSION_SID = "lpcall_sid"


class FlaskLoginBridge:
    """``LPCall.use_flask_login``: the site's Flask-Login ``current_user`` is the agent.

    ``permissions``: the name of a user attribute or a callable ``(user) -> iterable | None``
    giving the profile permissions; ``None`` means the user is not an agent. ``name``: an
    attribute name or a callable for the display name (default: ``user.name``, else the id).
    """

    def __init__(self, permissions: str | Callable[[Any], Any], name: str | Callable[[Any], Any] | None = None) -> None:
        self.login = require("flask_login", "LPCall.use_flask_login()")
        self.permissions = permissions
        self.name = name

    @staticmethod
    def _read(user: Any, how: str | Callable[[Any], Any]) -> Any:
        return how(user) if callable(how) else getattr(user, how, None)

    def to_agent(self, user: Any) -> Agent | None:
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        permissions = self._read(user, self.permissions)
        if permissions is None:
            return None  # a user of the site, but not an agent
        agent_id = str(user.get_id())
        name = self._read(user, self.name) if self.name is not None else getattr(user, "name", None)
        return Agent(id=agent_id, name=str(name or agent_id), permissions=frozenset(permissions))

    def current(self) -> Agent | None:
        return self.to_agent(self.login.current_user._get_current_object())

    def load(self, agent_id: str) -> Agent | None:
        manager = getattr(current_app, "login_manager", None)
        callback = getattr(manager, "_user_callback", None)
        return self.to_agent(callback(agent_id)) if callback is not None else None

    def login_url(self) -> str | None:
        view = getattr(getattr(current_app, "login_manager", None), "login_view", None)
        return url_for(view, next=url_for("lpcall.agent_workspace")) if view else None

    def logout(self) -> None:
        self.login.logout_user()


def start_session(agent_id: str) -> None:
    """Log ``agent_id`` in: a fresh session id (and CSRF token) in the session cookie."""
    session[SESSION_AGENT] = agent_id
    session[SESSION_SID] = secrets.token_urlsafe(24)
    session[SESSION_CSRF] = secrets.token_urlsafe(32)  # a fresh token after login


def end_session(state: LPCallState, lifetime: float) -> None:
    """Log out: the session id is recorded as ended in the store, then dropped from the cookie; the
    agent sockets of that login (on any worker) are told on the ``agents`` channel and close."""
    sid, agent_id = session.pop(SESSION_SID, None), session.pop(SESSION_AGENT, None)
    if sid:
        state.store.set(session_key(str(sid)), agent_id, ttl=lifetime)
        state.store.publish(CH_AGENTS, {"type": "logout", "sid": str(sid)})
    session.pop(SESSION_CSRF, None)


def current_agent() -> Any | None:
    """The logged-in agent (None if nobody, logged out, or unknown to the site's source)."""
    state = get_state()
    if state.extension.login_bridge is not None:
        return state.extension.login_bridge.current()
    agent_id = session.get(SESSION_AGENT)
    if not session_valid(state.store, agent_id, session.get(SESSION_SID)):
        return None
    try:
        return load_agent(state, str(agent_id))
    except Exception:
        logger.exception("loading agent %r failed", agent_id)
        return None


def csrf_token() -> str:
    token = session.get(SESSION_CSRF)
    if not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return str(token)


def check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    expected = session.get(SESSION_CSRF, "")
    if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, description="The form expired or did not come from this site (CSRF token missing or wrong). Reload and try again.")
