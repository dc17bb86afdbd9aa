"""The manager dashboard: permission, figures, filters, downloads, and the chart in Chromium."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from agentkit import logged_in_client
from flask import Flask
from test_reporting import cancelled, completed, declined, errored, expired, send_and_flush

from flask_lpcall import LPCall
from flask_lpcall.core.agents import PERM_REPORTS, PERM_VIDEO, PERM_VOICE, Agent

AGENTS = {
    "bob": Agent(id="bob", name="Bob", permissions=frozenset({PERM_VOICE, PERM_VIDEO, PERM_REPORTS})),
    "alice": Agent(id="alice", name="Alice", permissions=frozenset({PERM_VOICE})),
}
TODAY = datetime.now(UTC).date()


@pytest.fixture(autouse=True)
def _today() -> None:
    """Today as of each test, as the server sees it, not as of the suite's collection: a CI run that started
    before midnight UTC reached this module after it and compared yesterday's date with the server's."""
    global TODAY
    TODAY = datetime.now(UTC).date()


def at(days_ago: int, hour: int = 10) -> float:
    d = TODAY - timedelta(days=days_ago)
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC).timestamp()


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"SECRET_KEY": "dash-secret", "LPCALL_REPORT_DB": str(tmp_path / "r.sqlite3"), **config})
    lpcall = LPCall()
    lpcall.agent_loader(AGENTS.get)
    lpcall.agent_authenticator(lambda user, password: AGENTS.get(user) if password == user + "-pw" else None)
    lpcall.init_app(app)
    send_and_flush(
        app,
        completed(at(6), talk=60, agent="bob", mode="VIDEO_CALL", conv="k1"),
        completed(at(6, 11), talk=120, agent="alice", mode="VOICE_CALL", conv="k2"),
        declined(at(4), agent="alice", mode="VOICE_CALL"),
        completed(at(2), talk=300, agent="bob", mode="VIDEO_CALL"),
        completed(at(2, 12), talk=30, agent="bob", mode="VOICE_CALL"),
        expired(at(2, 13), agent="bob"),
        errored(at(0), agent="alice", mode="VOICE_CALL"),
        cancelled(at(0, 1), agent="bob"),
        completed(at(40), talk=10, agent="bob"),  # outside the default 30 days
    )
    return app


def login(app: Flask, agent_id: str) -> Any:
    return logged_in_client(app, agent_id)


def test_only_agents_with_view_reports_see_the_dashboard(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    anonymous = app.test_client().get("/lpcall/agent/reports")
    assert anonymous.status_code in (302, 401)
    if anonymous.status_code == 302:
        assert "/agent/login" in anonymous.headers["Location"]
    denied = login(app, "alice").get("/lpcall/agent/reports")
    assert denied.status_code == 403
    assert "does not include the permission to view reports" in denied.get_data(as_text=True)
    assert login(app, "alice").get("/lpcall/agent/reports/export.csv").status_code == 403
    assert app.test_client().get("/lpcall/agent/reports/export.json").status_code == 401
    page = login(app, "bob").get("/lpcall/agent/reports")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert login(app, "bob").get("/lpcall/reports/?mode=VOICE_CALL").headers["Location"].endswith(
        "/lpcall/agent/reports?mode=VOICE_CALL")


def test_figures_and_filters_server_side(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    bob = login(app, "bob")
    html = bob.get("/lpcall/agent/reports").get_data(as_text=True)
    # 8 calls in the last 30 days, completed durations 60, 120, 300, 30 s
    assert 'data-figure="total"><span class="label">Calls</span>\n      <span class="value">8</span>' in html
    assert "62 %" in html  # 5 of 8 accepted (4 completed, 1 error after accepting)
    assert "2:08" in html  # average 127.5 s
    assert "5:00" in html  # p90 (nearest rank of 4 values = the largest)
    assert html.count('class="bar"') == 30 and "<svg" in html and "<script" not in html

    voice = bob.get("/lpcall/agent/reports?mode=VOICE_CALL").get_data(as_text=True)
    assert '<span class="value">4</span>' in voice  # alice's completed, declined, error and bob's voice call
    alice = bob.get("/lpcall/agent/reports?agent=alice").get_data(as_text=True)
    assert '<span class="value">3</span>' in alice and "Alice" in alice
    week = bob.get(f"/lpcall/agent/reports?since={TODAY - timedelta(days=2)}&until={TODAY}").get_data(as_text=True)
    assert week.count('class="bar"') == 3 and '<span class="value">5</span>' in week

    bad = bob.get("/lpcall/agent/reports?mode=FAX&since=2026-13-01")
    assert bad.status_code == 400
    assert "Invalid filter" in bad.get_data(as_text=True)


def test_downloads_follow_the_filters(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    bob = login(app, "bob")
    resp = bob.get("/lpcall/agent/reports/export.csv?agent=alice")
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["outcome"] for r in table] == ["completed", "declined", "error"]
    data = bob.get("/lpcall/agent/reports/export.json?mode=VIDEO_CALL").get_json()
    assert [r["agent_id"] for r in data["records"]] == ["bob", "bob", "bob", "bob"]
    assert data["since"] == (TODAY - timedelta(days=29)).isoformat() and data["until"] == TODAY.isoformat()
    bad = bob.get("/lpcall/agent/reports/export.json?until=tomorrow")
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "until"


def test_german_dashboard(tmp_path: Path) -> None:
    app = make_app(tmp_path, LPCALL_LOCALE="de", LPCALL_TEXTS={"report.title": "Anrufstatistik"})
    html = login(app, "bob").get("/lpcall/agent/reports").get_data(as_text=True)
    assert '<html lang="de">' in html and "Anrufstatistik" in html and "Annahmequote" in html


@pytest.mark.browser
def test_dashboard_renders_a_chart_in_chromium(tmp_path: Path, browser: Any, live_server: Any, artifacts_dir: Path) -> None:
    app = make_app(tmp_path)
    server = live_server(app)
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        # the manager logs in to the agent workspace and follows its Reports link
        page.goto(server.url + "/lpcall/agent/login")
        page.get_by_label("User name").fill("bob")
        page.get_by_label("Password").fill("bob-pw")
        page.get_by_label("Password").press("Enter")
        page.wait_for_url("**/lpcall/agent/")
        page.get_by_role("link", name="Reports").click()
        page.wait_for_url("**/lpcall/agent/reports")
        chart = page.locator("svg.lpcall-chart")
        chart.wait_for()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        bars = page.locator("svg.lpcall-chart rect.bar")
        assert bars.count() == 30
        counts = {bars.nth(i).get_attribute("data-day"): int(bars.nth(i).get_attribute("data-count") or 0)
                  for i in range(bars.count())}
        assert counts[(TODAY - timedelta(days=6)).isoformat()] == 2
        assert counts[(TODAY - timedelta(days=2)).isoformat()] == 3
        assert counts[TODAY.isoformat()] == 2
        tallest = page.locator(f'rect.bar[data-day="{(TODAY - timedelta(days=2)).isoformat()}"]').bounding_box()
        shorter = page.locator(f'rect.bar[data-day="{(TODAY - timedelta(days=6)).isoformat()}"]').bounding_box()
        assert tallest and shorter and tallest["height"] > shorter["height"] > 0
        assert page.locator('[data-figure="total"] .value').inner_text() == "8"
        assert page.get_by_role("img", name="Calls per day").is_visible()
        page.screenshot(path=str(artifacts_dir / "reports-dashboard.png"), full_page=True)

        # filters by keyboard: agent select, mode select, Apply
        page.get_by_label("Agent").select_option("alice")
        page.get_by_label("Mode").select_option("VOICE_CALL")
        page.get_by_role("button", name="Apply").focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**agent=alice**")
        assert page.locator('[data-figure="total"] .value').inner_text() == "3"
        assert page.locator('[data-figure="accept-rate"] .value').inner_text() == "67 %"
        assert page.locator("tbody tr").count() == 3

        # phone layout: no horizontal page scroll, chart still inside the viewport
        page.set_viewport_size({"width": 390, "height": 844})
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"page scrolls sideways by {overflow}px on a phone"
        chart_box = page.locator("svg.lpcall-chart").bounding_box()
        assert chart_box is not None and chart_box["x"] + chart_box["width"] <= 390
        page.screenshot(path=str(artifacts_dir / "reports-dashboard-phone.png"), full_page=True)
    finally:
        context.close()


def test_summary_json_shape_is_stable(tmp_path: Path) -> None:
    """The dashboard export and the CLI share one JSON shape (a records list with since/until)."""
    app = make_app(tmp_path)
    data = json.loads(login(app, "bob").get("/lpcall/agent/reports/export.json").get_data(as_text=True))
    assert set(data) == {"since", "until", "records"} and len(data["records"]) == 8
    assert date.fromisoformat(data["until"]) == TODAY


def test_names_and_texts_are_escaped(tmp_path: Path) -> None:
    app = make_app(tmp_path, LPCALL_TEXTS={"report.chart_title": "Calls <b>per</b> day"})
    call = completed(at(1), agent="bob")
    call["agentName"] = "<img src=x onerror=alert(1)>"
    send_and_flush(app, call)
    html = login(app, "bob").get("/lpcall/agent/reports").get_data(as_text=True)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>per</b>" not in html and "Calls &lt;b&gt;per&lt;/b&gt; day" in html


def test_window_limit_and_csv_formula_cells(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    bob = login(app, "bob")
    far = bob.get(f"/lpcall/agent/reports/export.json?since={TODAY - timedelta(days=400)}")
    assert far.status_code == 400 and far.get_json()["error"]["field"] == "since"
    call = completed(at(1), agent="bob")
    call["agentName"] = "=HYPERLINK(\"http://evil\")"
    send_and_flush(app, call)
    rows = list(csv.DictReader(io.StringIO(bob.get("/lpcall/agent/reports/export.csv").get_data(as_text=True))))
    assert [r["agent_name"] for r in rows if r["agent_name"].startswith("'=")] == ["'=HYPERLINK(\"http://evil\")"]
