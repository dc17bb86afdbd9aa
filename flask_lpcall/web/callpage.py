"""The standalone call page (issue 18): ``<prefix>/call/<link>``, a full-page call for app webviews
and links sent by e-mail or SMS.

The link is a signed, short-lived token (:class:`~flask_lpcall.tokens.TokenSigner`, purpose
``calllink``) that carries ids only: ``{"sid": serviceId, "jti": <random>}``. The agent of the call
creates it (``POST <prefix>/api/agent/call-link``, or :func:`call_link` from the site's own code);
it works once. Its first opening is recorded in the store (``calllink:<jti>``) together with a
random *claim* that the page's browser keeps in a cookie scoped to the page: a reload of that
browser opens the page again (the call resumes), any other browser gets the "already used" page.

Resume in a cross-site iframe: a host app on another site that frames the page (allowed by
``LPCALL_CALL_PAGE_FRAME_ANCESTORS``) gets no ``SameSite=Lax`` cookie: the browser neither stores nor
sends it there, and browsers that block third-party cookies drop ``SameSite=None`` ones too. So the
cookie is ``SameSite=None; Secure`` over https (``Lax`` over http, where ``None`` is refused), and
the page also keeps the claim in its own ``sessionStorage`` (``lpcall.claim:<path>``; per tab,
partitioned by the host's site, kept across reloads). The "used" page of a link loads
``callpage_claim.js``, which, when this tab holds the link's claim, opens the link again as
``?claim=<claim>`` (once; the page then drops it from its address).

An expired, used or forged link, or one whose call is over, gets a small localized HTML page with
a 4xx status, never a stack trace (texts ``callpage.*``).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import secrets
import time
from typing import Any

import segno
from flask import Blueprint, Response, jsonify, render_template, request, session, url_for
from markupsafe import Markup

from ..errors import BadFrameError, InvalidStateError, LPCallError, NotAllowedError, NotFoundError
from ..state import LPCallState, get_state
from ..store.keys import calllink_key, handoff_key
from .assets import asset_url
from .auth import SESSION_CSRF, current_agent
from .consumer import client_config
from .jsonapi import consumer_id_from_request, json_body, json_error, make_page_token

logger = logging.getLogger(__name__)

PURPOSE = "calllink"
#: the cookie holding that claim (path: the page's URL only)
CLAIM_COOKIE = "lpcall_calllink"
#: how long a use is remembered: longer than any link lives and any call lasts
USED_TTL = 24 * 3600.0


#: HTTP status of the page for each kind of unusable link
_STATUS = {"invalid": 404, "expired": 410, "used": 410, "ended": 410, "cancelled": 410}


class LinkProblem(Exception):
    """Why a link does not open the call page: ``invalid``/``expired``/``used``/``ended``/``cancelled``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.status = _STATUS[kind]


def make_link_token(state: LPCallState, service_id: str) -> tuple[str, float]:
    """A new single-use link token for the call ``service_id`` and its expiry (epoch seconds)."""
    token = state.signer.sign(PURPOSE, {"sid": service_id, "jti": secrets.token_urlsafe(12)})
    return token, time.time() + float(state.settings.call_link_ttl)


def call_link(service_id: str, *, external: bool = True) -> dict[str, Any]:
    """``{"url", "expires", "serviceId"}``: a standalone-page link for an open call (request context).

    For the site's own code (e.g. to send the link by SMS); the agent workspace's API calls it too.
    """
    state = get_state()
    session_ = state.calls.get(service_id)
    if session_ is None or not session_.is_open:
        raise NotFoundError("no such call", field="serviceId")
    token, expires = make_link_token(state, service_id)
    url = url_for("lpcall.call_page", link=token, _external=external)
    return {"url": url, "expires": expires, "serviceId": service_id}


def _verify(state: LPCallState, link: str) -> dict[str, Any]:
    try:
        data = state.signer.verify(PURPOSE, link, float(state.settings.call_link_ttl))
    except NotAllowedError as exc:
        raise LinkProblem("expired" if exc.code == "TOKEN_EXPIRED" else "invalid") from None
    sid, jti = data.get("sid"), data.get("jti")
    if not isinstance(sid, str) or not sid or not isinstance(jti, str) or not jti:
        raise LinkProblem("invalid")
    return data


