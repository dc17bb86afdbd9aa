"""The text catalog: overrides, locales, a bad key failing at start, texts reaching the browser
config, the transcript and the dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from agentkit import logged_in_client
from callkit import BOB, cobrowse_payload, conversation, make_app, services
from flask import Flask

from flask_lpcall import ConfigError, LPCall
from flask_lpcall.texts import CATALOG, DE, EN, build_texts, render

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_an_unknown_key_fails_at_init_app_naming_the_key() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", LPCALL_TEXTS={"invite.accept": "Yes", "invite.acept": "typo"})
    with pytest.raises(ConfigError) as exc:
        LPCall(app)
    assert exc.value.key == "LPCALL_TEXTS" and "'invite.acept'" in str(exc.value)
    assert "lpcall" not in app.extensions, "a bad catalog leaves the app without the extension"


def test_an_unknown_key_in_another_locale_fails_too() -> None:
    with pytest.raises(ConfigError, match="'call.hangupp'"):
        build_texts("en", {"de": {"call.hangupp": "Auflegen!"}})


def test_a_non_string_or_empty_text_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\['call.hangup'\] must be a non-empty string"):
        build_texts("en", {"call.hangup": ""})
    with pytest.raises(ConfigError, match=r"\['call.mute'\]"):
        build_texts("en", {"call.mute": 3})


def test_an_unknown_locale_fails() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", LPCALL_LOCALE="xx")
    with pytest.raises(ConfigError) as exc:
        LPCall(app)
    assert exc.value.key == "LPCALL_LOCALE"


def test_overrides_flat_and_per_locale() -> None:
    texts = build_texts("de", {"call.hangup": "Jetzt auflegen", "de": {"invite.accept": "Ja, bitte"}, "en": {"invite.accept": "Sure"}})
    assert texts["call.hangup"] == "Jetzt auflegen"
    assert texts["invite.accept"] == "Ja, bitte"  # the English override is checked, not applied
    assert texts["invite.decline"] == "Ablehnen"
    assert build_texts("en", {"en": {"invite.accept": "Sure"}})["invite.accept"] == "Sure"


def test_german_is_complete_and_keeps_the_placeholders() -> None:
    assert set(DE) == set(EN), f"missing in de: {sorted(set(EN) - set(DE))}"
    for key, text in EN.items():
        assert set(PLACEHOLDER.findall(DE[key])) == set(PLACEHOLDER.findall(text)), key
    assert set(CATALOG) >= {"en", "de"}


def test_client_config_serves_the_effective_texts() -> None:
    app = make_app(LPCALL_LOCALE="de", LPCALL_TEXTS={"call.hangup": "Gespräch beenden"})
    config = app.test_client().get("/lpcall/api/client-config").get_json()
    assert config["texts"]["call.hangup"] == "Gespräch beenden"
    assert config["texts"]["invite.accept"] == "Annehmen"
    assert config["texts"]["error.AGENT_DISCONNECTED"] == DE["error.AGENT_DISCONNECTED"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"LPCALL_TEXTS": {"system.invited": "{agent} is ringing you ({mode})", "mode.VOICE_CALL": "phone call",
                           "system.declined": "No {mode} today"}},
         ["Bob is ringing you (phone call)", "No phone call today"]),
        ({"LPCALL_LOCALE": "de"},
         ["Bob hat eine Einladung zum Sprachanruf gesendet", "Die Einladung zum Sprachanruf wurde abgelehnt"]),
    ],
)
def test_transcript_system_messages_come_from_the_catalog(config: dict[str, Any], expected: list[str]) -> None:
    app = make_app(**config)
    calls, convs = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    calls.decline(setup.consumer_id, cobrowse_payload(info))
    system = [e["event"]["message"] for e in convs.events(setup.conv_id) if e.get("role") == "SYSTEM"]
    assert system[-2:] == expected


def test_render_fills_placeholders_and_leaves_unknown_ones() -> None:
    assert render(EN, "invite.VIDEO_CALL", agent="Bob") == "Bob invites you to a video call"
    assert render({"x": "{a} and {b}"}, "x", a=1) == "1 and {b}"


def test_dashboard_texts_follow_overrides_and_locale(tmp_path: Path) -> None:
    from flask_lpcall.core.agents import PERM_REPORTS, Agent

    boss = Agent(id="boss", name="Boss", permissions=frozenset({PERM_REPORTS}))
    for config, want in (({"LPCALL_TEXTS": {"report.total": "Sessions"}}, "Sessions"), ({"LPCALL_LOCALE": "de"}, "Anrufe pro Tag")):
        app = Flask(__name__, instance_path=str(tmp_path))
        app.config.update({"SECRET_KEY": "x", "LPCALL_REPORT_DB": str(tmp_path / "r.sqlite3"), **config})
        ext = LPCall()
        ext.agent_loader(lambda _id: boss)
        ext.init_app(app)
        client = logged_in_client(app, "boss")
        assert want in client.get("/lpcall/agent/reports").get_data(as_text=True)
