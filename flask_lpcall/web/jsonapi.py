"""What every JSON endpoint shares: the one body reader, JSON errors (and the blueprint's error
handlers), the fallback for unknown endpoints and methods, and who is calling (a consumer token, or a
standalone call page's token bound to its one call)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ..errors import BadFrameError, LPCallError, NotAllowedError, NotFoundError, TooLargeError, http_status
from ..sockets.transport import decode_json
from ..state import LPCallState, get_state

logger = logging.getLogger(__name__)

#: the purpose of the call page's own token (bound to its call; :func:`make_page_token`)
PAGE_PURPOSE = "callpage"
#: the longest a call page's token lives (it dies with its call before that): the link's session
PAGE_TOKEN_TTL = 24 * 3600.0


# -- errors ------------------------------------------------------------------------------------
def json_error(exc: LPCallError, status: int | None = None) -> tuple[Response, int]:
    """``{"error": {"code", "message", "field"?}}`` with the status that fits ``exc``."""
    return jsonify({"error": exc.to_dict()}), status if status is not None else http_status(exc)


#: HTTP errors of the JSON APIs (werkzeug's) -> the registry's code (errors.ERROR_CODES).
_HTTP_CODES = {400: "BAD_FRAME", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "TOO_LARGE"}


def _is_json_api() -> bool:
    """The request is for one of the blueprint's JSON endpoints (``<prefix>/api/…``)."""
    state = current_app.extensions.get("lpcall")
    prefix = state.url_prefix.rstrip("/") if state is not None else ""
    return request.path.startswith(f"{prefix}/api/")


def http_error(exc: HTTPException) -> Any:
    """A werkzeug HTTP error on a JSON endpoint is a JSON error; pages keep Flask's own answer."""
    if not _is_json_api():
        return exc
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "BAD_FRAME")
    field = "(body)" if status in (400, 413) else None
    err = LPCallError(exc.description or exc.name, code=code, field=field)
    resp, _ = json_error(err, status)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        resp.headers["Allow"] = ", ".join(exc.valid_methods)
    return resp, status


def server_fault(exc: Exception) -> Any:
    """Anything else escaping a route is a fault of the server: logged, then a JSON 500 on a JSON
    endpoint (``INTERNAL``); elsewhere it goes on to Flask's own handling, as if not caught. Client input never gets here: every
    body is read by ``jsonapi.json_body`` and validated by a schema (issue 14)."""
    if isinstance(exc, HTTPException):
        return http_error(exc)
    if not _is_json_api():
        raise exc
    logger.exception("flask-lpcall: %s %s failed", request.method, request.path)
    return json_error(LPCallError("internal error; the request was not processed", code="INTERNAL"), 500)


def register_error_handlers(bp: Blueprint) -> None:
    """Any LPCallError escaping a route (a store outage included) is a JSON error, never a bare 500."""
    bp.register_error_handler(LPCallError, json_error)
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(Exception, server_fault)


# -- the body --------------------------------------------------------------------------------------
def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, read by the sockets' decode path (``framesocket.decode_json``): at most
    ``LPCALL_MAX_FRAME_BYTES`` bytes of UTF-8, nested at most 32 deep, integers within ±(2^53-1). Any
    other body is a ``BadFrameError``/``TooLargeError`` naming ``(body)`` or the bad field, answered
    as JSON 4xx; ``optional``: an empty body is ``{}``. The Content-Type is not looked at."""
    limit = int(get_state().settings.max_frame_bytes)
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


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/api/<path:rest>", methods=_ALL_METHODS, view_func=api_fallback)


# -- who is calling ----------------------------------------------------------------------------------
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
        data = state.signer.verify("consumer", token, state.settings.consumer_token_ttl)
    except NotAllowedError as exc:
        if exc.code != "TOKEN_INVALID" or not token:
            raise
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


def bearer_consumer(state: LPCallState) -> str | None:
    """The consumerId of a valid ``Authorization: Bearer`` consumer token, else None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        payload = state.signer.verify("consumer", header[7:].strip(), state.settings.consumer_token_ttl)
    except NotAllowedError:
        return None
    cid = payload.get("cid")
    return cid if isinstance(cid, str) else None


def make_page_token(state: LPCallState, call: Any) -> str:
    """The call page's identity: bound to its one call (``{"cid", "sid"}``, purpose ``callpage``).

    Unlike the visitor's consumer token (``LPCALL_CONSUMER_TOKEN_TTL``, every conversation and call of
    the visitor) it works only on the call API for that call (``api.check_bound``), never on the
    messaging socket, the conversation, the network check or ``/api/consumer/session``, and only while
    the call is open and for at most :data:`PAGE_TOKEN_TTL` (a reload of the page gets a fresh one)."""
    return str(state.signer.sign(PAGE_PURPOSE, {"cid": call.consumer_id, "sid": call.service_id}))


def verify_page_token(state: LPCallState, token: str) -> tuple[str, str]:
    """``(consumerId, serviceId)`` of a call page's token, or NotAllowedError: TOKEN_INVALID, or
    TOKEN_EXPIRED when it is older than :data:`PAGE_TOKEN_TTL` or its call is over."""
    data = state.signer.verify(PAGE_PURPOSE, token, PAGE_TOKEN_TTL)
    cid, sid = data.get("cid"), data.get("sid")
    if not isinstance(cid, str) or not cid or not isinstance(sid, str) or not sid:
        raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
    call = state.calls.get(sid)
    if call is None or not call.is_open or call.consumer_id != cid:
        raise NotAllowedError("token: the call of this page is over", code="TOKEN_EXPIRED", field="token")
    return cid, sid