def _use(state: LPCallState, jti: str, claims: list[str]) -> str:
    """Record the link's first use and return the claim of the browser that may reopen it.

    A second use is allowed only with the first one's claim (a reload of the same page): from its
    cookie or, where cookies are blocked, the ``claim`` query parameter (callpage_claim.js)."""
    fresh = secrets.token_urlsafe(16)
    outcome: dict[str, str] = {}

    def apply(doc: Any) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("claim"), str):
            outcome["claim"] = doc["claim"]
            return doc
        outcome["claim"] = fresh
        outcome["new"] = "1"
        return {"claim": fresh, "ts": time.time()}

    state.store.update(calllink_key(jti), apply, ttl=USED_TTL)
    if outcome.get("new"):
        return fresh
    for claim in claims:
        if claim and len(claim) <= 64 and hmac.compare_digest(claim, outcome["claim"]):
            return claim
    raise LinkProblem("used")


def _problem_page(state: LPCallState, problem: LinkProblem) -> Response:
    texts = state.texts
    # a used link may be this tab's own, whose claim cookie the browser did not send (cross-site iframe)
    reclaim = asset_url("lpcall/callpage_claim.js") if problem.kind == "used" else None
    html = render_template(
        "lpcall/callpage_problem.html",
        lang=state.settings.locale,
        title=texts["callpage.title"],
        heading=texts[f"callpage.{problem.kind}.title"],
        message=texts[f"callpage.{problem.kind}"],
        css=asset_url("lpcall/callpage.css"),
        reclaim=reclaim,
    )
    resp = Response(html, status=problem.status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _page_data(state: LPCallState, call: Any) -> dict[str, Any]:
    """What the page's script needs: ids, the page's identity for this call, texts, the call."""
    token = make_page_token(state, call)
    return {
        "base": state.url_prefix.rstrip("/"),
        "identity": {"consumerId": call.consumer_id, "token": token},
        "call": {"serviceId": call.service_id, "mode": call.mode, "agentId": call.agent_id,
                 "agentName": call.agent_name, "visitorName": call.visitor_name, "sessionState": call.state},
        "config": client_config(state),
    }


def _security_headers(resp: Response, state: Any) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the link never leaks to another site
    resp.headers["X-Content-Type-Options"] = "nosniff"
    ancestors = " ".join(state.settings.call_page_frame_ancestors) or "'none'"
    resp.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
    return resp


def _agent_call_link() -> Any:
    agent = current_agent()
    if agent is None:
        return json_error(NotAllowedError("log in as an agent first", code="NOT_AUTHENTICATED"), 401)
    sent = request.headers.get("X-CSRF-Token", "")
    expected = session.get(SESSION_CSRF, "")
    if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
        return json_error(NotAllowedError("X-CSRF-Token: missing or wrong (the workspace's csrf_token)",
                                          field="X-CSRF-Token"), 403)
    body = json_body()
    sid = body.get("serviceId")
    if not isinstance(sid, str) or not sid:
        raise BadFrameError("serviceId: must be a non-empty string", field="serviceId")
    call = get_state().calls.get(sid)
    if call is None or not call.is_open or call.agent_id != agent.id:
        raise NotFoundError("no such call", field="serviceId")
    if call.state != "INVITED":
        raise InvalidStateError("serviceId: the call is answered already; a link opens an invitation")
    return jsonify(call_link(sid))


# -- "continue on my phone" (issue 18, 2): the visitor's own link for its answered call ---------------
def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an SVG document (segno, made here: no third-party service)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=6, border=2, xmldecl=False, svgns=True,
                                    title="QR code", dark="#000", light="#fff")
    return out.getvalue().decode("utf-8")


def _consumer_call(sid: Any) -> Any:
    cid = consumer_id_from_request(sid)
    if not isinstance(sid, str) or not sid:
        raise BadFrameError("serviceId: must be a non-empty string", field="serviceId")
    call = get_state().calls.get(sid)
    if call is None or not call.is_open or call.consumer_id != cid:
        raise NotFoundError("no such call", field="serviceId")
    return call


def _handoff_record(state: LPCallState, jti: str) -> dict[str, Any]:
    doc = state.store.get(handoff_key(jti)) if isinstance(jti, str) and 0 < len(jti) <= 64 else None
    if not isinstance(doc, dict):
        raise NotFoundError("no such handoff (expired or unknown)", field="handoffId")
    return doc


def _handoff_start() -> Any:
    state = get_state()
    call = _consumer_call(json_body().get("serviceId"))
    if call.state not in ("INVITED", "ACCEPTED"):
        raise InvalidStateError("serviceId: the call cannot continue on another device")
    jti = secrets.token_urlsafe(12)
    token = state.signer.sign(PURPOSE, {"sid": call.service_id, "jti": jti, "h": 1})
    ttl = float(state.settings.call_link_ttl)
    state.store.set(handoff_key(jti), {"sid": call.service_id, "state": "waiting", "ts": time.time()},
                    ttl=ttl + 60)
    url = url_for("lpcall.call_page", link=token, _external=True)
    return jsonify({"handoffId": jti, "url": url, "expires": time.time() + ttl, "qrSvg": qr_svg(url),
                    "serviceId": call.service_id})


