"""``LPCall``: the Flask extension object. ``init_app`` builds the app's :class:`LPCallState` (state.py)
in the order written below, registers the one blueprint and the tag injection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, has_request_context, request
from flask.sessions import SecureCookieSessionInterface

from . import signals
from .config import Settings
from .core.callmanager import CallManager
from .core.conversations import ConversationService
from .core.directory import AgentDirectory, directory_path
from .core.reports import ReportService, report_db_path
from .core.tokens import TokenSigner
from .errors import ConfigError
from .sockets import call as call_socket
from .sockets.keepalive import Keepalive
from .state import LPCallState, get_state
from .store import store_from_url
from .texts import build_texts
from .web import api, assets, callpage, consumer, jsonapi, netcheck, reports, workspace
from .web import tag as tagging
from .web.auth import FlaskLoginBridge

logger = logging.getLogger(__name__)


class LPCall:
    """The flask-lpcall extension.

    ``LPCall(app)`` or ``lpcall = LPCall(); lpcall.init_app(app)``. The site
    tells who its agents are with :meth:`agent_loader` and :meth:`agent_authenticator`.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.agent_loader_fn: Callable[[str], Any] | None = None
        self.agent_authenticator_fn: Callable[[str, str], Any] | None = None
        self.login_bridge: Any = None
        if app is not None:
            self.init_app(app)

    # -- site hooks (Flask-Login style) ----------------------------------------
    def agent_loader(self, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Register ``fn(agent_id) -> Agent | None``."""
        self.agent_loader_fn = fn
        return fn

    def agent_authenticator(self, fn: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Register ``fn(username, password) -> Agent | None`` for the workspace login form."""
        self.agent_authenticator_fn = fn
        return fn

    def use_flask_login(
        self, permissions: str | Callable[[Any], Any] = "lpcall_permissions", name: str | Callable[[Any], Any] | None = None
    ) -> None:
        """Agents are the site's Flask-Login users: ``current_user`` is the logged-in agent.

        ``permissions``: a user attribute name or a callable ``(user) -> iterable of profile
        permissions``, or ``None`` for a user who is not an agent. ``name``: an attribute name or
        a callable for the display name (default ``user.name``, else the user id). The workspace's
        login page sends agents to ``login_manager.login_view``; its logout calls ``logout_user()``.
        Needs ``pip install 'flask-lpcall[login]'``.
        """
        self.login_bridge = FlaskLoginBridge(permissions, name)

    exempt = staticmethod(tagging.exempt)

    # -- Flask extension protocol ------------------------------------------------
    def init_app(self, app: Flask) -> None:
        settings = Settings.from_config(app.config)
        secret = app.config.get("SECRET_KEY")
        if not secret:
            raise ConfigError("SECRET_KEY", "must be set: flask-lpcall signs consumer, agent and call tokens with it")
        state = build_state(self, app, settings, secret)
        app.extensions["lpcall"] = state
        _session_cookie(app, settings.session_cookie_samesite)
        consumer.configure_sockets(app, state)
        app.register_blueprint(_blueprint(), url_prefix=state.url_prefix)
        app.jinja_env.globals["lpcall_tag"] = lambda: tagging.manual_tag(get_state())
        # this app's state and settings bound in: no lookup per response
        state.injector = tagging.make_injector(state)
        app.after_request(state.injector)
        workspace.warn_at_first_request(app, state)
        logger.debug("flask-lpcall ready under %s", state.url_prefix)


def build_state(extension: LPCall, app: Flask, settings: Settings, secret: str) -> LPCallState:
    """The app's services, each built from the ones above it."""
    texts = build_texts(settings.locale, settings.texts)
    store = store_from_url(settings.store)
    conversations = ConversationService(
        store,
        texts,
        ttl=settings.conversation_ttl,
        presence_ttl=max(3 * settings.heartbeat_interval, 5.0),
        on_opened=lambda doc: signals.conversation_opened.send(app, conversation=doc),
        on_message=lambda doc, event: signals.message_sent.send(app, conversation=doc, event=event),
    )
    signer = TokenSigner(secret)
    calls = CallManager(store, settings, texts, signer, conversations=lambda: conversations, sender=app)
    reports_service = ReportService(report_db_path(app.instance_path, settings.report_db))
    # weak=False: the receiver is a bound method of a service only the state holds;
    # blinker drops the connection when the app (the sender) goes away.
    signals.call_ended.connect(reports_service.on_call_ended, sender=app, weak=False)
    return LPCallState(
        extension=extension,
        settings=settings,
        texts=texts,
        store=store,
        signer=signer,
        # every socket is pinged each heartbeat and dropped when it misses a pong, by one thread (keepalive.py)
        keepalive=Keepalive(settings.heartbeat_interval),
        conversations=conversations,
        calls=calls,
        agent_directory=AgentDirectory(directory_path(app.instance_path, settings.agent_db)),
        reports=reports_service,
        netcheck=netcheck.NetcheckService(settings, store),
        eager_js=tagging.eager_script_source(),
        url_prefix=settings.url_prefix,
    )


class _SecureOnHttpsSessionInterface(SecureCookieSessionInterface):
    """Flask's cookie session, with ``Secure`` on every cookie sent over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or (has_request_context() and request.is_secure))


def _session_cookie(app: Flask, samesite: str | None) -> None:
    """The agent's login rides on the site's session cookie: ``SameSite`` (unless the site set
    ``SESSION_COOKIE_SAMESITE`` itself) and ``Secure`` on HTTPS (behind a TLS proxy: ProxyFix)."""
    if app.config.get("SESSION_COOKIE_SAMESITE") is None and samesite is not None:
        app.config["SESSION_COOKIE_SAMESITE"] = samesite
    if type(app.session_interface) is SecureCookieSessionInterface:  # a site's own interface is left alone
        app.session_interface = _SecureOnHttpsSessionInterface()


def _blueprint() -> Blueprint:
    """The one blueprint: every route of the extension, in this order."""
    bp = Blueprint("lpcall", __name__, template_folder="templates")
    jsonapi.register_error_handlers(bp)
    for register in (assets.register, jsonapi.register, api.register, consumer.register, workspace.register,
                     call_socket.register, reports.register, netcheck.register, callpage.register):
        register(bp)
    return bp
