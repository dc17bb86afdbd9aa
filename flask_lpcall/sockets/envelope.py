"""The JSON request/response envelope of the consumer and agent sockets (PROTOCOL §3, §4).

:class:`FrameSocket` is a :class:`~.transport.Transport` that reads request frames, decodes them by
the one decode path (``LPCALL_MAX_FRAME_BYTES``), validates the envelope, dispatches to a handler and
answers with a response or an error frame naming the problem: a bad frame never ends the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.schemas import validate_envelope, validate_request_body
from ..errors import LPCallError
from ..errors import http_status as status_for
from .adapter import ConnectionClosed, WebSocket
from .transport import FrameRefusedError, Transport, decode_json, request_id

if TYPE_CHECKING:
    from .keepalive import Keepalive

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]


class FrameSocket(Transport):
    """One consumer or agent socket: the transport plus the request/response envelope."""

    __slots__ = ("max_frame_bytes",)

    def __init__(self, ws: WebSocket, *, max_frame_bytes: int, name: str = "socket",
                 keepalive: Keepalive | None = None) -> None:
        super().__init__(ws, name=name, keepalive=keepalive)
        self.max_frame_bytes = max_frame_bytes

    # -- sending -------------------------------------------------------------
    def respond(self, req_id: Any, kind: str, body: Mapping[str, Any] | None = None) -> None:
        self.send({"kind": "resp", "reqId": req_id, "code": 200, "type": f"{kind}Response", "body": dict(body or {})})

    def error(self, req_id: Any, exc: LPCallError) -> None:
        self.send({"kind": "resp", "reqId": req_id, "code": status_for(exc), "type": "GenericResponse",
                   "body": {"error": exc.to_dict()}})

    def notify(self, kind: str, body: Mapping[str, Any]) -> None:
        self.send({"kind": "notification", "type": kind, "body": dict(body)})

    # -- receiving -----------------------------------------------------------
    def serve(self, handlers: Mapping[str, Handler], registry: Mapping[str, Any], *,
              on_frame: Callable[[], None] | None = None) -> None:
        """Read and dispatch frames until the client goes away (or the socket is closed)."""
        self.watch()
        try:
            self._serve(handlers, registry, on_frame)
        finally:
            self.unwatch()

    def _serve(self, handlers: Mapping[str, Handler], registry: Mapping[str, Any],
               on_frame: Callable[[], None] | None) -> None:
        receive = self.ws.receive
        while not self.closed.is_set():
            try:
                raw = receive()  # no timer per frame: a close of ours shuts the connection down, ending the wait
            except ConnectionClosed:
                return
            if raw is None:  # pragma: no cover - only with a timeout
                continue
            if on_frame is not None:
                try:
                    on_frame()
                except Exception as exc:  # e.g. the store is down: the frame still gets its answer
                    logger.warning("%s: per-frame hook failed: %s", self.name, exc, exc_info=True)
            self.handle_raw(raw, handlers, registry)

    def handle_raw(self, raw: str | bytes, handlers: Mapping[str, Handler], registry: Mapping[str, Any]) -> None:
        req_id: Any = None
        try:
            try:
                data = decode_json(raw, self.max_frame_bytes)
            except FrameRefusedError as exc:
                req_id = request_id(exc.document)
                raise
            req_id = request_id(data)
            envelope = validate_envelope(data)
            body = validate_request_body(registry, envelope["type"], envelope["body"])  # type: ignore[arg-type]
            result = handlers[envelope["type"]](envelope, body)
            if result is not None:
                self._answer(req_id, envelope["type"], result)
        except LPCallError as exc:
            self.error(req_id, exc)
        except Exception:  # a fault of the server, never of the frame (decode_json and the schemas vouch for it)
            logger.exception("%s: handler failed", self.name)
            self.error(req_id, LPCallError("internal error; the request was not processed", code="INTERNAL"))

    def _answer(self, req_id: Any, kind: str, result: Mapping[str, Any]) -> None:
        if kind == "ping":
            self.send({"kind": "resp", "reqId": req_id, "code": 200, "type": "pong", "body": {}})
        else:
            self.respond(req_id, kind, result)
