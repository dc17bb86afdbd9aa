"""``LPCall``: the Flask extension object (init_app, tag injection, loaders)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, has_request_context, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .config import validate_config
from .core.tokens import TokenSigner
from .errors import ConfigError, LPCallError, http_status
from .store import Store, store_from_url
from .texts import build_texts
from .web import tag as tagging

logger = logging.getLogger(__name__)

#: Modules that add routes to the blueprint; each has ``register(bp)``.
_ROUTE_MODULES = ("web.assets", "web.api", "sockets.consumer", "web.workspace", "sockets.call", "web.reports", "web.netcheck", "web.callpage")


@dataclass
class LPCallState:
    """Everything the extension keeps for one app, at ``app.extensions["lpcall"]``."""

    extension: LPCall
    settings: dict[str, Any]
    texts: dict[str, str]
    store: Store
    signer: TokenSigner
    eager_js: str
    url_prefix: str
    services: dict[str, Any] = field(default_factory=dict)
    #: the nonce-less tag as bytes, keyed by what it is built from (tag.py)
    tag_cache: dict[Any, bytes] = field(default_factory=dict)
    #: the after_request hook that injects the tag (tag.make_injector: settings read once, at init_app)
    injector: Callable[[Response], Response] | None = None


def get_state(app: Flask | None = None) -> LPCallState:
    """The extension state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    try:
        return target.extensions["lpcall"]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("LPCall(app) / init_app(app) has not been called for this app") from None


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
        from .web.workspace import FlaskLoginBridge

        self.login_bridge = FlaskLoginBridge(permissions, name)

    exempt = staticmethod(tagging.exempt)

    # -- Flask extension protocol ------------------------------------------------
    def init_app(self, app: Flask) -> None:
        settings = validate_config(app.config)
        texts = build_texts(settings["LPCALL_LOCALE"], settings["LPCALL_TEXTS"])
        secret = app.config.get("SECRET_KEY")
        if not secret:
            raise ConfigError("SECRET_KEY", "must be set: flask-lpcall signs consumer, agent and call tokens with it")
        state = LPCallState(
            extension=self,
            settings=settings,
            texts=texts,
            store=store_from_url(settings["LPCALL_STORE"]),
            signer=TokenSigner(secret),
            eager_js=tagging.eager_script_source(),
            url_prefix=settings["LPCALL_URL_PREFIX"],
        )
        app.extensions["lpcall"] = state
        _session_cookie(app, settings["LPCALL_SESSION_COOKIE_SAMESITE"])
        app.register_blueprint(_blueprint(app), url_prefix=state.url_prefix)
        app.jinja_env.globals["lpcall_tag"] = lambda: tagging.manual_tag(get_state())

        # this app's state and settings bound in: no lookup per response
        state.injector = tagging.make_injector(state)
        app.after_request(state.injector)

        logger.debug("flask-lpcall ready under %s", state.url_prefix)


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


def json_error(exc: LPCallError, status: int | None = None) -> tuple[Response, int]:
    """``{"error": {"code", "message", "field"?}}`` with the status that fits ``exc``."""
    return jsonify({"error": exc.to_dict()}), status if status is not None else http_status(exc)


#: HTTP errors of the JSON APIs (werkzeug's) -> the registry's code (errors.ERROR_CODES).
_HTTP_CODES = {400: "BAD_FRAME", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE"}


def _is_json_api() -> bool:
    """The request is for one of the blueprint's JSON endpoints (``<prefix>/api/…``)."""
    state = current_app.extensions.get("lpcall")
    prefix = state.url_prefix.rstrip("/") if state is not None else ""
    return request.path.startswith(f"{prefix}/api/")


def _http_error(exc: HTTPException) -> Any:
    """A werkzeug HTTP error on a JSON endpoint is a JSON error; pages keep Flask's own answer."""
    if not _is_json_api():
        return exc
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "BAD_FRAME")
    field = "(body)" if status in (400, 413) else None
    err = LPCallError(exc.description or exc.name, code=code, field=field)
    resp, _ = json_error(err, status)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp, status


def _server_fault(exc: Exception) -> Any:
    """Anything else escaping a route is a fault of the server: logged, then a JSON 500 on a JSON
    endpoint (``INTERNAL``); elsewhere it goes on to Flask's own handling, as if not caught. Client input never gets here: every
    body is read by ``api.json_body`` and validated by a schema (issue 14)."""
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if not _is_json_api():
        raise exc
    logger.exception("flask-lpcall: %s %s failed", request.method, request.path)
    return json_error(LPCallError("internal error; the request was not processed", code="INTERNAL"), 500)


def _blueprint(app: Flask) -> Blueprint:
    import importlib

    bp = Blueprint("lpcall", __name__, template_folder="templates")
    # Any LPCallError escaping a route (a store outage included) is a JSON error, never a bare 500.
    bp.register_error_handler(LPCallError, json_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _server_fault)
    modules = [importlib.import_module(f".{name}", __package__) for name in _ROUTE_MODULES]
    for module in modules:
        module.register(bp)
    for module in modules:
        hook = getattr(module, "init_state", None)
        if hook is not None:
            hook(app, get_state(app))
    return bp
