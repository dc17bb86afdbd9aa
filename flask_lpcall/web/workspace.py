"""Agents: who they are, what their profile allows, and the agent workspace.

* ``GET  /agent/``        the workspace (login required)
* ``GET|POST /agent/login``, ``POST /agent/logout`` (CSRF-protected forms)
* ``GET  /ws/agent``      the agent socket (PROTOCOL §4; session cookie)

The site says who its agents are with ``@lpcall.agent_authenticator`` (login form)
and ``@lpcall.agent_loader`` (session -> agent), like Flask-Login's ``user_loader``.
A profile permission shows a call button only when the global switch is on too, and
the server enforces the same rule (:func:`check_can_invite`) on every ``call.Invite``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, session, url_for

from ..core.schemas import AGENT_REQUESTS, MODES
from ..errors import BadFrameError, InvalidStateError, NotAllowedError, NotFoundError
from ..optional import require

logger = logging.getLogger(__name__)

PERM_VOICE = "Initiate voice conversation"
PERM_VIDEO = "Initiate live video conversation"
PERM_REPORTS = "View reports"

#: mode -> (profile permission, global switch)
MODE_RULES: dict[str, tuple[str, str]] = {
    "VOICE_CALL": (PERM_VOICE, "LPCALL_VOICE_ENABLED"),
    "VIDEO_CALL": (PERM_VIDEO, "LPCALL_VIDEO_ENABLED"),
}

#: systemKey of the transcript event that asks the consumer to run the network check (PROTOCOL §3).
NETCHECK_REQUEST_KEY = "system.netcheck_request"

SESSION_AGENT = "lpcall_agent"
SESSION_CSRF = "lpcall_csrf"
SESSION_SID = "lpcall_sid"
#: store key prefix of an ended login (PROTOCOL §6): ``agent-logout:<sid>`` -> agent id, written at logout and kept
#: as long as a session cookie can live (PERMANENT_SESSION_LIFETIME: Flask refuses older cookies by itself)
SESSION_KEY_PREFIX = "agent-logout:"


@dataclass(frozen=True)
class Agent:
    """An agent as the site's ``agent_loader`` returns it."""

    id: str
    name: str
    permissions: frozenset[str] = field(default_factory=frozenset)


# -- permissions (pure) ---------------------------------------------------------
def agent_permissions(agent: Any) -> frozenset[str]:
    return frozenset(getattr(agent, "permissions", None) or ())


def mode_allowed(agent: Any, mode: str, settings: Mapping[str, Any]) -> bool:
    """The button rule: the profile permission AND the global switch (the switch overrides every profile)."""
    rule = MODE_RULES.get(mode)
    return bool(rule and settings[rule[1]] and rule[0] in agent_permissions(agent))


def call_buttons(agent: Any, settings: Mapping[str, Any]) -> dict[str, bool]:
    return {mode: mode_allowed(agent, mode, settings) for mode in MODES}


def check_can_invite(agent: Any, conversation: Mapping[str, Any] | None, mode: str, settings: Mapping[str, Any]) -> None:
    """Raise unless ``agent`` may invite ``conversation``'s consumer to a ``mode`` call.

    Codes: ``BAD_FRAME`` (mode), ``MODE_DISABLED`` (global switch off), ``NO_PERMISSION``
    (profile), ``NOT_FOUND``, ``INVALID_STATE`` (closed), ``NOT_ASSIGNED`` (another
    agent's or an unassigned conversation), ``NO_COBROWSE`` (the consumer did not
    declare ``CO_BROWSE``).
    """
    rule = MODE_RULES.get(mode)
    if rule is None:
        raise BadFrameError("body.mode: must be VOICE_CALL or VIDEO_CALL", field="body.mode")
    permission, switch = rule
    if not settings[switch]:
        raise NotAllowedError(f"body.mode: {mode} is switched off for every agent ({switch})", code="MODE_DISABLED",
                              field="body.mode")
    if permission not in agent_permissions(agent):
        raise NotAllowedError(f"body.mode: your profile lacks the permission {permission!r}", code="NO_PERMISSION",
                              field="body.mode")
    if conversation is None:
        raise NotFoundError("body.conversationId: unknown conversation", field="body.conversationId")
    if conversation.get("state") != "OPEN":
        raise InvalidStateError("body.conversationId: the conversation is closed", field="body.conversationId")
    if conversation.get("agentId") != agent.id:
        raise NotAllowedError("body.conversationId: the conversation is not assigned to you", code="NOT_ASSIGNED",
                              field="body.conversationId")
    if "CO_BROWSE" not in (conversation.get("features") or []):
        raise NotAllowedError("body.conversationId: the consumer's window did not declare CO_BROWSE; it cannot receive "
                              "call invitations", code="NO_COBROWSE", field="body.conversationId")


