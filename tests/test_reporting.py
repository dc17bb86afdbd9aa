"""Collaboration-session records: one per call at CLOSED, the report CLI, date filters.

Records are produced by the real call-session state machine (``calls.CallSession``) and
the real ``signals.call_ended`` signal, then read back from the real SQLite file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_lpcall import LPCall, signals
from flask_lpcall.cli import lpcall_cli
from flask_lpcall.core.calls import CallSession
from flask_lpcall.core.records import COLUMNS, percentile, record_from_call, summarize
from flask_lpcall.state import get_state

T0 = datetime(2026, 11, 3, 9, 30, tzinfo=UTC).timestamp()  # a Tuesday, 09:30 UTC


def make_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"SECRET_KEY": "test-secret", "LPCALL_REPORT_DB": str(tmp_path / "reports.sqlite3"), **config})
    LPCall(app)
    return app


def new_call(mode: str = "VIDEO_CALL", agent: str = "bob", t: float = T0, conv: str = "conv-1") -> CallSession:
    return CallSession.invite(
        conversation_id=conv, consumer_id="c-1", agent_id=agent, agent_name=agent.title(),
        visitor_name="Visitor Vera", mode=mode, ttl=120, now=t,
    )


def completed(t: float = T0, talk: float = 65.0, **kw: Any) -> dict[str, Any]:
    call = new_call(t=t, **kw)
    call.accept(now=t + 4)
    call.mark_joined("agent")
    call.mark_joined("consumer")
    call.mark_connected(now=t + 5)
    call.close("hangup_consumer", now=t + 5 + talk)
    return call.to_dict()


def declined(t: float = T0, **kw: Any) -> dict[str, Any]:
    call = new_call(t=t, **kw)
    call.close("declined", now=t + 3)
    return call.to_dict()


def cancelled(t: float = T0, **kw: Any) -> dict[str, Any]:
    call = new_call(t=t, **kw)
    call.close("cancelled", now=t + 10)
    return call.to_dict()


def expired(t: float = T0, **kw: Any) -> dict[str, Any]:
    call = new_call(t=t, **kw)
    call.close("expired", now=t + 120)
    return call.to_dict()


def errored(t: float = T0, **kw: Any) -> dict[str, Any]:
    call = new_call(t=t, **kw)
    call.accept(now=t + 2)
    call.mark_joined("consumer")
    call.close("error", error_id="NO_CAMERA_ACCESS", by="consumer", now=t + 6)
    return call.to_dict()


def send_and_flush(app: Flask, *calls: dict[str, Any]) -> None:
    for call in calls:
        signals.call_ended.send(app, call=call)
    assert get_state(app).reports.flush(10), "the record writer did not drain its queue"


def rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM collaboration_sessions ORDER BY invited_at")]
    finally:
        conn.close()


# -- one record per outcome ------------------------------------------------------------
def test_one_record_per_outcome_with_the_right_fields(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    calls = [completed(), declined(T0 + 1), cancelled(T0 + 2), expired(T0 + 3), errored(T0 + 4)]
    send_and_flush(app, *calls)

    stored = rows(tmp_path / "reports.sqlite3")
    assert [r["outcome"] for r in stored] == ["completed", "declined", "cancelled", "expired", "error"]
    by = {r["outcome"]: r for r in stored}

    done = by["completed"]
    assert done["service_id"] == calls[0]["serviceId"]
    assert done["conversation_id"] == "conv-1"
    assert done["agent_id"] == "bob" and done["agent_name"] == "Bob"
    assert done["mode"] == "VIDEO_CALL"
    assert done["invited_at"] == int(T0 * 1000)
    assert done["accepted_at"] == int((T0 + 4) * 1000)
    assert done["connected_at"] == int((T0 + 5) * 1000)
    assert done["ended_at"] == int((T0 + 70) * 1000)
    assert done["duration_seconds"] == pytest.approx(65.0)
    assert done["participants"] == 2
    assert done["ended_by"] == "consumer" and done["close_reason"] == "hangup_consumer"
    assert done["error_id"] is None

    assert by["declined"]["ended_by"] == "consumer" and by["declined"]["accepted_at"] is None
    assert by["declined"]["duration_seconds"] is None and by["declined"]["participants"] == 0
    assert by["cancelled"]["ended_by"] == "agent"
    assert by["expired"]["ended_by"] == "system"
    assert by["expired"]["ended_at"] - by["expired"]["invited_at"] == 120_000
    err = by["error"]
    assert err["error_id"] == "NO_CAMERA_ACCESS" and err["ended_by"] == "consumer"
    assert err["participants"] == 1 and err["accepted_at"] == int((T0 + 4 + 2) * 1000)


def test_no_sdp_candidates_media_or_visitor_details_are_kept(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = completed()
    call.update(
        sdp="v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n", candidates=["candidate:1 1 udp 1 127.0.0.1 5000 typ host"],
        media={"codec": "VP8"}, iceServers=[{"urls": ["turn:127.0.0.1"]}],
    )
    send_and_flush(app, call)
    (row,) = rows(tmp_path / "reports.sqlite3")
    assert set(row) == {*COLUMNS, "recorded_at"}
    dump = json.dumps(row)
    for secret in ("v=0", "candidate:", "VP8", "turn:", "Visitor Vera"):
        assert secret not in dump


def test_a_call_gets_one_record_even_if_ended_twice(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    call = completed()
    send_and_flush(app, call, call)
    assert len(rows(tmp_path / "reports.sqlite3")) == 1


def test_agent_disconnect_and_hangup_before_accept_are_classified() -> None:
    call = new_call()
    call.accept(now=T0 + 1)
    call.close("agent_disconnected", now=T0 + 40)
    rec = record_from_call(call.to_dict())
    assert (rec["outcome"], rec["error_id"], rec["ended_by"]) == ("error", "AGENT_DISCONNECTED", "system")


def test_relative_db_path_lives_in_the_instance_folder(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "inst"))
    app.config.update(SECRET_KEY="x", LPCALL_REPORT_DB="reports/calls.sqlite3")
    LPCall(app)
    assert not (tmp_path / "inst").exists(), "nothing is created before the first call ends"
    send_and_flush(app, declined())
    assert len(rows(tmp_path / "inst" / "reports" / "calls.sqlite3")) == 1


def test_a_failing_write_is_logged_and_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    app = make_app(tmp_path, LPCALL_REPORT_DB=str(blocker / "reports.sqlite3"))
    with caplog.at_level(logging.ERROR, logger="flask_lpcall"):
        signals.call_ended.send(app, call=completed())  # must not raise
        signals.call_ended.send(app, call={"serviceId": "x"})  # a broken record: logged, not raised
        signals.call_ended.send(app)  # no record at all
        assert get_state(app).reports.flush(10)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "writing the record of call" in messages
    assert "cannot build a collaboration-session record" in messages
    assert "was not written" in messages
    assert get_state(app).reports.writer.failures >= 2


def test_records_of_another_app_are_not_mixed_in(tmp_path: Path) -> None:
    app_a = make_app(tmp_path / "a")
    app_b = make_app(tmp_path / "b")
    send_and_flush(app_a, completed())
    get_state(app_b).reports.flush(5)
    assert len(rows(tmp_path / "a" / "reports.sqlite3")) == 1
    assert not (tmp_path / "b" / "reports.sqlite3").exists()


# -- figures ---------------------------------------------------------------------------
def test_summary_figures() -> None:
    recs = [record_from_call(c) for c in (
        completed(talk=60), completed(T0 + 10, talk=120), completed(T0 + 86400, talk=30),
        declined(T0 + 20), expired(T0 + 86400 * 2), errored(T0 + 30),
    )]
    s = summarize(recs)
    assert s["total"] == 6
    assert s["by_outcome"] == {"completed": 3, "declined": 1, "cancelled": 0, "expired": 1, "error": 1}
    assert s["accepted"] == 4 and s["accept_rate"] == pytest.approx(4 / 6)
    assert s["average_duration"] == pytest.approx(70.0)
    assert s["p90_duration"] == pytest.approx(120.0)
    assert [(d.isoformat(), n) for d, n in s["per_day"]] == [("2026-11-03", 4), ("2026-11-04", 1), ("2026-11-05", 1)]
    assert percentile(range(1, 11), 90) == 9 and percentile([], 90) is None


# -- the report CLI --------------------------------------------------------------------
@pytest.fixture
def reported_app(tmp_path: Path) -> Flask:
    app = make_app(tmp_path)
    day = 86400
    send_and_flush(
        app,
        completed(T0 - day, talk=30, agent="alice", mode="VOICE_CALL", conv="c-a"),  # 2026-11-02
        completed(T0, talk=90),  # 2026-11-03 bob video
        declined(T0 + 60),  # 2026-11-03
        expired(T0 + day),  # 2026-11-04
        errored(T0 + 2 * day, agent="alice"),  # 2026-11-05
    )
    return app


def run_report(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(lpcall_cli, ["report", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_report_cli_csv(reported_app: Flask) -> None:
    out = run_report(reported_app, "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == list(COLUMNS)
    assert [r["outcome"] for r in table] == ["completed", "completed", "declined", "expired", "error"]
    first = table[0]
    assert first["agent_id"] == "alice" and first["mode"] == "VOICE_CALL"
    assert first["invited_at"] == "2026-11-02T09:30:00Z" and first["duration_seconds"] == "30.0"
    assert table[2]["duration_seconds"] == "" and table[4]["error_id"] == "NO_CAMERA_ACCESS"


def test_report_cli_json(reported_app: Flask) -> None:
    data = json.loads(run_report(reported_app, "--format", "json"))
    assert data["since"] is None and data["until"] is None
    recs = data["records"]
    assert len(recs) == 5 and set(recs[1]) == set(COLUMNS)
    assert recs[1]["outcome"] == "completed" and recs[1]["duration_seconds"] == 90.0
    assert recs[1]["participants"] == 2 and recs[1]["ended_by"] == "consumer"
    assert recs[1]["connected_at"] == "2026-11-03T09:30:05Z"


def test_report_cli_date_filters(reported_app: Flask) -> None:
    def outcomes(*args: str) -> list[str]:
        return [r["outcome"] for r in json.loads(run_report(reported_app, "--format", "json", *args))["records"]]

    # --until is a whole day, inclusive
    assert outcomes("--since", "2026-11-03", "--until", "2026-11-04") == ["completed", "declined", "expired"]
    assert outcomes("--since", "2026-11-03", "--until", "2026-11-03") == ["completed", "declined"]
    assert outcomes("--since", "2026-11-05") == ["error"]
    assert outcomes("--until", "2026-11-02") == ["completed"]
    # ISO times narrow to the minute
    assert outcomes("--since", "2026-11-03T09:31:00Z", "--until", "2026-11-03T23:00:00Z") == ["declined"]
    assert outcomes("--since", "2026-12-01") == []
    assert outcomes("--agent", "alice") == ["completed", "error"]
    assert outcomes("--mode", "VOICE_CALL") == ["completed"]


def test_report_cli_rejects_bad_dates_naming_the_option(reported_app: Flask) -> None:
    runner = reported_app.test_cli_runner()
    bad = runner.invoke(lpcall_cli, ["report", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output and "'yesterday' is not a date" in bad.output
    backwards = runner.invoke(lpcall_cli, ["report", "--since", "2026-11-05", "--until", "2026-11-01"])
    assert backwards.exit_code == 2 and "--since must be before --until" in backwards.output
    fmt = runner.invoke(lpcall_cli, ["report", "--format", "xml"])
    assert fmt.exit_code == 2 and "--format" in fmt.output


def test_memory_db_keeps_records_for_the_process_without_files(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "inst"))
    app.config.update(SECRET_KEY="x", LPCALL_REPORT_DB=":memory:")
    LPCall(app)
    send_and_flush(app, completed(), declined(T0 + 1))
    assert [r["outcome"] for r in get_state(app).reports.query()] == ["completed", "declined"]
    assert get_state(app).reports.store.agents() == [("bob", "Bob")]
    assert not (tmp_path / "inst").exists()
    out = app.test_cli_runner().invoke(lpcall_cli, ["report", "--format", "csv"])
    assert out.exit_code == 0 and out.output.count("\n") == 3


def test_the_flask_lpcall_group_is_the_packages_entry_point() -> None:
    import configparser
    import importlib

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    lines = cfg["options.entry_points"]["flask.commands"].strip().splitlines()
    entry = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in lines)}
    module, attr = entry["lpcall"].split(":")
    group = getattr(importlib.import_module(module), attr)
    assert group is lpcall_cli and "report" in group.commands
