"""The consumer's call HTTP API (PROTOCOL §2): prepare, accept, decline, resume, active.

Every route takes the consumer token as ``Authorization: Bearer <token>`` and the
lpCoBrowse payload of seed 003 (validated by ``schemas.CoBrowseEventSchema``).
Errors are ``{"error": {"code", "message", "field"?}}`` with a 4xx status.
``init_state`` puts the :class:`~flask_lpcall.callmanager.CallManager` into
``state.services["calls"]``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from ..core.callmanager import CallManager
from ..core.schemas import CoBrowseEventSchema, load_or_raise
from ..errors import BadFrameError, LPCallError, NotAllowedError, NotFoundError, TooLargeError
from ..extension import get_state, json_error
from ..sockets.transport import decode_json

logger = logging.getLogger(__name__)

def init_state(app: Flask, state: Any) -> None:
    if "calls" in state.services:
        return
    state.services["calls"] = CallManager(
        state.store,
        state.settings,
        state.texts,
        state.signer,
        conversations=lambda: state.services.get("conversations"),
        sender=app,
    )


def calls() -> CallManager:
    return get_state().services["calls"]  # type: ignore[no-any-return]


#: ``service_id`` of :func:`consumer_id_from_request` when the route is about no one call
ANY_CALL = object()


def caller_from_request() -> tuple[str, str | None]:
    """``(consumerId, bound serviceId)`` of the request's Bearer token, or NotAllowedError
    (TOKEN_INVALID/EXPIRED). A consumer token (purpose ``consumer``) is bound to no call (None); a
    standalone call page's token (purpose ``callpage``, :func:`~flask_lpcall.callpage.verify_page_token`)
    is bound to its one call, and is valid only while that call is open."""
    state = get_state()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    try:
        data = state.signer.verify("consumer", token, state.settings["LPCALL_CONSUMER_TOKEN_TTL"])
    except NotAllowedError as exc:
        if exc.code != "TOKEN_INVALID" or not token:
            raise
        from .callpage import verify_page_token

        return verify_page_token(state, token)  # not a consumer token: a call page's, or nothing
    cid = data.get("cid")
    if not isinstance(cid, str) or not cid:
        raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
    return cid, None


def check_bound(bound: str | None, service_id: Any) -> None:
    """A call page's token works for its own call only (``NOT_ALLOWED``, field ``token``)."""
    if bound is not None and service_id != bound:
        raise NotAllowedError("token: a call page's token is for its own call only", field="token")


def consumer_id_from_request(service_id: Any = ANY_CALL) -> str:
    """The consumer id of the request's Bearer token, or NotAllowedError (TOKEN_INVALID/EXPIRED;
    NOT_ALLOWED when a call page's token is used for another call than ``service_id``, or for a
    route that is about no one call)."""
    cid, bound = caller_from_request()
    check_bound(bound, None if service_id is ANY_CALL else service_id)
    return cid


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, read by the sockets' decode path (``framesocket.decode_json``): at most
    ``LPCALL_MAX_FRAME_BYTES`` bytes of UTF-8, nested at most 32 deep, integers within ±(2^53-1). Any
    other body is a ``BadFrameError``/``TooLargeError`` naming ``(body)`` or the bad field, answered
    as JSON 4xx; ``optional``: an empty body is ``{}``. The Content-Type is not looked at."""
    limit = int(get_state().settings["LPCALL_MAX_FRAME_BYTES"])
    length = request.content_length
    if length is not None and length > limit:
        raise TooLargeError(f"(body): {length} bytes is over the limit of {limit} (LPCALL_MAX_FRAME_BYTES)",
                            field="(body)")
    raw = request.stream.read(limit + 1)
    if optional and not raw.strip():
        return {}
    data = decode_json(raw, limit, root="(body)")
    if not isinstance(data, dict):
        raise BadFrameError("(body): must be a JSON object", field="(body)")
    return data


_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _methods_of(path: str) -> list[str]:
    """The methods a real endpoint at ``path`` takes (the fallback below left out)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _ALL_METHODS:
        try:
            endpoint, _ = adapter.match(path, method)
        except HTTPException:
            continue
        if endpoint != "lpcall.api_fallback":
            allowed.append(method)
    return allowed


def register(bp: Blueprint) -> None:
    @bp.route("/api/<path:rest>", methods=_ALL_METHODS)
    def api_fallback(rest: str) -> Any:
        """A JSON endpoint called with a method it does not take, or an unknown one: a JSON error, not
        Flask's HTML page (werkzeug tries this rule after the endpoints, whose rules are more specific)."""
        allowed = _methods_of(request.path)
        if allowed:
            resp, status = json_error(LPCallError(f"{request.method} is not allowed here; use {', '.join(allowed)}",
                                                  code="METHOD_NOT_ALLOWED"))
            resp.headers["Allow"] = ", ".join(allowed)
            return resp, status
        return json_error(NotFoundError(f"no JSON endpoint {request.path}"))

    # Errors (LPCallError, a store outage included) become JSON by the blueprint's handler.
    @bp.post("/api/call/accept")
    def call_accept() -> Any:
        cid, bound = caller_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        check_bound(bound, payload["serviceId"])
        return jsonify(calls().accept(cid, payload))

    @bp.post("/api/call/decline")
    def call_decline() -> Any:
        cid, bound = caller_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        check_bound(bound, payload["serviceId"])
        return jsonify(calls().decline(cid, payload))

    @bp.post("/api/call/prepare")
    def call_prepare() -> Any:
        # The invitation is shown (cobrowseOffered): the consumer's join info, so its socket can
        # listen before the Accept and receive the agent's offer ahead (PROTOCOL §5).
        cid, bound = caller_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        check_bound(bound, payload["serviceId"])
        session = calls().get(payload["serviceId"])
        if session is None or not session.is_open or session.consumer_id != cid:
            raise NotFoundError("no such call", field="serviceId")
        if payload["mode"] != session.mode:
            raise BadFrameError(f"mode: the invitation is for {session.mode}", field="mode")
        return jsonify(calls().join_info(session, "consumer"))

    @bp.post("/api/call/resume")
    def call_resume() -> Any:
        cid, bound = caller_from_request()
        sid = json_body().get("serviceId")
        if not isinstance(sid, str) or not sid:
            raise BadFrameError("serviceId: must be a non-empty string", field="serviceId")
        check_bound(bound, sid)
        session = calls().get(sid)
        if session is None or not session.is_open or session.consumer_id != cid:
            raise NotFoundError("no such call", field="serviceId")
        return jsonify(calls().join_info(session, "consumer"))

    @bp.get("/api/call/active")
    def call_active() -> Any:
        cid, bound = caller_from_request()
        session = calls().active_for_consumer(cid)
        if bound is not None and (session is None or session.service_id != bound):
            session = None  # a call page's token sees its own call only
        if session is None:
            return jsonify({"call": None})
        return jsonify({"call": {"serviceId": session.service_id, "mode": session.mode, "sessionState": session.state}})
