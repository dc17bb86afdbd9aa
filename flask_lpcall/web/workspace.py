"""The agent workspace: ``GET /agent/``, ``GET|POST /agent/login``, ``POST /agent/logout`` (CSRF-protected
forms) and the route of the agent socket ``GET /ws/agent`` (``sockets/agent.py``).

The site says who its agents are with ``@lpcall.agent_authenticator`` (login form) and
``@lpcall.agent_loader`` (session -> agent), like Flask-Login's ``user_loader``; without them the
built-in directory (``flask lpcall agent add``) is the source.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, session, url_for

from ..core.agents import PERM_REPORTS, agent_permissions, authenticate, call_buttons, uses_directory
from ..errors import NotAllowedError
from ..protocol import CLOSE_POLICY
from ..sockets.adapter import WebSocket
from ..sockets.agent import AgentConnection
from ..sockets.envelope import FrameSocket
from ..sockets.route import sock
from ..state import LPCallState, get_state
from .auth import SESSION_AGENT, SESSION_SID, check_csrf, csrf_token, current_agent, end_session, start_session

logger = logging.getLogger(__name__)


def workspace_context(agent: Any) -> dict[str, Any]:
    state = get_state()
    return {
        "agent": agent,
        "texts": state.texts,
        "csrf_token": csrf_token(),
        "buttons": call_buttons(agent, state.settings),
        "base": state.url_prefix,
        "lang": state.settings.locale,
        "can_view_reports": PERM_REPORTS in agent_permissions(agent),
    }


def agent_workspace() -> Any:
    agent = current_agent()
    if agent is None:
        return redirect(url_for("lpcall.agent_login"))
    resp = Response(render_template("lpcall/agent_workspace.html", **workspace_context(agent)))
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def agent_login() -> Any:
    state = get_state()
    error = None
    status = 200
    bridge = state.extension.login_bridge
    if bridge is not None:  # agents log in through the site (Flask-Login)
        if current_agent() is not None:
            return redirect(url_for("lpcall.agent_workspace"))
        target = bridge.login_url()
        if target:
            return redirect(target)
        abort(401, description=state.texts["agent.site_login"])
    if request.method == "POST":
        check_csrf()
        username = request.form.get("username", "")[:200]
        password = request.form.get("password", "")[:500]
        agent = authenticate(state, username, password) if username and password else None
        if agent is not None:
            start_session(agent.id)
            logger.info("agent %s logged in", agent.id)
            return redirect(url_for("lpcall.agent_workspace"))
        error = state.texts["agent.bad_login"]
        status = 401
    elif current_agent() is not None:
        return redirect(url_for("lpcall.agent_workspace"))
    html = render_template("lpcall/agent_login.html", texts=state.texts, csrf_token=csrf_token(), error=error,
                           base=state.url_prefix, lang=state.settings.locale)
    resp = Response(html, status=status)
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def agent_logout() -> Any:
    check_csrf()
    state = get_state()
    if state.extension.login_bridge is not None:
        state.extension.login_bridge.logout()
    agent_id = session.get(SESSION_AGENT)
    # the server remembers this login as ended: a copy of the cookie opens nothing any more
    end_session(state, current_app.permanent_session_lifetime.total_seconds())
    if agent_id:
        logger.info("agent %s logged out", agent_id)
    return redirect(url_for("lpcall.agent_login"))


def agent_socket(ws: WebSocket) -> None:
    """The route (sockets/route.py) checked the Origin and declined compression."""
    state = get_state()
    try:
        agent = current_agent()
    except Exception:
        logger.exception("agent_loader failed")
        agent = None
    if agent is None:
        conn = FrameSocket(ws, max_frame_bytes=state.settings.max_frame_bytes, name="agent")
        conn.error(None, NotAllowedError("log in to the agent workspace first", code="NOT_AUTHENTICATED"))
        conn.close(CLOSE_POLICY, "not logged in")
        conn.finish()
        return
    AgentConnection(state, ws, agent, session.get(SESSION_SID)).run()


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/agent/", view_func=agent_workspace, methods=["GET"])
    bp.add_url_rule("/agent/login", methods=["GET", "POST"], view_func=agent_login)
    bp.add_url_rule("/agent/logout", view_func=agent_logout, methods=["POST"])
    sock.route("/ws/agent", bp=bp)(agent_socket)


# -- start-up -------------------------------------------------------------------------
def warn_at_first_request(app: Flask, state: LPCallState) -> None:
    """One start-up log line when nobody can log in, at the first request (not in init_app: a site may
    register its hooks after ``LPCall(app)``)."""
    checked: list[bool] = []

    def check_once() -> None:
        # at the first request, not in init_app: a site may register its hooks after LPCall(app)
        if checked:
            return
        checked.append(True)
        warn_if_nobody_can_log_in(app, state)

    app.before_request(check_once)


def warn_if_nobody_can_log_in(app: Flask, state: LPCallState) -> bool:
    """Log how to add an agent when the directory is the source and holds nobody; True if it logged."""
    if not uses_directory(state.extension):
        return False
    directory = state.agent_directory
    try:
        if directory.count() > 0:
            return False
    except Exception:
        logger.exception("flask-lpcall: cannot read the agent directory %s", directory.path)
        return False
    logger.warning(
        "flask-lpcall: no agent can log in to %s/agent/ yet: the agent directory %s is empty and the site "
        "registered no agent hooks. Add one with: flask --app %s lpcall agent add NAME --voice --video "
        "(it asks for the password)",
        state.url_prefix, directory.path, app.import_name,
    )
    return True
