"""Reporting: records every call at CLOSED, the manager dashboard and ``flask lpcall report``.

* ``init_state`` connects to :data:`signals.call_ended` for the app and hands each call
  record (PROTOCOL.md §10) to a :class:`~flask_lpcall.records.RecordWriter`, which writes one
  collaboration-session row into SQLite (``LPCALL_REPORT_DB``) off the request thread.
* ``GET <prefix>/agent/reports``: the dashboard, for agents whose profile has
  ``"View reports"``; ``GET <prefix>/agent/reports/export.<csv|json>``: the same records.
* ``report``: the click command of the ``flask lpcall`` group (``cli.py``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.cli import with_appcontext
from markupsafe import Markup

from . import signals
from .agent import PERM_REPORTS
from .assets import asset_url
from .errors import BadFrameError
from .records import (
    COLUMNS,
    MODES,
    RecordWriter,
    ReportStore,
    for_export,
    format_duration,
    parse_bound,
    summarize,
)
from .svgchart import bar_chart
from .texts import render

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 30
MAX_DAYS = 366  # the dashboard's and the downloads' longest window (one bar per day)


class ReportService:
    """``state.services["reports"]``: the store, the writer and the queries of one app."""

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


def report_db_path(app: Flask, configured: str) -> str:
    """``LPCALL_REPORT_DB`` as a path: relative paths live in the app's instance folder."""
    if configured == ReportStore.MEMORY:
        return configured
    path = os.path.expanduser(configured)
    return path if os.path.isabs(path) else os.path.join(app.instance_path, path)


def init_state(app: Flask, state: Any) -> None:
    service = ReportService(report_db_path(app, state.settings["LPCALL_REPORT_DB"]))
    state.services["reports"] = service
    # weak=False: the receiver is a bound method of a service only the state holds;
    # blinker drops the connection when the app (the sender) goes away.
    signals.call_ended.connect(service.on_call_ended, sender=app, weak=False)


def get_service(app: Flask | None = None) -> ReportService:
    from .extension import get_state

    return get_state(app).services["reports"]  # type: ignore[no-any-return]


# -- filters shared by the dashboard, the downloads and the CLI ------------------------
def parse_filters(args: dict[str, str], today: date | None = None) -> dict[str, Any]:
    """Validated filters from query args: ``since``/``until`` (days, inclusive), ``agent``, ``mode``.

    Raises BadFrameError naming the bad field.
    """
    from .schemas import ReportFilterSchema, load_or_raise

    loaded = load_or_raise(ReportFilterSchema(), {k: v for k, v in args.items() if v not in (None, "")})
    today = today or datetime.now(UTC).date()
    until_day: date = loaded.get("until") or today
    since_day: date = loaded.get("since") or (until_day - timedelta(days=DEFAULT_DAYS - 1))
    if since_day > until_day:
        raise BadFrameError("since: must not be after until", field="since")
    if (until_day - since_day).days >= MAX_DAYS:
        raise BadFrameError(f"since: at most {MAX_DAYS} days before until (use flask lpcall report for more)", field="since")
    return {"since": since_day, "until": until_day, "agent": loaded.get("agent"), "mode": loaded.get("mode")}


def _bounds(filters: dict[str, Any]) -> tuple[datetime, datetime]:
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


# -- dashboard --------------------------------------------------------------------------
def _current_agent() -> Any:
    from .agent import current_agent

    return current_agent()


def _login_redirect() -> Response:
    for endpoint in ("lpcall.agent_login", "lpcall.agent_workspace", "lpcall.agent_home"):
        if endpoint in current_app.view_functions:
            return redirect(url_for(endpoint, next=request.full_path))  # type: ignore[return-value]
    abort(401)


def _authorised() -> Any:
    agent = _current_agent()
    if agent is None:
        return None
    if PERM_REPORTS not in getattr(agent, "permissions", ()):
        from .extension import get_state

        state = get_state()
        html = render_template("lpcall/reports_forbidden.html", texts=state.texts, lang=state.settings["LPCALL_LOCALE"],
                               workspace_url=_workspace_url())
        abort(Response(html, status=403))
    return agent