# -- where agents come from: the site's hooks, Flask-Login, or the built-in directory ----
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


def uses_directory(extension: Any) -> bool:
    """No hooks and no Flask-Login: agents log in against the built-in directory."""
    return (extension.login_bridge is None and extension.agent_loader_fn is None
            and extension.agent_authenticator_fn is None)


def _from_entry(entry: Any) -> Agent | None:
    return Agent(id=entry.username, name=entry.name, permissions=entry.permissions) if entry is not None else None


def load_agent(state: Any, agent_id: str) -> Any | None:
    """``agent_id`` -> the agent, from whichever source the site uses (None if unknown)."""
    ext = state.extension
    if ext.login_bridge is not None:
        return ext.login_bridge.load(agent_id)
    if ext.agent_loader_fn is not None:
        return ext.agent_loader_fn(agent_id)
    if uses_directory(ext):
        return _from_entry(state.services["agent_directory"].get(agent_id))
    return None


def authenticate(state: Any, username: str, password: str) -> Any | None:
    """The login form's check: the site's authenticator, else the built-in directory."""
    ext = state.extension
    if ext.agent_authenticator_fn is not None:
        return ext.agent_authenticator_fn(username, password)
    if uses_directory(ext):
        return _from_entry(state.services["agent_directory"].authenticate(username, password))
    return None


# -- sessions: each login has an id; logout records it on the server, so a copied cookie dies with it ----
def _session_key(sid: str) -> str:
    return SESSION_KEY_PREFIX + sid


def start_session(agent_id: str) -> None:
    """Log ``agent_id`` in: a fresh session id (and CSRF token) in the session cookie."""
    session[SESSION_AGENT] = agent_id
    session[SESSION_SID] = secrets.token_urlsafe(24)
    session[SESSION_CSRF] = secrets.token_urlsafe(32)  # a fresh token after login


def end_session(state: Any, lifetime: float) -> None:
    """Log out: the session id is recorded as ended in the store, then dropped from the cookie; the
    agent sockets of that login (on any worker) are told on the ``agents`` channel and close."""
    from ..core.conversations import CH_AGENTS

    sid, agent_id = session.pop(SESSION_SID, None), session.pop(SESSION_AGENT, None)
    if sid:
        state.store.set(_session_key(str(sid)), agent_id, ttl=lifetime)
        state.store.publish(CH_AGENTS, {"type": "logout", "sid": str(sid)})
    session.pop(SESSION_CSRF, None)


def session_valid(state: Any, agent_id: Any, sid: Any) -> bool:
    """Whether the cookie holds a login (agent and session id) that did not log out.

    A record of ended logins rather than of live ones: a store that lost its data (Redis restarted
    empty) keeps agents logged in instead of throwing everyone out.
    """
    if not agent_id or not sid:
        return False
    return state.store.get(_session_key(str(sid))) is None


# -- session helpers (Flask) ----------------------------------------------------
def current_agent() -> Any | None:
    """The logged-in agent (None if nobody, logged out, or unknown to the site's source)."""
    from ..extension import get_state

    state = get_state()
    if state.extension.login_bridge is not None:
        return state.extension.login_bridge.current()
    agent_id = session.get(SESSION_AGENT)
    if not session_valid(state, agent_id, session.get(SESSION_SID)):
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


