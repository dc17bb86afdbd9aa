"""The consumer's call HTTP API (PROTOCOL §2): prepare, accept, decline, resume, active.

Every route takes the consumer token as ``Authorization: Bearer <token>`` and the
lpCoBrowse payload of seed 003 (validated by ``schemas.CoBrowseEventSchema``).
Errors are ``{"error": {"code", "message", "field"?}}`` with a 4xx status.
The calls themselves are ``state.calls`` (:class:`~flask_lpcall.core.callmanager.CallManager`).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify

from ..core.schemas import CoBrowseEventSchema, load_or_raise
from ..errors import BadFrameError, NotFoundError
from ..state import get_state
from .jsonapi import caller_from_request, check_bound, json_body

logger = logging.getLogger(__name__)


def call_accept() -> Any:
    cid, bound = caller_from_request()
    payload = load_or_raise(CoBrowseEventSchema(), json_body())
    check_bound(bound, payload["serviceId"])
    return jsonify(get_state().calls.accept(cid, payload))


def call_decline() -> Any:
    cid, bound = caller_from_request()
    payload = load_or_raise(CoBrowseEventSchema(), json_body())
    check_bound(bound, payload["serviceId"])
    return jsonify(get_state().calls.decline(cid, payload))


def call_prepare() -> Any:
    # The invitation is shown (cobrowseOffered): the consumer's join info, so its socket can
    # listen before the Accept and receive the agent's offer ahead (PROTOCOL §5).
    cid, bound = caller_from_request()
    payload = load_or_raise(CoBrowseEventSchema(), json_body())
    check_bound(bound, payload["serviceId"])
    session = get_state().calls.get(payload["serviceId"])
    if session is None or not session.is_open or session.consumer_id != cid:
        raise NotFoundError("no such call", field="serviceId")
    if payload["mode"] != session.mode:
        raise BadFrameError(f"mode: the invitation is for {session.mode}", field="mode")
    return jsonify(get_state().calls.join_info(session, "consumer"))


def call_resume() -> Any:
    cid, bound = caller_from_request()
    sid = json_body().get("serviceId")
    if not isinstance(sid, str) or not sid:
        raise BadFrameError("serviceId: must be a non-empty string", field="serviceId")
    check_bound(bound, sid)
    session = get_state().calls.get(sid)
    if session is None or not session.is_open or session.consumer_id != cid:
        raise NotFoundError("no such call", field="serviceId")
    return jsonify(get_state().calls.join_info(session, "consumer"))


def call_active() -> Any:
    cid, bound = caller_from_request()
    session = get_state().calls.active_for_consumer(cid)
    if bound is not None and (session is None or session.service_id != bound):
        session = None  # a call page's token sees its own call only
    if session is None:
        return jsonify({"call": None})
    return jsonify({"call": {"serviceId": session.service_id, "mode": session.mode, "sessionState": session.state}})


def register(bp: Blueprint) -> None:
    # Errors (LPCallError, a store outage included) become JSON by the blueprint's handler.
    bp.add_url_rule("/api/call/accept", view_func=call_accept, methods=["POST"])
    bp.add_url_rule("/api/call/decline", view_func=call_decline, methods=["POST"])
    bp.add_url_rule("/api/call/prepare", view_func=call_prepare, methods=["POST"])
    bp.add_url_rule("/api/call/resume", view_func=call_resume, methods=["POST"])
    bp.add_url_rule("/api/call/active", view_func=call_active, methods=["GET"])


