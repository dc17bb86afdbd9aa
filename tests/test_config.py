"""Config validation at init_app: every LPCALL_* key, a wrong value, an error naming the key and what is allowed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask import Flask

from flask_lpcall import ConfigError, LPCall, get_state
from flask_lpcall.config import DEFAULTS, ConfigSchema, Settings, field_name, validate_config

# (key, wrong value, words the error must contain besides the key)
BAD: list[tuple[str, Any, str]] = [
    ("LPCALL_URL_PREFIX", "lpcall", "a URL path starting with '/' and not ending with '/'"),
    ("LPCALL_URL_PREFIX", "/lpcall/", "not ending with '/'"),
    ("LPCALL_URL_PREFIX", 5, "a URL path starting with '/'"),
    ("LPCALL_INJECT_TAG", "yes", "must be True or False"),
    ("LPCALL_INJECT_TAG", 1, "must be True or False"),
    ("LPCALL_EXEMPT_PATHS", "/admin", "a list of path prefixes starting with '/'"),
    ("LPCALL_EXEMPT_PATHS", ["admin"], "a list of path prefixes starting with '/'"),
    ("LPCALL_CSP_NONCE", "abc123", "must be None or a callable returning the nonce string"),
    ("LPCALL_DEBUG", "true", "must be True or False"),
    ("LPCALL_ALLOWED_ORIGINS", ["https://shop.example.com/path"], "scheme and host, no path"),
    ("LPCALL_ALLOWED_ORIGINS", "https://shop.example.com", "a list of origins"),
    ("LPCALL_ENGAGEMENT_WINDOW", "on", "must be True or False"),
    ("LPCALL_MAX_MESSAGE_LENGTH", 0, "a whole number of characters between 1 and 100000"),
    ("LPCALL_MAX_MESSAGE_LENGTH", "4000", "a whole number of characters"),
    ("LPCALL_MAX_MESSAGE_LENGTH", 4000.5, "a whole number of characters"),
    ("LPCALL_MAX_FRAME_BYTES", 100, "a whole number of bytes between 4096 and 4194304"),
    ("LPCALL_CONSUMER_TOKEN_TTL", 10, "a whole number of seconds of at least 60"),
    ("LPCALL_CONVERSATION_TTL", -1, "a whole number of seconds of at least 60"),
    ("LPCALL_VOICE_ENABLED", None, "must be True or False"),
    ("LPCALL_VIDEO_ENABLED", 0, "must be True or False"),
    ("LPCALL_CALL_LINK_TTL", 5, "a number of seconds between 10 and 604800"),
    ("LPCALL_CALL_PAGE_FRAME_ANCESTORS", ["https://app.example.com/path"], "scheme and host, no path"),
    ("LPCALL_CALL_PAGE_FRAME_ANCESTORS", "'self'", "a list of CSP sources"),
    ("LPCALL_INVITE_TTL", 0, "a number of seconds between 1 and 86400"),
    ("LPCALL_INVITE_TTL", "120", "a number of seconds between 1 and 86400"),
    ("LPCALL_INVITE_TTL", True, "a number of seconds between 1 and 86400"),
    ("LPCALL_INVITE_TTL", float("inf"), "a number of seconds between 1 and 86400"),
    ("LPCALL_CALL_TOKEN_TTL", 1, "a number of seconds between 5 and 86400"),
    ("LPCALL_AGENT_CAMERA_OFF_AT_START", "false", "must be True or False"),
    ("LPCALL_CONSUMER_CAMERA_OFF_AT_START", [], "must be True or False"),
    ("LPCALL_ICE_SERVERS", [{"url": "stun:stun.example.com"}], "a list of RTCIceServer dicts"),
    ("LPCALL_ICE_SERVERS", [{"urls": "https://stun.example.com"}], "a stun:/turn: URL"),
    ("LPCALL_ICE_SERVERS", {"urls": "stun:stun.example.com"}, "a list of RTCIceServer dicts"),
    ("LPCALL_FORCE_RELAY", "yes", "must be True or False"),
    ("LPCALL_FORCE_RELAY", True, "needs a TURN server"),
    ("LPCALL_CONNECT_TIMEOUT", 0, "a number of seconds between 1 and 600"),
    ("LPCALL_CALL_ENDED_SECONDS", -1, "a number of seconds between 0 and 3600"),
    ("LPCALL_RECONNECT_GRACE", 0, "a number of seconds between 0.5 and 3600"),
    ("LPCALL_HEARTBEAT_INTERVAL", 0.1, "a number of seconds between 0.2 and 300"),
    ("LPCALL_HEARTBEAT_INTERVAL", float("nan"), "a number of seconds between 0.2 and 300"),
    ("LPCALL_ICE_RESTART_ATTEMPTS", -1, "a whole number of attempts between 0 and 20"),
    ("LPCALL_ICE_RESTART_ATTEMPTS", 2.5, "a whole number of attempts between 0 and 20"),
    ("LPCALL_STORE", "sqlite:///x.db", "'memory' or a Redis URL"),
    ("LPCALL_STORE", None, "'memory' or a Redis URL"),
    ("LPCALL_TURN_URLS", ["stun:turn.example.com"], "a list of turn: or turns: URLs"),
    ("LPCALL_TURN_URLS", "turn:turn.example.com", "a list of turn: or turns: URLs"),
    ("LPCALL_TURN_SECRET", "short", "None or a string of at least 8 characters"),
    ("LPCALL_TURN_SECRET", 12345678, "None or a string of at least 8 characters"),
    ("LPCALL_TURN_TTL", 10, "a whole number of seconds between 60 and 604800"),
    ("LPCALL_LOCALE", "fr", "one of the catalog's locales"),
    ("LPCALL_LOCALE", None, "one of the catalog's locales"),
    ("LPCALL_TEXTS", "Chat with us", "a dict {text key: text}"),
    ("LPCALL_TEXTS", {"no.such.key": "x"}, "has unknown key 'no.such.key'"),
    ("LPCALL_TEXTS", {"window.title": ""}, "must be a non-empty string"),
    ("LPCALL_ANALYTICS", "matomo", "one of 'none', 'google', 'piwik', 'webtrekk', 'tealium'"),
    ("LPCALL_REPORT_DB", "", "a non-empty SQLite file path"),
    ("LPCALL_AGENT_DB", "", "a non-empty SQLite file path"),
    ("LPCALL_SESSION_COOKIE_SAMESITE", "lax", "one of 'Lax', 'Strict', 'None' or None"),
]


def _app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="config-tests", **config)
    return app


@pytest.mark.parametrize(("key", "value", "allowed"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_wrong_value_fails_at_init_app_naming_the_key_and_what_is_allowed(key: str, value: Any, allowed: str) -> None:
    app = _app(**{key: value})
    with pytest.raises(ConfigError) as info:
        LPCall(app)
    err = info.value
    assert err.key == key and err.field == key and err.code == "CONFIG_ERROR"
    assert str(err).startswith(key + " "), str(err)
    assert allowed in str(err), str(err)
    assert "lpcall" not in app.extensions  # nothing half-initialised


def test_every_key_has_a_wrong_value_test_and_a_description() -> None:
    assert set(DEFAULTS) == {key for key, _, _ in BAD}
    for key, (_, meaning) in DEFAULTS.items():
        assert meaning.strip(), key
        assert key == "LPCALL_CSP_NONCE" or ConfigSchema().fields[key].metadata.get("allowed"), key


def test_the_schema_messages_say_what_is_allowed_not_marshmallows_default() -> None:
    for key, value, _ in BAD:
        try:
            validate_config({key: value})
        except ConfigError as exc:
            assert "Not a valid" not in str(exc) and "Must be greater" not in str(exc), str(exc)


def test_a_misspelt_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"^LPCALL_INVITE_TIL is not a known setting; did you mean LPCALL_INVITE_TTL\?"):
        LPCall(_app(LPCALL_INVITE_TIL=60))


def test_secret_key_is_required() -> None:
    app = Flask(__name__)
    with pytest.raises(ConfigError, match="^SECRET_KEY must be set"):
        LPCall(app)


def test_defaults_are_valid_and_documented() -> None:
    settings = validate_config({})
    assert settings == {key: default for key, (default, _) in DEFAULTS.items()}
    app = _app()
    LPCall().init_app(app)
    assert get_state(app).settings == Settings.from_config({})
    assert {f.name for f in dataclasses.fields(Settings)} == {field_name(key) for key in DEFAULTS}  # one field per key
    assert get_state(app).settings.invite_ttl == settings["LPCALL_INVITE_TTL"]
    assert get_state(app).url_prefix == "/lpcall"


def test_valid_non_default_values_are_accepted() -> None:
    settings = validate_config(
        {
            "LPCALL_URL_PREFIX": "/support/calls",
            "LPCALL_INVITE_TTL": 30.5,
            "LPCALL_ICE_SERVERS": [{"urls": "stun:stun.example.com:3478"}, {"urls": ["turn:t.example.com"], "username": "u", "credential": "c"}],
            "LPCALL_FORCE_RELAY": True,
            "LPCALL_STORE": "redis://127.0.0.1:6379/0",
            "LPCALL_TURN_URLS": ["turn:127.0.0.1:3478?transport=udp"],
            "LPCALL_TURN_SECRET": "0123456789abcdef",
            "LPCALL_LOCALE": "de",
            "LPCALL_TEXTS": {"window.title": "Talk to us", "de": {"window.title": "Sprechen Sie mit uns"}},
            "LPCALL_ANALYTICS": "piwik",
            "LPCALL_CSP_NONCE": lambda: "n",
            "LPCALL_EXEMPT_PATHS": ["/admin", "/api/"],
            "LPCALL_ALLOWED_ORIGINS": ["https://shop.example.com", "http://localhost:5000"],
            "OTHER_SETTING": "ignored",
        }
    )
    assert settings["LPCALL_ICE_SERVERS"][0]["urls"] == ["stun:stun.example.com:3478"]  # normalised to a list
    assert settings["LPCALL_INVITE_TTL"] == 30.5


def test_extension_follows_the_flask_extension_pattern() -> None:
    lpcall = LPCall()
    a, b = _app(LPCALL_URL_PREFIX="/a"), _app(LPCALL_URL_PREFIX="/b")
    lpcall.init_app(a)
    lpcall.init_app(b)
    assert not hasattr(lpcall, "app")  # no stored app: one extension object, many apps
    assert get_state(a).url_prefix == "/a" and get_state(b).url_prefix == "/b"
    assert get_state(a).extension is lpcall
    assert a.test_client().get("/a/static/lptag.js").status_code == 200
    assert b.test_client().get("/b/static/lptag.js").status_code == 200
    assert a.test_client().get("/lpcall/static/lptag.js").status_code == 404
    assert sum(1 for bp in a.blueprints.values() if bp.name == "lpcall") == 1


def test_readme_table_lists_every_key_with_its_default() -> None:
    from pathlib import Path

    from flask_lpcall.config import defaults_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"\n\n{defaults_table()}\n\n<!-- /config-table -->" in readme, "README table is stale: run ./dev.sh readme"
    lines = readme.splitlines()
    assert lines[0] == "# flask-lpcall"
    commands = [line for line in lines[1:6] if line.startswith("./dev.sh")]
    assert [c.split("#")[0].strip() for c in commands] == ["./dev.sh run", "./dev.sh test"]
    for section in ("Messaging-Window protocol", "Calls", "Resume", "Scaling out (Redis, gunicorn, coturn)",
                    "Python peer and demo agent", "Reporting and analytics", "Architecture", "Configuration"):
        assert f"\n## {section}\n" in readme, section
