"""Collaboration-session records: one permanent row per call, in SQLite. No Flask here.

A record keeps only what a manager reports on (seed: "collaboration session" metrics:
length, participants, mode, outcome): mode, times, duration, participant count, outcome
(+ error id), who ended the call, agent id and name, conversation id. Never SDP,
candidates, media details or the visitor's name.

Writing happens on a background thread (:class:`RecordWriter`) so a slow disk never
delays the call that just ended; a failed write is logged and dropped, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..protocol import MODES

logger = logging.getLogger(__name__)

OUTCOMES = ("completed", "declined", "cancelled", "expired", "error")

#: Columns of a record, in report order (CSV header, JSON keys).
COLUMNS = (
    "service_id",
    "conversation_id",
    "agent_id",
    "agent_name",
    "mode",
    "outcome",
    "error_id",
    "close_reason",
    "ended_by",
    "participants",
    "invited_at",
    "accepted_at",
    "connected_at",
    "ended_at",
    "duration_seconds",
    # connection quality (issue 17), from the two sides' `quality` frames: see quality_summary()
    "rtt_median_ms",
    "loss_pct",
    "poor_seconds",
    "ice_restarts",
    "network_switches",
)
#: columns added after the table's first release: an older database gets them at first use
_ADDED_COLUMNS = {"rtt_median_ms": "REAL", "loss_pct": "REAL", "poor_seconds": "REAL", "ice_restarts": "INTEGER",
                  "network_switches": "INTEGER"}
_TIME_COLUMNS = ("invited_at", "accepted_at", "connected_at", "ended_at")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collaboration_sessions (
    service_id TEXT PRIMARY KEY,
    conversation_id TEXT,
    agent_id TEXT,
    agent_name TEXT,
    mode TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error_id TEXT,
    close_reason TEXT,
    ended_by TEXT,
    participants INTEGER NOT NULL DEFAULT 0,
    invited_at INTEGER NOT NULL,
    accepted_at INTEGER,
    connected_at INTEGER,
    ended_at INTEGER,
    duration_seconds REAL,
    rtt_median_ms REAL,
    loss_pct REAL,
    poor_seconds REAL,
    ice_restarts INTEGER,
    network_switches INTEGER,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS collaboration_sessions_invited ON collaboration_sessions (invited_at);
CREATE INDEX IF NOT EXISTS collaboration_sessions_agent ON collaboration_sessions (agent_id, invited_at);
"""


# -- from a call record (PROTOCOL.md §10) to a collaboration-session record --------------
def outcome_of(call: Mapping[str, Any]) -> tuple[str, str | None]:
    """(outcome, error id) of a closed call, from its ``closeReason`` and ``errorId``."""
    reason = call.get("closeReason")
    error_id = call.get("errorId") or None
    if reason in ("declined", "cancelled", "expired"):
        return str(reason), None
    if error_id or reason == "error":
        return "error", error_id
    if reason == "agent_disconnected":
        return "error", "AGENT_DISCONNECTED"
    if reason in ("hangup_agent", "hangup_consumer", "consumer_disconnected"):
        # hanging up an invitation nobody accepted is a cancellation, not a call
        return ("completed", None) if call.get("acceptedTs") else ("cancelled", None)
    return "error", None