# -- agent socket ---------------------------------------------------------------
class AgentConnection:
    """One workspace socket of one logged-in agent."""

    def __init__(self, state: Any, ws: Any, agent: Any) -> None:
        from ..sockets.consumer import conversations
        from ..sockets.envelope import FrameSocket

        self.state = state
        self.settings = state.settings
        self.agent = agent
        self.sid = session.get(SESSION_SID)
        self.service = conversations(state)
        self.conn = FrameSocket(ws, max_frame_bytes=self.settings["LPCALL_MAX_FRAME_BYTES"], name="agent",
                                keepalive=state.services["keepalive"])
        self.socket_id = uuid.uuid4().hex
        self.available = False
        self.list_sub: Any = None
        self.opened: dict[str, Any] = {}
        self.stale: list[Any] = []  # transcript subscriptions of conversations another agent took
        self.handlers = {
            "agent.Subscribe": self.subscribe,
            "agent.SetAvailable": self.set_available,
            "agent.Take": self.take,
            "agent.Open": self.open,
            "ms.PublishEvent": self.publish_event,
            "cm.CloseConversation": self.close_conversation,
            "call.Invite": self.call_invite,
            "call.Cancel": self.call_cancel,
            "call.Active": self.call_active,
            "netcheck.Request": self.netcheck_request,
            "ping": self.ping,
        }

    def run(self) -> None:
        try:
            self.conn.serve(self.handlers, AGENT_REQUESTS, on_frame=self._touch)
        finally:
            from ..sockets.transport import quietly

            if self.available:
                quietly("releasing availability", self.service.set_available, self.agent.id, self.agent.name,
                        self.socket_id, False)
            if self.list_sub is not None:
                quietly("closing the list subscription", self.list_sub.close)
            for sub in [*self.opened.values(), *self.stale]:
                quietly("closing a transcript subscription", sub.close)
            self.conn.finish()

    def _logged_out(self) -> None:
        """The login of this socket ended (logout in another tab or request): it closes."""
        from ..sockets.transport import CLOSE_POLICY

        self.conn.error(None, NotAllowedError("you logged out; log in again", code="NOT_AUTHENTICATED"))
        self.conn.close(CLOSE_POLICY, "logged out")

    def _touch(self) -> None:
        if self.available:
            self.service.touch_presence(self.socket_id)

    def _visible(self, conv_id: str) -> dict[str, Any]:
        doc = self.service.get(conv_id)
        if doc is None:
            raise NotFoundError(f"body.conversationId: unknown conversation {conv_id!r}", field="body.conversationId")
        if not self.service.visible_to_agent(doc, self.agent.id):
            raise NotAllowedError("body.conversationId: the conversation is assigned to another agent", code="NOT_ASSIGNED",
                                  field="body.conversationId")
        return doc

    def _mine(self, conv_id: str) -> dict[str, Any]:
        doc = self._visible(conv_id)
        if doc.get("agentId") != self.agent.id:
            raise NotAllowedError("body.conversationId: take the conversation first (agent.Take)", code="NOT_ASSIGNED",
                                  field="body.conversationId")
        return doc

    def _row(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.service.row(doc)

    # -- requests ----------------------------------------------------------------
    def subscribe(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        lock = threading.RLock()

        def on_bus(message: Any) -> None:
            if not isinstance(message, dict):
                return
            if message.get("type") == "logout":
                if self.sid and message.get("sid") == self.sid:
                    self._logged_out()
                return
            if message.get("type") == "last":
                # A socket that has the conversation open gets the event itself and updates its list from it.
                if message["agentId"] in (None, self.agent.id) and message["conversationId"] not in self.opened:
                    self.conn.notify("agent.LastMessage", {"conversationId": message["conversationId"],
                                                           "lastMessage": message["lastMessage"]})
                return
            if message.get("type") != "meta":
                return
            doc = message["conversation"]
            with lock:
                if self.service.visible_to_agent(doc, self.agent.id):
                    # no store read in a bus callback: the row has no lastMessage, the client keeps its own
                    self.conn.notify("agent.ConversationChange", {"conversation": self.service.summary(doc),
                                                                  "visible": True})
                else:  # taken by another agent: just enough to drop it from the list
                    opened = self.opened.pop(doc["convId"], None)
                    if opened is not None:  # it stops receiving that transcript at once
                        opened.active = False
                        self.stale.append(opened)
                    self.conn.notify(
                        "agent.ConversationChange",
                        {"conversation": {"convId": doc["convId"], "agentId": doc["agentId"], "state": doc["state"]},
                         "visible": False},
                    )

        with lock:
            if self.list_sub is None:
                self.list_sub = self.service.agents_fanout.subscribe(on_bus)
            rows = [self._row(d) for d in self.service.for_agent(self.agent.id)]
            self.conn.respond(env["id"], env["type"], {"agentId": self.agent.id, "name": self.agent.name})
            self.conn.notify("agent.ConversationList", {"conversations": rows})
        self._set_available(body["available"])

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            self.service.set_available(self.agent.id, self.agent.name, self.socket_id, available)

    def set_available(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        self._set_available(body["available"])
        return {"available": self.available}

    def take(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self.service.take(body["conversationId"], self.agent.id, self.agent.name)
        return {"conversation": self._row(doc)}

    def open(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        from ..sockets.consumer import MessagingSubscription

        doc = self._visible(body["conversationId"])
        old = self.opened.pop(doc["convId"], None)
        if old is not None:
            old.close()
        sub = MessagingSubscription(self.conn, self.state.store, self.service, doc["convId"], body["fromSeq"])
        self.opened[doc["convId"]] = sub
        self.conn.respond(env["id"], env["type"], {"conversation": self._row(doc)})
        sub.send_history()

    def publish_event(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        from ..core.conversations import ROLE_AGENT
        from ..sockets.consumer import check_message

        doc = self._mine(body["conversationId"])
        text = check_message(body["event"]["message"], self.settings["LPCALL_MAX_MESSAGE_LENGTH"])
        event = self.service.post(doc["convId"], ROLE_AGENT, self.agent.id, text, doc=doc)
        return {"sequence": event["sequence"]}

    def close_conversation(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self._mine(body["conversationId"])
        closed = self.service.close(doc["convId"])
        return {"conversationId": closed["convId"], "state": closed["state"]}

    def _calls(self) -> Any:
        from ..sockets.transport import NotImplementedYetError

        calls = self.state.services.get("calls")
        if calls is None:
            raise NotImplementedYetError("calls are not available on this server (no call service installed)")
        return calls

    def _fresh_agent(self) -> Any:
        """Reload the agent so a changed profile, a removed agent or a logout counts at once."""
        own_session = self.state.extension.login_bridge is None
        if own_session and not session_valid(self.state, self.agent.id, self.sid):
            raise NotAllowedError("you logged out; log in again", code="NOT_AUTHENTICATED")
        agent = load_agent(self.state, self.agent.id)
        if agent is None:
            raise NotAllowedError("you are no longer a known agent; log in again", code="NOT_AUTHENTICATED")
        self.agent = agent
        return agent

    def call_invite(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        agent = self._fresh_agent()
        conv = self.service.get(body["conversationId"])
        check_can_invite(agent, conv, body["mode"], self.settings)
        result: dict[str, Any] = self._calls().invite(agent, body["conversationId"], body["mode"])
        return result

    def call_cancel(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        result = self._calls().cancel(self._fresh_agent(), body["serviceId"])
        return {"serviceId": body["serviceId"], "sessionState": "CLOSED", "call": result}

    def call_active(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        calls = self.state.services.get("calls")
        return {"calls": calls.active_for_agent(self.agent.id) if calls is not None else []}

    def netcheck_request(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Ask the consumer to run the pre-call network check (PROTOCOL §4).

        Posts a SYSTEM message with ``systemKey`` :data:`NETCHECK_REQUEST_KEY`; the engagement window
        renders it with a "Check my network" button, and the result comes back as ``system.netcheck``.
        """
        from ..sockets.transport import NotImplementedYetError

        doc = self._mine(body["conversationId"])
        if doc.get("state") != "OPEN":
            raise InvalidStateError("body.conversationId: the conversation is closed", field="body.conversationId")
        if self.state.services.get("netcheck") is None:
            raise NotImplementedYetError("the network check is not available on this server")
        event = self.service.add_system_message(doc["convId"], NETCHECK_REQUEST_KEY, agent=self.agent.name)
        if event is None:
            raise NotFoundError("body.conversationId: unknown conversation", field="body.conversationId")
        logger.info("agent %s asked conversation %s for a network check", self.agent.id, doc["convId"])
        return {"conversationId": doc["convId"], "sequence": event["sequence"], "systemKey": NETCHECK_REQUEST_KEY}

    def ping(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {}


# -- routes -----------------------------------------------------------------------
def register(bp: Blueprint) -> None:
    from ..extension import get_state
    from ..sockets.envelope import FrameSocket
    from ..sockets.route import sock
    from ..sockets.transport import CLOSE_POLICY

    def workspace_context(agent: Any) -> dict[str, Any]:
        state = get_state()
        return {
            "agent": agent,
            "texts": state.texts,
            "csrf_token": csrf_token(),
            "buttons": call_buttons(agent, state.settings),
            "base": state.url_prefix,
            "lang": state.settings["LPCALL_LOCALE"],
            "can_view_reports": PERM_REPORTS in agent_permissions(agent),
        }

    @bp.get("/agent/")
    def agent_workspace() -> Any:
        agent = current_agent()
        if agent is None:
            return redirect(url_for("lpcall.agent_login"))
        resp = Response(render_template("lpcall/agent_workspace.html", **workspace_context(agent)))
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @bp.route("/agent/login", methods=["GET", "POST"])
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
                               base=state.url_prefix, lang=state.settings["LPCALL_LOCALE"])
        resp = Response(html, status=status)
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @bp.post("/agent/logout")
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

    @sock.route("/ws/agent", bp=bp)
    def agent_socket(ws: Any) -> None:
        state = get_state()
        try:
            agent = current_agent()
        except Exception:
            logger.exception("agent_loader failed")
            agent = None
        if agent is None:
            conn = FrameSocket(ws, max_frame_bytes=state.settings["LPCALL_MAX_FRAME_BYTES"], name="agent")
            conn.error(None, NotAllowedError("log in to the agent workspace first", code="NOT_AUTHENTICATED"))
            conn.close(CLOSE_POLICY, "not logged in")
            conn.finish()
            return
        AgentConnection(state, ws, agent).run()


# -- start-up -------------------------------------------------------------------------
def init_state(app: Flask, state: Any) -> None:
    """The built-in directory (opened lazily), and one start-up log line when nobody can log in."""
    from ..core.directory import AgentDirectory, directory_path

    directory = AgentDirectory(directory_path(app.instance_path, state.settings["LPCALL_AGENT_DB"]))
    state.services["agent_directory"] = directory
    checked: list[bool] = []

    def check_once() -> None:
        # at the first request, not in init_app: a site may register its hooks after LPCall(app)
        if checked:
            return
        checked.append(True)
        warn_if_nobody_can_log_in(app, state)

    app.before_request(check_once)


def warn_if_nobody_can_log_in(app: Flask, state: Any) -> bool:
    """Log how to add an agent when the directory is the source and holds nobody; True if it logged."""
    if not uses_directory(state.extension):
        return False
    directory = state.services["agent_directory"]
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
