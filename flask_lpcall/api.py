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

from .callmanager import CallManager
from .errors import BadFrameError, LPCallError, NotAllowedError, NotFoundError, TooLargeError
from .extension import get_state, json_error
from .framesocket import decode_json
from .schemas import CoBrowseEventSchema, load_or_raise

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


def consumer_id_from_request() -> str:
    """The consumer id of the request's Bearer token, or NotAllowedError (TOKEN_INVALID/EXPIRED)."""
    state = get_state()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    data = state.signer.verify("consumer", token, state.settings["LPCALL_CONSUMER_TOKEN_TTL"])
    cid = data.get("cid")
    if not isinstance(cid, str) or not cid:
        raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
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
        cid = consumer_id_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        return jsonify(calls().accept(cid, payload))

    @bp.post("/api/call/decline")
    def call_decline() -> Any:
        cid = consumer_id_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        return jsonify(calls().decline(cid, payload))

    @bp.post("/api/call/prepare")
    def call_prepare() -> Any:
        # The invitation is shown (cobrowseOffered): the consumer's join info, so its socket can
        # listen before the Accept and receive the agent's offer ahead (PROTOCOL §5).
        cid = consumer_id_from_request()
        payload = load_or_raise(CoBrowseEventSchema(), json_body())
        session = calls().get(payload["serviceId"])
        if session is None or not session.is_open or session.consumer_id != cid:
            raise NotFoundError("no such call", field="serviceId")
        if payload["mode"] != session.mode:
            raise BadFrameError(f"mode: the invitation is for {session.mode}", field="mode")
        return jsonify(calls().join_info(session, "consumer"))

    @bp.post("/api/call/resume")
    def call_resume() -> Any:
        cid = consumer_id_from_request()
        sid = json_body().get("serviceId")
        if not isinstance(sid, str) or not sid:
            raise BadFrameError("serviceId: must be a non-empty string", field="serviceId")
        session = calls().get(sid)
        if session is None or not session.is_open or session.consumer_id != cid:
            raise NotFoundError("no such call", field="serviceId")
        return jsonify(calls().join_info(session, "consumer"))

    @bp.get("/api/call/active")
    def call_active() -> Any:
        session = calls().active_for_consumer(consumer_id_from_request())
        if session is None:
            return jsonify({"call": None})
        return jsonify({"call": {"serviceId": session.service_id, "mode": session.mode, "sessionState": session.state}})
