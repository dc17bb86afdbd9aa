"""Reporting benchmark: what writing the collaboration-session record costs the call that ends,
and how fast the dashboard's figures come out of a large table; each beside a baseline, same run.

* close cost: time spent inside ``signals.call_ended.send(app, call=...)`` (the call manager's
  CLOSED transition waits for it) with flask-lpcall's receiver (queue + background writer)
  versus a baseline receiver that writes the same row synchronously (one SQLite transaction per
  call, WAL). Also: how long the background writer needs to drain the queue (records/s).
* dashboard: ``query`` + ``summarize`` + the SVG chart for the default 30-day window over a table of
  ROWS records, versus the baseline ``SELECT COUNT(*)`` of the same window (the floor).

    python benchmarks/bench_reporting.py [--calls 2000] [--rows 50000]   (or: python -m benchmarks reporting)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask

from flask_lpcall import LPCall, signals
from flask_lpcall.core.calls import CallSession
from flask_lpcall.core.records import ReportStore, record_from_call, summarize
from flask_lpcall.state import get_state
from flask_lpcall.web.svgchart import bar_chart

ISSUE = 8


def call_record(i: int, t: float) -> dict[str, Any]:
    s = CallSession.invite(conversation_id=f"conv-{i}", consumer_id=f"c-{i}", agent_id=f"agent-{i % 7}",
                           agent_name=f"Agent {i % 7}", visitor_name="V", mode=("VOICE_CALL", "VIDEO_CALL")[i % 2],
                           ttl=120, now=t)
    if i % 5 == 0:
        s.close("declined", now=t + 5)
    else:
        s.accept(now=t + 3)
        s.mark_joined("agent")
        s.mark_joined("consumer")
        s.mark_connected(now=t + 4)
        s.close("hangup_agent", now=t + 4 + (i % 600))
    return s.to_dict()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def close_cost(calls: int, tmp: Path) -> dict[str, Any]:
    now = time.time()
    records = [call_record(i, now - i) for i in range(calls)]

    # ours: the extension's receiver
    app = Flask("bench", instance_path=str(tmp / "inst"))
    app.config.update(SECRET_KEY="bench", LPCALL_REPORT_DB=str(tmp / "ours.sqlite3"))
    LPCall(app)
    service = get_state(app).reports
    service.store.ensure()
    ours: list[float] = []
    t_all = time.perf_counter()
    for rec in records:
        t0 = time.perf_counter()
        signals.call_ended.send(app, call=rec)
        ours.append(time.perf_counter() - t0)
    sent = time.perf_counter() - t_all
    assert service.flush(120)
    drained = time.perf_counter() - t_all
    assert len(service.query()) == calls

    # baseline: the same row written synchronously inside the receiver
    base_app = Flask("bench-baseline", instance_path=str(tmp / "inst"))
    store = ReportStore(str(tmp / "baseline.sqlite3"))
    store.ensure()

    def sync_receiver(sender: Any, call: dict[str, Any], **_: Any) -> None:
        store.add(record_from_call(call))

    signals.call_ended.connect(sync_receiver, base_app, weak=False)
    base: list[float] = []
    for rec in records:
        t0 = time.perf_counter()
        signals.call_ended.send(base_app, call=rec)
        base.append(time.perf_counter() - t0)
    assert len(store.query()) == calls
    us = 1e6
    return {
        "calls": calls,
        "ours_p50_us": statistics.median(ours) * us, "ours_p99_us": pct(ours, 99) * us, "ours_max_us": max(ours) * us,
        "base_p50_us": statistics.median(base) * us, "base_p99_us": pct(base, 99) * us, "base_max_us": max(base) * us,
        "send_all_s": sent, "drain_s": drained, "drain_rate": calls / drained,
    }


def dashboard(rows: int, tmp: Path) -> dict[str, Any]:
    store = ReportStore(str(tmp / "big.sqlite3"))
    store.ensure()
    now = time.time()
    span = 365 * 86400
    import sqlite3

    from flask_lpcall.core.records import COLUMNS

    conn = sqlite3.connect(store.path)
    with conn:
        conn.executemany(
            f"INSERT INTO collaboration_sessions ({', '.join(COLUMNS)}, recorded_at) VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
            ([*(record_from_call(call_record(i, now - (i * span / rows))).get(c) for c in COLUMNS), 0] for i in range(rows)),
        )
    conn.close()
    until = datetime.now(UTC).date()
    since = until - timedelta(days=29)
    lo = datetime(since.year, since.month, since.day, tzinfo=UTC)
    hi = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)

    def ours() -> int:
        recs = store.query(lo, hi)
        s = summarize(recs, since, until)
        bar_chart(s["per_day"], title="Calls per day")
        return len(recs)

    def floor() -> int:
        c = sqlite3.connect(store.path)
        try:
            return int(c.execute("SELECT COUNT(*) FROM collaboration_sessions WHERE invited_at >= ? AND invited_at < ?",
                                 (int(lo.timestamp() * 1000), int(hi.timestamp() * 1000))).fetchone()[0])
        finally:
            c.close()

    def timed(fn: Any, n: int = 5) -> tuple[float, int]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            count = fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), count

    t_ours, n_ours = timed(ours)
    t_floor, n_floor = timed(floor)
    assert n_ours == n_floor
    return {"rows": rows, "window_rows": n_ours, "ours_ms": t_ours * 1000, "floor_ms": t_floor * 1000}


def render(close: dict[str, Any], dash: dict[str, Any]) -> str:
    return f"""Run: `python -m benchmarks reporting` (`bench_reporting.py --calls {close['calls']} --rows {dash['rows']}`) on this machine
(2 shared cores, SQLite in WAL mode on local disk), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

**What closing a call waits for** (time inside `signals.call_ended.send`, {close['calls']} calls):

| receiver | p50 | p99 | max |
|---|---|---|---|
| flask-lpcall (queue, background writer) | {close['ours_p50_us']:.0f} µs | {close['ours_p99_us']:.0f} µs | {close['ours_max_us']:.0f} µs |
| baseline: synchronous SQLite insert | {close['base_p50_us']:.0f} µs | {close['base_p99_us']:.0f} µs | {close['base_max_us']:.0f} µs |

The background writer stored all {close['calls']} records {close['drain_s']:.2f} s after the first call ended
({close['drain_rate']:.0f} records/s, batched: up to 200 records per transaction).

**Dashboard figures** (default 30-day window over a table of {dash['rows']} records,
{dash['window_rows']} in the window): query + summary + SVG chart {dash['ours_ms']:.1f} ms, beside the floor
`SELECT COUNT(*)` of the same window {dash['floor_ms']:.1f} ms (median of 5).
"""


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=50000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        close = close_cost(args.calls, Path(d))
        dash = dashboard(args.rows, Path(d))
    return render(close, dash)


if __name__ == "__main__":
    from benchmarks import write_section

    result = main()
    write_section("reporting", result, ISSUE)
    print(result)
