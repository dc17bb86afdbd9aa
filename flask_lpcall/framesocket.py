"""The JSON request/response envelope shared by the consumer and agent sockets (PROTOCOL §3, §4).

``FrameSocket`` wraps a flask-sock (simple-websocket) connection:

* every outgoing frame goes through one queue drained by one writer thread, so
  bus callbacks (which run on other threads, possibly a Redis listener) never
  block and never write to the socket concurrently (``ws.send`` is not thread-safe);
  the writer exists only while frames are pending (started by the first frame, ended
  when the queue is empty), so an idle socket holds no thread (a greenlet's stack
  under gevent: ~24 KB per connection, issue 7);
* :meth:`serve` reads frames, enforces ``LPCALL_MAX_FRAME_BYTES``, validates the
  envelope, dispatches to a handler and answers with a response or an error
  frame naming the problem — a bad frame never ends the connection.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simple_websocket import ConnectionClosed
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason

from .errors import (  # noqa: F401 - TooLargeError, NotImplementedYetError re-exported
    BadFrameError,
    LPCallError,
    NotImplementedYetError,
    StoreUnavailableError,
    TooLargeError,
)
from .errors import http_status as status_for
from .schemas import validate_envelope, validate_request_body

if TYPE_CHECKING:
    from .keepalive import Keepalive

logger = logging.getLogger(__name__)

#: Frames waiting for a slow client before the server gives up on it.
MAX_PENDING_FRAMES = 2000
#: close code for a policy violation (bad Origin, not logged in), RFC 6455.
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013

Handler = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]

def origin_allowed(origin: str | None, host: str, allowed: list[str]) -> bool:
    """PROTOCOL §1: the request's own origin or one of ``LPCALL_ALLOWED_ORIGINS``.

    Browsers always send ``Origin`` on a WebSocket handshake; a client without one
    is not a browser page (no cross-site risk) and is let through.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/")
    if origin in {o.rstrip("/") for o in allowed}:
        return True
    try:
        return urlsplit(origin).netloc.lower() == host.lower() and bool(host)
    except ValueError:
        return False


def close_and_wait(ws: Any, code: int, reason: str = "") -> None:
    """Close from the server side and wait (briefly) for the client's answer.

    Under werkzeug, flask-sock lets the server write an HTTP response after the
    handler returns; the socket must be closed by then or those bytes reach the
    client after the close frame and confuse it.
    """
    try:
        ws.close(code, reason)
    except ConnectionClosed:
        pass
    thread = getattr(ws, "thread", None)
    if thread is not None and thread is not threading.current_thread():
        thread.join(1.0)
    shutdown(ws)