def _handoff_status(jti: str, cancel: bool = False) -> Any:
    state = get_state()
    doc = _handoff_record(state, jti)
    call = _consumer_call(doc.get("sid"))
    if cancel:
        def apply(old: Any) -> Any:
            if isinstance(old, dict) and old.get("state") == "waiting":
                return {**old, "state": "cancelled"}
            return old

        state.store.update(handoff_key(jti), apply, ttl=float(state.settings.call_link_ttl) + 60)
        doc = _handoff_record(state, jti)
    present = state.calls.is_present(call.service_id, "consumer")
    return jsonify({"handoffId": jti, "state": doc.get("state"), "serviceId": call.service_id,
                    "consumerPresent": bool(present)})


def _open_handoff(state: LPCallState, jti: str) -> None:
    """The phone opened the link: the record says so (the desktop then lets the call go)."""
    def apply(old: Any) -> Any:
        if not isinstance(old, dict):
            raise LinkProblem("expired")
        if old.get("state") == "cancelled":
            raise LinkProblem("cancelled")
        return {**old, "state": "opened", "openedTs": old.get("openedTs") or time.time()}

    state.store.update(handoff_key(jti), apply, ttl=USED_TTL)


def call_handoff() -> Any:
    """The visitor continues its call (or answers its invitation) on another device: a one-time link and its QR code."""
    return _handoff_start()


def call_handoff_status(jti: str) -> Any:
    return _handoff_status(jti)


def call_handoff_cancel(jti: str) -> Any:
    return _handoff_status(jti, cancel=True)


def agent_call_link() -> Any:
    """The agent of an invited call gets a link to the standalone call page (``{url, expires}``)."""
    return _agent_call_link()


def call_page(link: str) -> Any:
    state = get_state()
    try:
        data = _verify(state, link)
        call = state.calls.get(data["sid"])
        if call is None or not call.is_open:
            raise LinkProblem("ended")
        if data.get("h"):
            if state.store.get(handoff_key(data["jti"])) is None:
                raise LinkProblem("expired")
            if (state.store.get(handoff_key(data["jti"])) or {}).get("state") == "cancelled":
                raise LinkProblem("cancelled")
        claims = [c for c in (request.cookies.get(CLAIM_COOKIE), request.args.get("claim")) if isinstance(c, str)]
        claim = _use(state, data["jti"], claims)
        if data.get("h"):
            _open_handoff(state, data["jti"])
        if call.state == "INVITED":
            # the link's page is a page of the visitor: closing the chat tab meanwhile no longer
            # withdraws the invitation (``consumer_disconnected``); it still expires (LPCALL_INVITE_TTL)
            state.calls.consumer_page_opened(call.consumer_id, f"callpage:{data['jti']}")
    except LinkProblem as problem:
        logger.info("call page refused: %s link", problem.kind)
        return _problem_page(state, problem)
    except LPCallError as exc:  # the store failed: still a page, not JSON
        logger.warning("call page: %s", exc)
        return _problem_page(state, LinkProblem("ended"))
    page_data = _page_data(state, call)
    page_data["claim"] = claim  # kept in the tab's sessionStorage too (cross-site iframes)
    if data.get("h"):
        page_data["handoff"] = {"id": data["jti"]}
    page = json.dumps(page_data).replace("<", "\\u003c")
    html = render_template(
        "lpcall/callpage.html",
        lang=state.settings.locale,
        title=state.texts["callpage.title"],
        loading=state.texts["call.loading"],
        page_json=Markup(page),
        css=asset_url("lpcall/callpage.css"),
        script=asset_url("lpcall/callpage.js"),
    )
    resp = _security_headers(Response(html, mimetype="text/html"), state)
    # SameSite=None (needs Secure) so that a host app's cross-site iframe keeps it; http: Lax
    resp.set_cookie(CLAIM_COOKIE, claim, max_age=int(USED_TTL), path=request.path, httponly=True,
                    secure=request.is_secure, samesite="None" if request.is_secure else "Lax")
    return resp


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/api/call/handoff", view_func=call_handoff, methods=["POST"])
    bp.add_url_rule("/api/call/handoff/<jti>", view_func=call_handoff_status, methods=["GET"])
    bp.add_url_rule("/api/call/handoff/<jti>", view_func=call_handoff_cancel, methods=["DELETE"])
    bp.add_url_rule("/api/agent/call-link", view_func=agent_call_link, methods=["POST"])
    bp.add_url_rule("/call/<path:link>", view_func=call_page, methods=["GET"])


