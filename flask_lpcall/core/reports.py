"""Collaboration-session reports (pure: no Flask): the service one app keeps, the filters the
dashboard, the downloads and ``flask lpcall report`` share, and the CSV/JSON exports.

Every call's record (PROTOCOL.md §10) reaches :meth:`ReportService.on_call_ended` through
:data:`signals.call_ended`; a :class:`~flask_lpcall.core.records.RecordWriter` writes one
collaboration-session row into SQLite (``LPCALL_REPORT_DB``) off the request thread.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import BadFrameError
from .records import COLUMNS, RecordWriter, ReportStore, for_export, parse_bound
from .schemas import ReportFilterSchema, load_or_raise

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 366  # the dashboard's and the downloads' longest window (one bar per day)


class ReportService:
    """``state.reports``: the store, the writer and the queries of one app."""

    def __init__(self, path: str) -> None:
        self.store = ReportStore(path)
        self.writer = RecordWriter(self.store)

    def on_call_ended(self, sender: Any, call: dict[str, Any] | None = None, **_: Any) -> None:
        """Receiver of ``call_ended``: queue the record; never raises into the call."""
        try:
            if not isinstance(call, dict):
                raise TypeError(f"call_ended sent without a call record (call={call!r})")
            self.writer.submit(call)
        except Exception:
            logger.exception("flask-lpcall: the collaboration-session record was not written")

    def flush(self, timeout: float = 10.0) -> bool:
        return self.writer.flush(timeout)

    def query(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        agent_id: str | None = None,
        mode: str | None = None,
    ) -> list[dict[str, Any]]:
        return self.store.query(since=since, until=until, agent_id=agent_id, mode=mode)


def report_db_path(instance_path: str, configured: str) -> str:
    """``LPCALL_REPORT_DB`` as a path: relative paths live in the app's instance folder."""
    if configured == ReportStore.MEMORY:
        return configured
    path = os.path.expanduser(configured)
    return path if os.path.isabs(path) else os.path.join(instance_path, path)


# -- filters shared by the dashboard, the downloads and the CLI ------------------------
def parse_filters(args: dict[str, str], today: date | None = None) -> dict[str, Any]:
    """Validated filters from query args: ``since``/``until`` (days, inclusive), ``agent``, ``mode``.

    Raises BadFrameError naming the bad field.
    """
    loaded = load_or_raise(ReportFilterSchema(), {k: v for k, v in args.items() if v not in (None, "")})
    today = today or datetime.now(UTC).date()
    until_day: date = loaded.get("until") or today
    since_day: date = loaded.get("since") or (until_day - timedelta(days=DEFAULT_DAYS - 1))
    if since_day > until_day:
        raise BadFrameError("since: must not be after until", field="since")
    if (until_day - since_day).days >= MAX_DAYS:
        raise BadFrameError(f"since: at most {MAX_DAYS} days before until (use flask lpcall report for more)", field="since")
    return {"since": since_day, "until": until_day, "agent": loaded.get("agent"), "mode": loaded.get("mode")}


def bounds(filters: dict[str, Any]) -> tuple[datetime, datetime]:
    return parse_bound(filters["since"].isoformat(), end=False), parse_bound(filters["until"].isoformat(), end=True)


# -- exports --------------------------------------------------------------------------
def to_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _cell(v) for k, v in for_export(record).items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with a leading '."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_json(records: list[dict[str, Any]], **meta: Any) -> str:
    return json.dumps({**meta, "records": [for_export(r) for r in records]}, indent=2, ensure_ascii=False)
