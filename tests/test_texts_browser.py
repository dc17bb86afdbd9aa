"""Texts in the browser, through a real call: the invitation, the call UI, ``sessionError.msg``
and the transcript's system messages follow ``LPCALL_TEXTS``, and ``LPCALL_LOCALE`` switches them.

The visitor uses the real engagement window and call app in Chromium; the agent invites through
the call service and talks from a second Chromium page running the real agent call UI
(``agentcall.js``). The call connects with real media; then the agent's page closes, so the call
closes with ``AGENT_DISCONNECTED`` after ``LPCALL_RECONNECT_GRACE``.

The same calls prove the analytics side in a real call: with ``LPCALL_ANALYTICS=google`` and a
``gtag`` global the lifecycle reaches it; with ``LPCALL_ANALYTICS=tealium`` and no ``utag`` on the
page the call works all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callkit import BOB, make_app, services
from support import INBOUND_STATS_JS, wait_for

from flask_lpcall import exempt
from flask_lpcall.state import get_state

PAGE = "<!doctype html><html><head><title>Shop</title></head><body><main><h1>Shop</h1></main></body></html>"
AGENT_PAGE = "<!doctype html><html><head><title>Agent</title></head><body><div id='call'></div></body></html>"
GTAG = "window.__got = []; window.gtag = function () { window.__got.push(Array.from(arguments)); };"

OVERRIDES = {
    "invite.VOICE_CALL": "{agent} would like to talk to you on the phone",
    "invite.accept": "Yes, call me",
    "call.hangup": "End the call now",
    "error.AGENT_DISCONNECTED": "Our agent lost the line, sorry!",
    "mode.VOICE_CALL": "phone call",
    "system.invited": "{agent} is ringing you ({mode})",
    "system.failed": "The {mode} broke off: {error}",
}

CASES = {
    "en-overrides": (
        {"LPCALL_TEXTS": OVERRIDES, "LPCALL_ANALYTICS": "google"},
        {
            "invite": "Bob would like to talk to you on the phone",
            "accept": "Yes, call me",
            "hangup": "End the call now",
            "error": "Our agent lost the line, sorry!",
            "system_invited": "Bob is ringing you (phone call)",
            "system_failed": "The phone call broke off: Our agent lost the line, sorry!",
        },
    ),
    "de": (
        {"LPCALL_LOCALE": "de", "LPCALL_ANALYTICS": "tealium"},
        {
            "invite": "Bob lädt Sie zu einem Sprachanruf ein",
            "accept": "Annehmen",
            "hangup": "Auflegen",
            "error": "Die Verbindung zum Mitarbeiter wurde getrennt.",
            "system_invited": "Bob hat eine Einladung zum Sprachanruf gesendet",
            "system_failed": "Der Sprachanruf wurde beendet: Die Verbindung zum Mitarbeiter wurde getrennt.",
        },
    ),
}


@pytest.mark.browser
@pytest.mark.parametrize("case", list(CASES))
def test_texts_in_invitation_call_ui_error_and_transcript(
    case: str, browser: Any, live_server: Any, tmp_path: Path, artifacts_dir: Path
) -> None:
    config, want = CASES[case]
    app = make_app(LPCALL_ENGAGEMENT_WINDOW=True, LPCALL_RECONNECT_GRACE=1, LPCALL_REPORT_DB=str(tmp_path / "r.db"), **config)
    app.add_url_rule("/", "home", lambda: PAGE)
    app.add_url_rule("/agent-test", "agent_test", exempt(lambda: AGENT_PAGE))  # the agent's page is no shop page
    server = live_server(app)
    calls, convs = services(app)

    context = browser.new_context()
    context.add_init_script("window.__lpcallTest = true;")
    if config["LPCALL_ANALYTICS"] == "google":
        context.add_init_script(GTAG)
    page = context.new_page()
    agent_page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server.url + "/")
        page.locator(".lpcall-launcher").click()
        page.locator("#lpcall-visitor-name").fill("Vera")
        page.locator("#lpcall-visitor-name").press("Enter")
        conv = wait_for(lambda: convs.open_conversations(), timeout=15, message="the visitor's conversation")[0]
        page.evaluate("""() => { window.__errors = [];
            window.lpTag.events.bind({appName: 'cobrowse', eventName: 'sessionError', func: (d) => window.__errors.push(d)}); }""")

        convs.take(conv["convId"], BOB.id, BOB.name)
        agent_info = calls.invite(BOB, conv["convId"], "VOICE_CALL")
        agent_page.goto(server.url + "/agent-test")
        texts = app.test_client().get("/lpcall/api/client-config").get_json()["texts"]
        agent_page.evaluate(
            """async ([info, texts]) => {
                const m = await import('/lpcall/static/lpcall/agentcall.js');
                window.__call = m.startAgentCall({...info, base: '/lpcall', container: document.getElementById('call'),
                                                  peerName: 'Vera', texts});
            }""",
            [agent_info, texts],
        )

        # the invitation
        invitation = page.locator(".lpcall-invitation")
        invitation.wait_for(timeout=15000)
        assert invitation.locator(".lpcall-invitation-text").inner_text() == want["invite"]
        accept = page.get_by_role("button", name=want["accept"])
        # the transcript's system message for the invitation
        page.locator(".lpcall-msg-system", has_text=want["system_invited"]).wait_for(timeout=10000)

        # the call UI, once accepted and connected, with real audio flowing
        accept.click()
        hangup = page.locator(".lpcall-hangup")
        hangup.wait_for(timeout=20000)
        wait_for(lambda: hangup.get_attribute("aria-label") == want["hangup"], timeout=10,
                 message=f"the hang-up button labelled {want['hangup']!r}")
        wait_for(lambda: page.evaluate(INBOUND_STATS_JS)["audioBytes"] > 0, timeout=20, message="the agent's audio arriving")
        page.screenshot(path=str(artifacts_dir / f"texts-call-ui-{case}.png"))

        # the agent's page goes away: after the grace the call closes with AGENT_DISCONNECTED
        agent_page.close()
        got = wait_for(lambda: page.evaluate("() => window.__errors"), timeout=20, message="sessionError")
        assert got[0] == {"msg": want["error"], "id": "AGENT_DISCONNECTED"}
        page.get_by_text(want["error"]).first.wait_for(timeout=10000)  # shown to the visitor too
        page.locator(".lpcall-msg-system", has_text=want["system_failed"]).wait_for(timeout=10000)
        page.screenshot(path=str(artifacts_dir / f"texts-error-{case}.png"))

        if config["LPCALL_ANALYTICS"] == "google":
            def lifecycle() -> list[str]:
                return [c[1] for c in page.evaluate("() => window.__got") if c[0] == "event"]

            wanted = ["lpcall_invitation_shown", "lpcall_invitation_accepted", "lpcall_call_connected",
                      "lpcall_call_ended", "lpcall_call_error"]
            wait_for(lambda: lifecycle() == wanted, timeout=10, message=f"gtag events {wanted}")
            ended = next(c[2] for c in page.evaluate("() => window.__got") if c[1] == "lpcall_call_ended")
            assert ended["close_reason"] == "agent_disconnected" and ended["error_id"] == "AGENT_DISCONNECTED"
        # and the real call left its collaboration-session record
        service = get_state(app).reports
        service.flush(10)
        (record,) = wait_for(lambda: service.query(), timeout=10, message="the call's record")
        assert record["service_id"] == agent_info["serviceId"] and record["mode"] == "VOICE_CALL"
        assert (record["outcome"], record["error_id"], record["ended_by"]) == ("error", "AGENT_DISCONNECTED", "system")
        assert record["participants"] == 2 and record["connected_at"] and record["duration_seconds"] is not None
        assert errors == []
    finally:
        if not agent_page.is_closed():
            agent_page.close()
        context.close()