def no_delay(ws: Any) -> None:
    """Small frames go out at once: without TCP_NODELAY, two frames in a row on one socket wait for the
    client's delayed ACK (Nagle), up to 40 ms each."""
    sock = getattr(ws, "sock", None)
    try:
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def shutdown(ws: Any) -> None:
    """Send FIN now: werkzeug keeps the connection's file objects (and the TCP connection) open otherwise."""
    sock = getattr(ws, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def write_ping(ws: Any) -> None:
    """Send a WebSocket ping now; only from the socket's writer (simple-websocket has no ping API)."""
    ws.sock.send(ws.ws.send(Ping()))


def close_unanswered(ws: Any) -> None:
    """Close as simple-websocket does on a missed pong (1008 "Ping/Pong timeout"), then end the TCP
    connection so the reader, blocked in ``recv`` on a client that may never answer, returns."""
    try:
        if ws.connected:
            ws.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
    finally:
        shutdown(ws)


def quietly(what: str, fn: Any, *args: Any) -> None:
    """Run a cleanup step; a failure (store outage) is logged, never raised into the socket route."""
    try:
        fn(*args)
    except Exception as exc:
        logger.warning("%s failed: %s", what, exc, exc_info=True)


class FrameSocket:
    """One WebSocket with a single writer thread and the request/response envelope."""

    # thousands of idle sockets per worker: no instance dict, no queue while nothing is pending
    __slots__ = ("_lock", "_pending", "_send_lock", "_writer", "closed", "keepalive", "max_frame_bytes", "name", "ws")

    def __init__(self, ws: Any, *, max_frame_bytes: int, name: str = "socket", keepalive: Keepalive | None = None) -> None:
        self.ws = ws
        self.keepalive = keepalive  # pings this socket while it serves (keepalive.py)
        self.max_frame_bytes = max_frame_bytes
        self.name = name
        self._pending: deque[tuple[str, Any]] | None = None  # exists only while a writer runs
        self._lock = threading.Lock()  # guards _pending and _writer; never held while writing
        self._send_lock = threading.Lock()
        self.closed = threading.Event()
        self._writer: threading.Thread | None = None
        no_delay(ws)

    # -- sending -------------------------------------------------------------
    def send(self, frame: Mapping[str, Any]) -> None:
        """Queue a frame; safe from any thread, never blocks on the network."""
        if self.closed.is_set():
            return
        pending = len(self._pending or ())
        if pending > MAX_PENDING_FRAMES:
            logger.warning("%s: client too slow (%d frames pending), closing", self.name, pending)
            self.close(CLOSE_TRY_AGAIN, "too many pending frames")
            return
        self._put("frame", json.dumps(frame, separators=(",", ":")))

    def _put(self, action: str, payload: Any) -> None:
        """Queue an action and make sure a writer is draining the queue (started on demand)."""
        start = None
        with self._lock:
            if self._pending is None:
                self._pending = deque()
            self._pending.append((action, payload))
            if self._writer is None:
                start = self._writer = threading.Thread(
                    target=self._write_loop, name=f"lpcall-{self.name}-writer", daemon=True
                )
        if start is not None:
            start.start()

    def respond(self, req_id: Any, kind: str, body: Mapping[str, Any] | None = None) -> None:
        self.send({"kind": "resp", "reqId": req_id, "code": 200, "type": f"{kind}Response", "body": dict(body or {})})

    def error(self, req_id: Any, exc: LPCallError) -> None:
        self.send(
            {
                "kind": "resp",
                "reqId": req_id,
                "code": status_for(exc),
                "type": "GenericResponse",
                "body": {"error": exc.to_dict()},
            }
        )

    def notify(self, kind: str, body: Mapping[str, Any]) -> None:
        self.send({"kind": "notification", "type": kind, "body": dict(body)})

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close after the frames already queued have been sent."""
        if not self.closed.is_set():
            self._put("close", (code, reason))

    # -- keepalive.Watched -------------------------------------------------------
    def send_ping(self) -> None:
        if not self.closed.is_set():
            self._put("ping", None)

    def ping_timeout(self) -> None:
        if not self.closed.is_set():
            self._put("ping-timeout", None)

    def tick(self) -> None:
        """Nothing per interval: these sockets' presence follows the client's own pings."""

    def _write_loop(self) -> None:
        """Drain the queue, then end: the next frame starts a new writer."""
        try:
            self._drain()
        finally:
            with self._lock:
                if self._writer is threading.current_thread():
                    self._writer = None
                if self.closed.is_set() or (self._writer is None and not self._pending):
                    self._pending = None

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._writer = None
                    self._pending = None
                    return
                action, payload = self._pending.popleft()
            if action == "stop":
                return
            try:
                with self._send_lock:
                    if action == "frame":
                        self.ws.send(payload)
                    elif action == "ping":
                        write_ping(self.ws)
                    elif action == "ping-timeout":
                        self.closed.set()
                        close_unanswered(self.ws)
                        return
                    else:
                        self.closed.set()
                        close_and_wait(self.ws, *payload)
                        return
            except (ConnectionClosed, OSError) as exc:
                logger.debug("%s: send failed (%s)", self.name, exc)
                self.closed.set()
                return
            except Exception:  # pragma: no cover - a bug must not leave the thread dead silently
                logger.exception("%s: writer failed", self.name)
                self.closed.set()
                return

    def finish(self, timeout: float = 2.0) -> None:
        """Let queued frames go out, then stop the writer."""
        with self._lock:
            writer = self._writer
            if writer is not None and self._pending is not None:
                self._pending.append(("stop", None))
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
        self.closed.set()
        if not getattr(self.ws, "connected", False):
            shutdown(self.ws)

    # -- receiving -----------------------------------------------------------
    def serve(
        self,
        handlers: Mapping[str, Handler],
        registry: Mapping[str, Any],
        *,
        on_frame: Callable[[], None] | None = None,
    ) -> None:
        """Read and dispatch frames until the client goes away."""
        if self.keepalive is not None:
            self.keepalive.watch(self)
        try:
            self._serve(handlers, registry, on_frame)
        finally:
            if self.keepalive is not None:
                self.keepalive.unwatch(self)

    def _serve(self, handlers: Mapping[str, Handler], registry: Mapping[str, Any],
               on_frame: Callable[[], None] | None) -> None:
        while not self.closed.is_set():
            try:
                raw = self.ws.receive(timeout=5)
            except ConnectionClosed:
                return
            if raw is None:
                if not getattr(self.ws, "connected", True):
                    return
                continue
            if on_frame is not None:
                try:
                    on_frame()
                except Exception as exc:  # e.g. the store is down: the frame still gets its answer
                    logger.warning("%s: per-frame hook failed: %s", self.name, exc, exc_info=True)
            self.handle_raw(raw, handlers, registry)

    def handle_raw(self, raw: Any, handlers: Mapping[str, Handler], registry: Mapping[str, Any]) -> None:
        req_id: Any = None
        try:
            if isinstance(raw, (bytes, bytearray)):
                raise BadFrameError("(frame): binary frames are not accepted; send JSON text", field="(frame)")
            size = len(raw.encode("utf-8"))
            if size > self.max_frame_bytes:
                raise TooLargeError(
                    f"(frame): {size} bytes is over the limit of {self.max_frame_bytes} (LPCALL_MAX_FRAME_BYTES)",
                    field="(frame)",
                )
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise BadFrameError(f"(frame): not valid JSON ({exc.msg} at {exc.pos})", field="(frame)") from None
            except RecursionError:
                raise BadFrameError("(frame): JSON nested too deeply", field="(frame)") from None
            if isinstance(data, dict):
                candidate = data.get("id")
                if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and len(str(candidate)) <= 100:
                    req_id = candidate
            envelope = validate_envelope(data)
            body = validate_request_body(registry, envelope["type"], envelope["body"])  # type: ignore[arg-type]
            handler = handlers[envelope["type"]]
            result = handler(envelope, body)
            if result is not None:
                kind = "pong" if envelope["type"] == "ping" else envelope["type"]
                if kind == "pong":
                    self.send({"kind": "resp", "reqId": req_id, "code": 200, "type": "pong", "body": {}})
                else:
                    self.respond(req_id, kind, result)
        except LPCallError as exc:
            self.error(req_id, exc)
        except Exception:
            logger.exception("%s: handler failed", self.name)
            self.error(req_id, LPCallError("internal error; the request was not processed", code="INTERNAL"))
