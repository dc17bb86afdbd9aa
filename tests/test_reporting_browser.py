"""A completed video call between two Chromium pages (visitor: engagement window + call app; agent:
the real agent call UI) leaves one ``completed`` record, signals in order, and Matomo's ``_paq``
gets the whole lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from callkit import BOB, make_app, services
from support import INBOUND_STATS_JS, wait_for

from flask_lpcall import exempt, signals
from flask_lpcall.state import get_state

PAGE = "<!doctype html><html><head><title>Shop</title></head><body><main><h1>Shop</h1></main></body></html>"
AGENT_PAGE = "<!doctype html><html><head><title>Agent</title></head><body><div id='call'></div></body></html>"
PAQ = "window._paq = [['trackPageView']];"


@pytest.mark.browser
@pytest.mark.media
def test_completed_browser_call_record_signals_and_matomo(browser: Any, live_server: Any, tmp_path: Path) -> None:
    app = make_app(LPCALL_ENGAGEMENT_WINDOW=True, LPCALL_ANALYTICS="piwik", LPCALL_REPORT_DB=str(tmp_path / "r.db"))
    app.add_url_rule("/", "home", lambda: PAGE)
    app.add_url_rule("/agent-test", "agent_test", exempt(lambda: AGENT_PAGE))
    server = live_server(app)
    calls, convs = services(app)
    fired: list[str] = []
    keep = []
    for name in ("invited", "accepted", "connected", "ended"):
        def receiver(sender: Any, call: dict[str, Any], name: str = name) -> None:
            fired.append(name)

        keep.append(receiver)
        getattr(signals, f"call_{name}").connect(receiver, app)

    visitor_ctx = browser.new_context()
    visitor_ctx.add_init_script("window.__lpcallTest = true;" + PAQ)
    agent_ctx = browser.new_context()
    agent_ctx.add_init_script("window.__lpcallTest = true;")
    try:
        page = visitor_ctx.new_page()
        page.goto(server.url + "/")
        page.locator(".lpcall-launcher").click()
        page.locator("#lpcall-visitor-name").fill("Vera")
        page.locator("#lpcall-visitor-name").press("Enter")
        conv = wait_for(lambda: convs.open_conversations(), timeout=15, message="the visitor's conversation")[0]
        convs.take(conv["convId"], BOB.id, BOB.name)
        info = calls.invite(BOB, conv["convId"], "VIDEO_CALL")

        agent = agent_ctx.new_page()
        agent.goto(server.url + "/agent-test")
        texts = app.test_client().get("/lpcall/api/client-config").get_json()["texts"]
        agent.evaluate(
            """async ([info, texts]) => {
                const m = await import('/lpcall/static/lpcall/agentcall.js');
                window.__call = m.startAgentCall({...info, base: '/lpcall', container: document.getElementById('call'),
                                                  peerName: 'Vera', texts});
            }""",
            [info, texts],
        )
        page.get_by_role("button", name="Accept").click()
        for side in (page, agent):
            wait_for(lambda side=side: side.evaluate(INBOUND_STATS_JS)["framesDecoded"] > 0, timeout=30,
                     message="video frames decoded")
        page.get_by_role("button", name="Hang up").click()

        service = get_state(app).reports
        (record,) = wait_for(lambda: service.flush(5) and service.query(), timeout=15, message="the call's record")
        assert record["service_id"] == info["serviceId"] and record["outcome"] == "completed"
        assert (record["ended_by"], record["close_reason"], record["participants"]) == ("consumer", "hangup_consumer", 2)
        assert record["connected_at"] and record["duration_seconds"] >= 0 and record["mode"] == "VIDEO_CALL"
        wait_for(lambda: fired == ["invited", "accepted", "connected", "ended"], timeout=5, message=f"signals {fired}")

        def tracked() -> list[str]:
            return [c[2] for c in page.evaluate("() => window._paq") if c[0] == "trackEvent"]

        wanted = ["invitation_shown", "invitation_accepted", "call_connected", "call_ended"]
        wait_for(lambda: tracked() == wanted, timeout=10, message=f"_paq events {wanted}")
        ended = next(c for c in page.evaluate("() => window._paq") if c[0] == "trackEvent" and c[2] == "call_ended")
        assert ended[:4] == ["trackEvent", "lpcall", "call_ended", "video"] and isinstance(ended[4], int)
    finally:
        visitor_ctx.close()
        agent_ctx.close()
