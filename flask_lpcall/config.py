"""Every ``LPCALL_*`` configuration key, its default and its validation.

This module is the one place where a key is defined. ``validate_config`` runs in
``LPCall.init_app``: a wrong type or value raises :class:`ConfigError` naming the
key and saying what is allowed, so a bad deployment fails at start, not mid-call.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from .errors import ConfigError
from .texts import CATALOG

ANALYTICS = ("none", "google", "piwik", "webtrekk", "tealium")
SAMESITE = ("Lax", "Strict", "None")
NonceGetter = Callable[[], "str | None"]

#: key -> (default, meaning). The README's table is generated from this mapping.
DEFAULTS: dict[str, tuple[Any, str]] = {
    # -- foundation ---------------------------------------------------------
    "LPCALL_URL_PREFIX": ("/lpcall", "URL prefix of the extension's blueprint (assets, API, sockets, agent workspace)."),
    "LPCALL_INJECT_TAG": (True, "Inject the tag into every text/html response automatically."),
    "LPCALL_EXEMPT_PATHS": ([], "Path prefixes whose pages never get the tag, matched by whole segments ('/admin' covers '/admin/x', not '/administrator')."),
    "LPCALL_CSP_NONCE": (None, "Callable returning the page's CSP nonce; default looks at g.csp_nonce and request.csp_nonce."),
    "LPCALL_DEBUG": (False, "Log tag debug output in the browser console on every page (same as ?lpDebug=2)."),
    "LPCALL_ALLOWED_ORIGINS": ([], "Extra origins allowed to open the WebSockets (the site's own origin is always allowed)."),
    # -- messaging ----------------------------------------------------------
    "LPCALL_ENGAGEMENT_WINDOW": (False, "Render the built-in embedded engagement (chat) window on every tagged page."),
    "LPCALL_MAX_MESSAGE_LENGTH": (4000, "Longest chat message accepted, in characters."),
    "LPCALL_MAX_FRAME_BYTES": (65536, "Largest WebSocket frame accepted, in bytes (SDP offers fit easily)."),
    "LPCALL_CONSUMER_TOKEN_TTL": (30 * 24 * 3600, "Lifetime of a consumer's signed identity token, in seconds."),
    "LPCALL_CONVERSATION_TTL": (24 * 3600, "Seconds an idle conversation is kept in the store."),
    # -- calls --------------------------------------------------------------
    "LPCALL_VOICE_ENABLED": (True, "Global switch for voice calls; off overrides every agent profile."),
    "LPCALL_VIDEO_ENABLED": (True, "Global switch for video calls; off overrides every agent profile."),
    "LPCALL_INVITE_TTL": (120, "Seconds an invitation stays open before it expires (CLOSED)."),
    "LPCALL_CALL_TOKEN_TTL": (120, "Seconds a signed call-signaling token can be used to join."),
    "LPCALL_AGENT_CAMERA_OFF_AT_START": (False, "Video calls start with the agent's camera off."),
    "LPCALL_CONSUMER_CAMERA_OFF_AT_START": (False, "Video calls start with the consumer's camera off."),
    "LPCALL_ICE_SERVERS": ([], "STUN/TURN servers handed to both peers, RTCIceServer dicts ({'urls': [...]})."),
    "LPCALL_FORCE_RELAY": (False, "Relay all media through TURN (iceTransportPolicy 'relay')."),
    "LPCALL_CONNECT_TIMEOUT": (30, "Seconds a call may take to connect (ICE) before UNABLE_TO_CONNECT."),
    "LPCALL_CALL_ENDED_SECONDS": (5, "Seconds an ended call's panel (\"Call ended\") stays before it closes by itself; 0: until closed."),
    # -- standalone call page (issue 18) --------------------------------------
    "LPCALL_CALL_LINK_TTL": (300, "Seconds a standalone call-page link (<prefix>/call/<link>) can be opened; it works once."),
    "LPCALL_CALL_PAGE_FRAME_ANCESTORS": (["'self'"], "CSP frame-ancestors of the call page: who may show it in an iframe (e.g. ['https://app.example.com']); [] for nobody."),
    # -- resume -------------------------------------------------------------
    "LPCALL_RECONNECT_GRACE": (30, "Seconds a participant may be gone (reload, lost socket) before the call closes."),
    "LPCALL_HEARTBEAT_INTERVAL": (10, "Seconds between heartbeats on the sockets; two missed ones mark a socket dead."),
    "LPCALL_ICE_RESTART_ATTEMPTS": (3, "ICE restarts tried before a call gives up with UNABLE_TO_CONNECT."),
    # -- scale out ----------------------------------------------------------
    "LPCALL_STORE": ("memory", "'memory' (one process) or a redis:// URL (many workers and hosts)."),
    "LPCALL_TURN_URLS": ([], "TURN URLs that get short-lived credentials (coturn use-auth-secret)."),
    "LPCALL_TURN_SECRET": (None, "Shared secret of coturn's static-auth-secret; required with LPCALL_TURN_URLS."),
    "LPCALL_TURN_TTL": (3600, "Lifetime of TURN credentials, in seconds."),
    # -- texts, reporting, analytics -----------------------------------------
    "LPCALL_LOCALE": ("en", "Language of every user-facing text (a locale of the built-in catalog)."),
    "LPCALL_TEXTS": ({}, "Overrides of catalog texts: {key: text} or {locale: {key: text}}."),
    "LPCALL_ANALYTICS": ("none", "Consumer-side tracking: none, google, piwik, webtrekk or tealium."),
    "LPCALL_REPORT_DB": ("lpcall-reports.sqlite3", "SQLite file for collaboration-session records (relative paths: instance folder)."),
    # -- agents ---------------------------------------------------------------
    "LPCALL_AGENT_DB": ("lpcall-agents.sqlite3", "SQLite file of the built-in agent directory (flask lpcall agent add …), used when the site registers no agent hooks (relative paths: instance folder)."),
    "LPCALL_SESSION_COOKIE_SAMESITE": ("Lax", "SameSite of the session cookie when the site left Flask's SESSION_COOKIE_SAMESITE unset: 'Lax', 'Strict', 'None' or None (leave it off)."),
}

_PERMS = validate.Range


class _Number(fields.Float):
    """A real number (int or float); strings and booleans are refused, not coerced."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kw)