def register(bp: Blueprint) -> None:
    @bp.get("/agent/reports")
    def agent_reports() -> Any:
        from .extension import get_state

        agent = _authorised()
        if agent is None:
            return _login_redirect()
        state = get_state()
        texts = state.texts
        error = None
        try:
            filters = parse_filters(request.args.to_dict())
        except BadFrameError as exc:
            error = render(texts, "report.bad_filter", field=exc.field or "", problem=str(exc))
            filters = parse_filters({})
        since, until = _bounds(filters)
        service = get_service()
        records = service.query(since, until, filters["agent"], filters["mode"])
        summary = summarize(records, filters["since"], filters["until"])
        chart = bar_chart(
            summary["per_day"],
            title=render(texts, "report.chart_title"),
            bar_label=texts["report.chart_bar"],
        )
        agents = service.store.agents()
        recent = [for_export(r) for r in reversed(records[-50:])]
        query = {k: v for k, v in (("since", filters["since"].isoformat()), ("until", filters["until"].isoformat()),
                                   ("agent", filters["agent"]), ("mode", filters["mode"])) if v}
        html = render_template(
            "lpcall/reports.html",
            t=texts,
            lang=state.settings["LPCALL_LOCALE"],
            agent=agent,
            filters=filters,
            error=error,
            summary=summary,
            chart=Markup(chart),
            agents=agents,
            modes=MODES,
            recent=recent,
            fmt_duration=format_duration,
            export_csv=url_for("lpcall.agent_reports_export", fmt="csv", **query),
            export_json=url_for("lpcall.agent_reports_export", fmt="json", **query),
            css_url=asset_url("lpcall/lpcall.css"),
            workspace_url=_workspace_url(),
        )
        resp = Response(html, status=400 if error else 200)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    @bp.get("/reports/")
    def reports_alias() -> Any:
        query = request.query_string.decode("latin-1")
        return redirect(url_for("lpcall.agent_reports") + (f"?{query}" if query else ""))

    @bp.get("/agent/reports/export.<fmt>")
    def agent_reports_export(fmt: str) -> Any:
        if fmt not in ("csv", "json"):
            abort(404)
        if _authorised() is None:
            abort(401)
        try:
            filters = parse_filters(request.args.to_dict())
        except BadFrameError as exc:
            return {"error": exc.to_dict()}, 400
        since, until = _bounds(filters)
        records = get_service().query(since, until, filters["agent"], filters["mode"])
        name = f"lpcall-report-{filters['since']}-{filters['until']}.{fmt}"
        if fmt == "csv":
            body, mimetype = to_csv(records), "text/csv"
        else:
            body, mimetype = to_json(records, since=filters["since"].isoformat(), until=filters["until"].isoformat()), "application/json"
        resp = Response(body, mimetype=mimetype)
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        resp.headers["Cache-Control"] = "no-store"
        return resp


def _workspace_url() -> str | None:
    for endpoint in ("lpcall.agent_workspace", "lpcall.agent_home", "lpcall.agent_index"):
        if endpoint in current_app.view_functions:
            return url_for(endpoint)
    return None


# -- CLI: flask lpcall report ------------------------------------------------------------
class _Bound(click.ParamType):
    name = "DATE"

    def __init__(self, end: bool) -> None:
        self.end = end

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_bound(str(value), end=self.end)
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", param, ctx)


@click.command("report")
@click.option("--since", type=_Bound(end=False), help="First day (YYYY-MM-DD, UTC) or ISO 8601 time; default: all.")
@click.option("--until", type=_Bound(end=True), help="Last day, inclusive (YYYY-MM-DD, UTC) or ISO 8601 time; default: now.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--agent", default=None, help="Only this agent id.")
@click.option("--mode", type=click.Choice(list(MODES)), default=None, help="Only this call mode.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default: stdout).")
@with_appcontext
def report_command(
    since: datetime | None, until: datetime | None, fmt: str, agent: str | None, mode: str | None, output: Any
) -> None:
    """Collaboration-session records (one per call) as CSV or JSON."""
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    service = get_service(current_app._get_current_object())  # type: ignore[attr-defined]
    service.flush(5.0)
    records = service.query(since, until, agent, mode)
    if fmt == "csv":
        output.write(to_csv(records))
    else:
        meta = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
        output.write(to_json(records, **meta) + "\n")
