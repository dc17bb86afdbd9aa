"""The manager dashboard: ``GET <prefix>/agent/reports`` for agents whose profile has
``"View reports"``, and ``GET <prefix>/agent/reports/export.<csv|json>`` (the same records)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup

from ..core.agents import PERM_REPORTS
from ..core.records import for_export, format_duration, summarize
from ..core.reports import bounds, parse_filters, to_csv, to_json
from ..errors import BadFrameError
from ..protocol import MODES
from ..state import get_state
from ..texts import render
from .assets import asset_url
from .auth import current_agent
from .svgchart import bar_chart

logger = logging.getLogger(__name__)


# -- dashboard --------------------------------------------------------------------------
def _login_redirect() -> Response:
    for endpoint in ("lpcall.agent_login", "lpcall.agent_workspace", "lpcall.agent_home"):
        if endpoint in current_app.view_functions:
            return redirect(url_for(endpoint, next=request.full_path))  # type: ignore[return-value]
    abort(401)


def _authorised() -> Any:
    agent = current_agent()
    if agent is None:
        return None
    if PERM_REPORTS not in getattr(agent, "permissions", ()):
        state = get_state()
        html = render_template("lpcall/reports_forbidden.html", texts=state.texts, lang=state.settings.locale,
                               workspace_url=_workspace_url())
        abort(Response(html, status=403))
    return agent


def agent_reports() -> Any:
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
    since, until = bounds(filters)
    service = state.reports
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
        lang=state.settings.locale,
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


def reports_alias() -> Any:
    query = request.query_string.decode("latin-1")
    return redirect(url_for("lpcall.agent_reports") + (f"?{query}" if query else ""))


def agent_reports_export(fmt: str) -> Any:
    if fmt not in ("csv", "json"):
        abort(404)
    if _authorised() is None:
        abort(401)
    try:
        filters = parse_filters(request.args.to_dict())
    except BadFrameError as exc:
        return {"error": exc.to_dict()}, 400
    since, until = bounds(filters)
    records = get_state().reports.query(since, until, filters["agent"], filters["mode"])
    name = f"lpcall-report-{filters['since']}-{filters['until']}.{fmt}"
    if fmt == "csv":
        body, mimetype = to_csv(records), "text/csv"
    else:
        body, mimetype = to_json(records, since=filters["since"].isoformat(), until=filters["until"].isoformat()), "application/json"
    resp = Response(body, mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/agent/reports", view_func=agent_reports, methods=["GET"])
    bp.add_url_rule("/reports/", view_func=reports_alias, methods=["GET"])
    bp.add_url_rule("/agent/reports/export.<fmt>", view_func=agent_reports_export, methods=["GET"])


def _workspace_url() -> str | None:
    for endpoint in ("lpcall.agent_workspace", "lpcall.agent_home", "lpcall.agent_index"):
        if endpoint in current_app.view_functions:
            return url_for(endpoint)
    return None