def _allowed(text: str) -> dict[str, Any]:
    """Field metadata: what the key accepts, in words; used for every error of that key."""
    return {"metadata": {"allowed": text}}


class _Bool(fields.Boolean):
    """Exactly True or False (1, 0, "yes" are refused: a typo must not switch a feature)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _bool() -> fields.Boolean:
    return _Bool(**_allowed("True or False"))


def _seconds(lo: float, hi: float) -> _Number:
    return _Number(validate=_PERMS(min=lo, max=hi), **_allowed(f"a number of seconds between {lo:g} and {hi:g}"))


def _whole(lo: int, hi: int | None, what: str) -> fields.Integer:
    span = f"between {lo} and {hi}" if hi is not None else f"of at least {lo}"
    return fields.Integer(strict=True, validate=_PERMS(min=lo, max=hi), **_allowed(f"a whole number of {what} {span}"))


def _str_list(**kw: Any) -> fields.List[Any]:
    return fields.List(fields.String(validate=validate.Length(min=1)), **kw)


class _IceServer(Schema):
    urls = fields.Raw(required=True)
    username = fields.String()
    credential = fields.String()

    def load(self, data: Any, **kw: Any) -> Any:
        out = super().load(data, **kw)
        urls = out["urls"]
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
            isinstance(u, str) and u.split(":", 1)[0] in {"stun", "stuns", "turn", "turns"} for u in urls
        ):
            raise ValidationError({"urls": ["a stun:/turn: URL or a non-empty list of them"]})
        out["urls"] = urls
        return out


class ConfigSchema(Schema):
    """Types and ranges of every key; ``metadata["allowed"]`` says in words what a key accepts."""

    LPCALL_URL_PREFIX = fields.String(
        validate=validate.Regexp(r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$"),
        **_allowed("a URL path starting with '/' and not ending with '/', e.g. '/lpcall'"),
    )
    LPCALL_INJECT_TAG = _bool()
    LPCALL_EXEMPT_PATHS = fields.List(
        fields.String(validate=validate.Regexp(r"^/")), **_allowed("a list of path prefixes starting with '/', e.g. ['/admin']")
    )
    LPCALL_CSP_NONCE = fields.Raw(allow_none=True, **_allowed("None or a callable returning the page's nonce string"))
    LPCALL_DEBUG = _bool()
    LPCALL_ALLOWED_ORIGINS = fields.List(
        fields.String(validate=validate.Regexp(r"^https?://[^/]+$")),
        **_allowed("a list of origins like ['https://shop.example.com'] (scheme and host, no path)"),
    )
    LPCALL_ENGAGEMENT_WINDOW = _bool()
    LPCALL_MAX_MESSAGE_LENGTH = _whole(1, 100_000, "characters")
    LPCALL_MAX_FRAME_BYTES = _whole(4096, 4 * 1024 * 1024, "bytes")
    LPCALL_CONSUMER_TOKEN_TTL = _whole(60, None, "seconds")
    LPCALL_CONVERSATION_TTL = _whole(60, None, "seconds")
    LPCALL_VOICE_ENABLED = _bool()
    LPCALL_VIDEO_ENABLED = _bool()
    LPCALL_INVITE_TTL = _seconds(1, 86400)
    LPCALL_CALL_TOKEN_TTL = _seconds(5, 86400)
    LPCALL_AGENT_CAMERA_OFF_AT_START = _bool()
    LPCALL_CONSUMER_CAMERA_OFF_AT_START = _bool()
    LPCALL_ICE_SERVERS = fields.List(
        fields.Nested(_IceServer),
        **_allowed("a list of RTCIceServer dicts like {'urls': ['stun:stun.example.com:3478'], 'username': ..., 'credential': ...}"),
    )
    LPCALL_FORCE_RELAY = _bool()
    LPCALL_CONNECT_TIMEOUT = _seconds(1, 600)
    LPCALL_CALL_ENDED_SECONDS = _seconds(0, 3600)
    LPCALL_CALL_LINK_TTL = _seconds(10, 7 * 86400)
    LPCALL_CALL_PAGE_FRAME_ANCESTORS = fields.List(
        fields.String(validate=validate.Regexp(r"^('self'|'none'|\*|https?://[^/\s;,]+)$")),
        **_allowed("a list of CSP sources like [\"'self'\", 'https://app.example.com'] (scheme and host, no path)"),
    )
    LPCALL_RECONNECT_GRACE = _seconds(0.5, 3600)
    LPCALL_HEARTBEAT_INTERVAL = _seconds(0.2, 300)
    LPCALL_ICE_RESTART_ATTEMPTS = _whole(0, 20, "attempts")
    LPCALL_STORE = fields.String(
        validate=validate.Regexp(r"^(memory|rediss?://.+|unix://.+)$"),
        **_allowed("'memory' or a Redis URL (redis://, rediss://, unix://)"),
    )
    LPCALL_TURN_URLS = fields.List(
        fields.String(validate=validate.Regexp(r"^turns?:.+")),
        **_allowed("a list of turn: or turns: URLs, e.g. ['turn:turn.example.com:3478']"),
    )
    LPCALL_TURN_SECRET = fields.String(
        allow_none=True, validate=validate.Length(min=8), **_allowed("None or a string of at least 8 characters")
    )
    LPCALL_TURN_TTL = _whole(60, 7 * 86400, "seconds")
    LPCALL_LOCALE = fields.String(
        validate=validate.OneOf(sorted(CATALOG)), **_allowed(f"one of the catalog's locales {sorted(CATALOG)}")
    )
    LPCALL_TEXTS = fields.Dict(
        keys=fields.String(), **_allowed("a dict {text key: text} or {locale: {text key: text}}")
    )
    LPCALL_ANALYTICS = fields.String(
        validate=validate.OneOf(ANALYTICS), **_allowed(f"one of {', '.join(repr(a) for a in ANALYTICS)}")
    )
    LPCALL_REPORT_DB = fields.String(
        validate=validate.Length(min=1), **_allowed("a non-empty SQLite file path (relative paths: instance folder)")
    )
    LPCALL_AGENT_DB = fields.String(
        validate=validate.Length(min=1), **_allowed("a non-empty SQLite file path (relative paths: instance folder)")
    )
    LPCALL_SESSION_COOKIE_SAMESITE = fields.String(
        allow_none=True, validate=validate.OneOf(SAMESITE), **_allowed(f"one of {', '.join(map(repr, SAMESITE))} or None")
    )


def _describe(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{k}: {_describe(v)}" for k, v in messages.items())
    if isinstance(messages, list):
        return "; ".join(_describe(m) for m in messages)
    return str(messages)


def _problem(key: str, value: Any, messages: Any) -> str:
    """'must be <what is allowed> (got <value>)', plus the detail for an item of a list."""
    allowed = ConfigSchema().fields[key].metadata.get("allowed")
    if not allowed:
        return f"{_describe(messages)} (got {value!r})"
    detail = f"; {_describe(messages)}" if isinstance(messages, dict) else ""
    return f"must be {allowed} (got {value!r}{detail})"


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the effective ``LPCALL_*`` settings (defaults filled in) or raise ConfigError."""
    for key in config:
        if key.startswith("LPCALL_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"is not a known setting{hint}")
    raw = {key: config.get(key, default) for key, (default, _) in DEFAULTS.items()}
    nonce = raw["LPCALL_CSP_NONCE"]
    if nonce is not None and not callable(nonce):
        raise ConfigError("LPCALL_CSP_NONCE", f"must be None or a callable returning the nonce string (got {nonce!r})")
    for key, value in raw.items():
        if key not in ConfigSchema._declared_fields:
            continue
        try:
            ConfigSchema(only=(key,)).load({key: value})
        except ValidationError as exc:
            messages = exc.messages.get(key, exc.messages) if isinstance(exc.messages, dict) else exc.messages
            raise ConfigError(key, _problem(key, value, messages)) from None
    loaded: dict[str, Any] = dict(raw)
    loaded["LPCALL_ICE_SERVERS"] = [_IceServer().load(s) for s in raw["LPCALL_ICE_SERVERS"]]
    if raw["LPCALL_TURN_URLS"] and not raw["LPCALL_TURN_SECRET"]:
        raise ConfigError("LPCALL_TURN_SECRET", "is required when LPCALL_TURN_URLS is set (coturn's static-auth-secret)")
    if raw["LPCALL_FORCE_RELAY"] and not (raw["LPCALL_TURN_URLS"] or any(
        any(u.startswith("turn") for u in s["urls"]) for s in loaded["LPCALL_ICE_SERVERS"]
    )):
        raise ConfigError("LPCALL_FORCE_RELAY", "needs a TURN server (LPCALL_TURN_URLS or a turn: URL in LPCALL_ICE_SERVERS)")
    return loaded



@dataclass(frozen=True)
class Settings:
    """The effective ``LPCALL_*`` settings of one app, read once at ``init_app``: ``LPCALL_INVITE_TTL`` is
    ``settings.invite_ttl``. One field per key of :data:`DEFAULTS` (a test keeps the two in step)."""

    url_prefix: str
    inject_tag: bool
    exempt_paths: list[str]
    csp_nonce: NonceGetter | None
    debug: bool
    allowed_origins: list[str]
    engagement_window: bool
    max_message_length: int
    max_frame_bytes: int
    consumer_token_ttl: int
    conversation_ttl: int
    voice_enabled: bool
    video_enabled: bool
    invite_ttl: float
    call_token_ttl: float
    agent_camera_off_at_start: bool
    consumer_camera_off_at_start: bool
    ice_servers: list[dict[str, Any]]
    force_relay: bool
    connect_timeout: float
    call_ended_seconds: float
    call_link_ttl: float
    call_page_frame_ancestors: list[str]
    reconnect_grace: float
    heartbeat_interval: float
    ice_restart_attempts: int
    store: str
    turn_urls: list[str]
    turn_secret: str | None
    turn_ttl: int
    locale: str
    texts: dict[str, Any]
    analytics: str
    report_db: str
    agent_db: str
    session_cookie_samesite: str | None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Validate ``config`` (an app's ``config`` or any mapping of ``LPCALL_*`` keys; missing keys
        take their defaults) and return the settings; raises :class:`ConfigError` naming the key."""
        loaded = validate_config(config)
        return cls(**{field_name(key): value for key, value in loaded.items()})

    def switch(self, key: str) -> bool:
        """A global switch by its key (``LPCALL_VOICE_ENABLED``): the permission rules name their switch."""
        return bool(getattr(self, field_name(key)))


def field_name(key: str) -> str:
    """``LPCALL_INVITE_TTL`` -> ``invite_ttl``."""
    return key.removeprefix("LPCALL_").lower()


def defaults_table() -> str:
    """The README's markdown table of every key (``./dev.sh readme`` writes it; a test keeps it in sync)."""
    rows = ["| Key | Default | Meaning |", "|---|---|---|"]
    for key, (default, meaning) in DEFAULTS.items():
        cell = meaning.replace("|", "\\|")
        rows.append(f"| `{key}` | `{default!r}` | {cell} |")
    return "\n".join(rows)