def _ms(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number > 0 else None


def record_from_call(call: Mapping[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """The collaboration-session record of a closed call. Only whitelisted fields are kept."""
    service_id = call.get("serviceId")
    if not isinstance(service_id, str) or not service_id:
        raise ValueError("call record has no serviceId")
    mode = call.get("mode")
    if mode not in MODES:
        raise ValueError(f"call record {service_id!r} has mode {mode!r}, not one of {MODES}")
    now = now_ms if now_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    outcome, error_id = outcome_of(call)
    invited = _ms(call.get("createdTs")) or now
    accepted = _ms(call.get("acceptedTs"))
    connected = _ms(call.get("connectedTs"))
    ended = _ms(call.get("endedTs")) or now
    start = connected or accepted
    duration = round(max(0, ended - start) / 1000.0, 3) if start else None
    participants = call.get("participants")
    ended_by = call.get("endedBy")
    return {
        "service_id": service_id,
        "conversation_id": _str_or_none(call.get("conversationId")),
        "agent_id": _str_or_none(call.get("agentId")),
        "agent_name": _str_or_none(call.get("agentName")),
        "mode": mode,
        "outcome": outcome,
        "error_id": _str_or_none(error_id),
        "close_reason": _str_or_none(call.get("closeReason")),
        "ended_by": ended_by if ended_by in ("agent", "consumer", "system") else None,
        "participants": participants if isinstance(participants, int) and 0 <= participants <= 2 else 0,
        "invited_at": invited,
        "accepted_at": accepted,
        "connected_at": connected,
        "ended_at": ended,
        "duration_seconds": duration,
        **quality_summary(call.get("quality")),
    }


# -- connection quality (issue 17) --------------------------------------------------------
QUALITY_SAMPLES = 64  # RTT / loss samples kept per side (halved, every other one, when full)
QUALITY_MAX_GAP = 10.0  # seconds: a longer silence between two frames is not counted as time at a level
_POOR = ("poor", "lost")


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def fold_quality(acc: Mapping[str, Any] | None, role: str, frame: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The call's quality accumulator with one side's (validated) ``quality`` frame added: RTT and
    loss samples, seconds at poor/lost (since the side's previous frame), and its ICE restart and
    network switch counters (cumulative on the client: the highest is kept)."""
    out = dict(acc or {})
    side = dict(out.get(role) or {})
    last_t, last_level = side.get("t"), side.get("level")
    if isinstance(last_t, (int, float)) and last_level in _POOR:
        side["poor"] = round(float(side.get("poor", 0.0)) + min(max(0.0, now - last_t), QUALITY_MAX_GAP), 3)
    side["t"], side["level"] = now, frame.get("level")
    for key, field in (("rtt", "rttMs"), ("loss", "lossPct")):
        value = _num(frame.get(field))
        if value is not None:
            samples = [*side.get(key, []), round(value, 1)]
            side[key] = samples[::2] if len(samples) > QUALITY_SAMPLES else samples
    for key, field in (("restarts", "iceRestarts"), ("switches", "networkSwitches")):
        value = frame.get(field)
        if type(value) is int:
            side[key] = max(int(side.get(key, 0)), value)
    out[role] = side
    return out


def quality_summary(acc: Any) -> dict[str, Any]:
    """The record's quality columns from the accumulator: median RTT (both sides' samples), mean loss
    of the media received (both sides), the longer of the two sides' time at poor or lost, ICE
    restarts (the higher count: a restart is seen by both sides) and network switches (both sides' sum).
    All None for a call without `quality` frames (e.g. an older client)."""
    sides = [v for v in (acc or {}).values() if isinstance(v, Mapping)] if isinstance(acc, Mapping) else []
    if not sides:
        return {"rtt_median_ms": None, "loss_pct": None, "poor_seconds": None, "ice_restarts": None, "network_switches": None}
    rtts = sorted(float(v) for s in sides for v in s.get("rtt", []) if _num(v) is not None)
    losses = [float(v) for s in sides for v in s.get("loss", []) if _num(v) is not None]
    median = None
    if rtts:
        mid = len(rtts) // 2
        median = rtts[mid] if len(rtts) % 2 else (rtts[mid - 1] + rtts[mid]) / 2
    return {
        "rtt_median_ms": round(median, 1) if median is not None else None,
        "loss_pct": round(sum(losses) / len(losses), 2) if losses else None,
        "poor_seconds": round(max(float(s.get("poor", 0.0)) for s in sides), 1),
        "ice_restarts": max(int(s.get("restarts", 0)) for s in sides),
        "network_switches": sum(int(s.get("switches", 0)) for s in sides),
    }


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- time helpers (everything is UTC) -----------------------------------------------------
def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_bound(text: str, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` (a whole UTC day: its start, or the next day's start when ``end``) or ISO 8601."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- storage ------------------------------------------------------------------------------
class _MemoryConnection(sqlite3.Connection):
    """The one connection of a ``:memory:`` store: ``close()`` keeps it open (the data lives in it)."""

    def close(self) -> None:
        return None


_NO_LOCK = contextlib.nullcontext()

def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """A table made by an older release lacks the columns added since: add them (empty)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(collaboration_sessions)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE collaboration_sessions ADD COLUMN {name} {kind}")
    conn.commit()


class ReportStore:
    """The SQLite table of collaboration-session records (one connection per operation)."""

    MEMORY = ":memory:"

    def __init__(self, path: str) -> None:
        self.path = path
        self._ready = False
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None

    @property
    def in_memory(self) -> bool:
        """``:memory:``: records live as long as the process (tests, throwaway demos)."""
        return self.path == self.MEMORY

    def _connect(self) -> sqlite3.Connection:
        if self.in_memory:
            with self._lock:
                if self._memory is None:
                    self._memory = _MemoryConnection(self.MEMORY, check_same_thread=False)
                    self._memory.row_factory = sqlite3.Row
                    self._memory.executescript(_SCHEMA)
                    _add_missing_columns(self._memory)
                    self._ready = True
            return self._memory
        if not self._ready:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.row_factory = sqlite3.Row
        if not self._ready:
            with self._lock:
                if not self._ready:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(_SCHEMA)
                    _add_missing_columns(conn)
                    self._ready = True
        return conn

    def ensure(self) -> None:
        """Create the folder and the table if they are missing."""
        self._connect().close()

    def add(self, record: Mapping[str, Any]) -> bool:
        """Insert ``record``; a second record for the same call is ignored (returns False)."""
        return self.add_many([record]) == 1

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert ``records`` in one transaction; returns how many were new."""
        now = int(datetime.now(UTC).timestamp() * 1000)
        placeholders = ", ".join("?" for _ in range(len(COLUMNS) + 1))
        sql = f"INSERT OR IGNORE INTO collaboration_sessions ({', '.join(COLUMNS)}, recorded_at) VALUES ({placeholders})"
        conn = self._connect()
        try:
            added = 0
            with self._lock if self.in_memory else _NO_LOCK, conn:
                for record in records:
                    added += conn.execute(sql, [*(record.get(c) for c in COLUMNS), now]).rowcount
            return added
        finally:
            conn.close()

    def query(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: str | None = None,
        mode: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records invited in ``[since, until)``, oldest first; times as ms since the epoch."""
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("invited_at >= ?")
            args.append(to_ms(since))
        if until is not None:
            where.append("invited_at < ?")
            args.append(to_ms(until))
        if agent_id:
            where.append("agent_id = ?")
            args.append(agent_id)
        if mode:
            where.append("mode = ?")
            args.append(mode)
        sql = f"SELECT {', '.join(COLUMNS)} FROM collaboration_sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY invited_at, service_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if not self.in_memory and not os.path.exists(self.path):
            return []
        conn = self._connect()
        try:
            with self._lock if self.in_memory else _NO_LOCK:
                return [dict(row) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def agents(self) -> list[tuple[str, str]]:
        """(agent id, latest known name) of every agent with a record."""
        if not self.in_memory and not os.path.exists(self.path):
            return []
        conn = self._connect()
        try:
            with self._lock if self.in_memory else _NO_LOCK:
                rows = conn.execute(
                    # SQLite takes the bare agent_name from the row holding MAX(invited_at)
                    "SELECT agent_id, agent_name, MAX(invited_at) FROM collaboration_sessions "
                    "WHERE agent_id IS NOT NULL GROUP BY agent_id ORDER BY agent_id"
                ).fetchall()
            return [(r["agent_id"], r["agent_name"] or r["agent_id"]) for r in rows]
        finally:
            conn.close()


def for_export(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as the CLI and downloads show it: times as ISO 8601 UTC strings."""
    out = {c: record.get(c) for c in COLUMNS}
    for column in _TIME_COLUMNS:
        out[column] = iso(out[column])
    return out


# -- figures ------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) or None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarize(records: Sequence[Mapping[str, Any]], since: date | None = None, until: date | None = None) -> dict[str, Any]:
    """Totals, accept rate, average and p90 duration of completed calls, calls per UTC day.

    ``since``/``until`` (inclusive days) fix the span of ``per_day``; otherwise it spans the records.
    """
    by_outcome = {o: 0 for o in OUTCOMES}
    for r in records:
        by_outcome[r["outcome"]] = by_outcome.get(r["outcome"], 0) + 1
    total = len(records)
    accepted = sum(1 for r in records if r.get("accepted_at"))
    durations = [float(r["duration_seconds"]) for r in records if r["outcome"] == "completed" and r.get("duration_seconds") is not None]
    days: dict[date, int] = {}
    for r in records:
        day = datetime.fromtimestamp(r["invited_at"] / 1000, tz=UTC).date()
        days[day] = days.get(day, 0) + 1
    first = since or (min(days) if days else None)
    last = until or (max(days) if days else None)
    per_day: list[tuple[date, int]] = []
    if first is not None and last is not None and first <= last:
        span = min((last - first).days, 366)
        per_day = [(first + timedelta(days=i), days.get(first + timedelta(days=i), 0)) for i in range(span + 1)]
    return {
        "total": total,
        "by_outcome": by_outcome,
        "accepted": accepted,
        "accept_rate": (accepted / total) if total else None,
        "average_duration": (sum(durations) / len(durations)) if durations else None,
        "p90_duration": percentile(durations, 90),
        "per_day": per_day,
    }


def format_duration(seconds: float | None) -> str:
    """``1:05`` / ``1:02:03``; an em dash for no value."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- writing off the request thread ------------------------------------------------------
class RecordWriter:
    """Queue + background thread that writes records; never raises into the caller.

    The thread starts on the first record (and again after a fork or when it went idle),
    so an idle app keeps no thread around.
    """

    IDLE_SECONDS = 5.0
    BATCH = 200

    def __init__(self, store: ReportStore) -> None:
        self.store = store
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._pending = 0
        self._done = threading.Condition(self._lock)
        self.failures = 0

    def submit(self, call: Mapping[str, Any]) -> None:
        """Turn ``call`` into a record and queue it. Logs (never raises) a bad call record."""
        try:
            record = record_from_call(call)
        except Exception:
            self.failures += 1
            logger.exception("flask-lpcall: cannot build a collaboration-session record")
            return
        with self._lock:
            self._pending += 1
            self._queue.put(record)
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():  # forked (gunicorn --preload): the thread did not come along
            self._pid = os.getpid()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lpcall-report-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            finally:
                with self._lock:
                    self._pending -= len(batch)
                    self._done.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        """One transaction for the batch; if it fails, record by record so one bad row loses only itself."""
        try:
            added = self.store.add_many(batch)
        except Exception:
            if len(batch) == 1:
                self.failures += 1
                logger.exception("flask-lpcall: writing the record of call %s failed", batch[0].get("service_id"))
                return
            for record in batch:
                self._write([record])
            return
        if added < len(batch):
            logger.info("flask-lpcall: %d of %d calls already had a record", len(batch) - added, len(batch))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        with self._lock:
            return self._done.wait_for(lambda: self._pending == 0, timeout=timeout)
