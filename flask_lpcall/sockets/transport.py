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
import math
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simple_websocket import ConnectionClosed
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason

from ..core.schemas import validate_envelope, validate_request_body
from ..errors import (  # noqa: F401 - TooLargeError, NotImplementedYetError re-exported
    BadFrameError,
    LPCallError,
    NotImplementedYetError,
    StoreUnavailableError,
    TooLargeError,
)
from ..errors import http_status as status_for

if TYPE_CHECKING:
    from .keepalive import Keepalive

logger = logging.getLogger(__name__)

#: Frames waiting for a slow client before the server gives up on it.
MAX_PENDING_FRAMES = 2000
#: close code for a policy violation (bad Origin, not logged in), RFC 6455.
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013

Handler = Callable[[dict[str, Any], dict[str, Any]], "dict[str, Any] | None"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_key(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin (the default port filled in), None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port out of range or not a number
        return None
    if port is None or not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, host, port


def origin_allowed(origin: str | None, host: str, allowed: list[str], scheme: str = "http") -> bool:
    """PROTOCOL §1: the request's own origin or one of ``LPCALL_ALLOWED_ORIGINS``, compared as
    scheme, host and port (an ``https://`` page may not open the sockets of an ``http://`` site).

    Browsers always send ``Origin`` on a WebSocket handshake; a client without one
    is not a browser page (no cross-site risk) and is let through.
    """
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:  # "null" (sandboxed frames, file:), garbage
        return False
    if any(key == _origin_key(o) for o in allowed):
        return True
    return bool(host) and key == _origin_key(f"{scheme}://{host}")


def request_origin_allowed(allowed: list[str]) -> bool:
    """:func:`origin_allowed` for the current Flask request: the one Origin check of all three sockets."""
    from flask import request

    return origin_allowed(request.headers.get("Origin"), request.host, allowed, request.scheme)


def decline_compression() -> None:
    """A blueprint ``before_request`` hook: remove the client's ``Sec-WebSocket-Extensions`` offer.

    simple-websocket accepts permessage-deflate with a 32 KiB window both ways whenever a client
    offers it (every browser does): its zlib streams cost ~100 KiB per idle socket (issue 14,
    finding 11). Without the offer in the handshake the server answers with no extension, which
    every client must accept (RFC 6455 §9.1), and a socket costs what it costs uncompressed.
    """
    from flask import request

    if request.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


# -- the one decode path of every socket frame and JSON request body ------------------------
#: Deepest nesting of objects and arrays accepted (the deepest real frame is 4 levels).
MAX_DEPTH = 32
#: Largest integer accepted: JavaScript's Number.MAX_SAFE_INTEGER (a larger one is not exact in a browser).
MAX_SAFE_INTEGER = 2**53 - 1


class _Refused:
    """Put in place of a JSON number the decoder refuses, so the check can name its field."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _parse_int(text: str) -> int | _Refused:
    if len(text) <= 17:
        value = int(text)
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
    return _Refused(f"an integer beyond \u00b1{MAX_SAFE_INTEGER} is not accepted")


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused("a number out of the range of a double is not accepted")


def _parse_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


class FrameRefusedError(BadFrameError):
    """A frame that parsed but breaks a rule; ``document`` is what it parsed to (for its request id)."""

    def __init__(self, message: str, *, field: str, document: Any) -> None:
        super().__init__(message, field=field)
        self.document = document


def decode_json(raw: str | bytes, max_bytes: int, root: str = "(frame)") -> Any:
    """Decode one socket frame (``root="(frame)"``) or request body (``"(body)"``) by the rules every
    input obeys: at most ``max_bytes`` UTF-8 bytes, valid UTF-8 (no lone surrogate, escaped or not),
    JSON nested at most :data:`MAX_DEPTH` deep, integers within ±(2^53-1), finite numbers.

    Raises :class:`TooLargeError` (``TOO_LARGE``) or :class:`BadFrameError` (``BAD_FRAME``) naming the
    field (``root`` for the whole frame); never anything else.
    """
    if isinstance(raw, (bytes, bytearray)):
        if root == "(frame)":
            raise BadFrameError("(frame): binary frames are not accepted; send JSON text", field=root)
        _check_size(len(raw), max_bytes, root)
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadFrameError(f"{root}: not valid UTF-8 (at byte {exc.start})", field=root) from None
    else:
        text = raw
        _check_size(len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass")), max_bytes, root)
    try:
        data = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise BadFrameError(f"{root}: not valid JSON ({exc.msg} at {exc.pos})", field=root) from None
    except RecursionError:
        raise BadFrameError(f"{root}: JSON nested deeper than {MAX_DEPTH} levels", field=root) from None
    except ValueError as exc:  # pragma: no cover - the parse hooks catch what json would raise here
        raise BadFrameError(f"{root}: not valid JSON ({exc})", field=root) from None
    problem = _first_problem(data)
    if problem is not None:
        path, why = problem
        field = path or root
        raise FrameRefusedError(f"{field}: {why}", field=field, document=data)
    return data


def _check_size(size: int, max_bytes: int, root: str) -> None:
    if size > max_bytes:
        raise TooLargeError(f"{root}: {size} bytes is over the limit of {max_bytes} (LPCALL_MAX_FRAME_BYTES)",
                            field=root)


def _bad_text(text: str) -> bool:
    """A lone surrogate (JSON allows ``\\udfff``; UTF-8, the browser's TextEncoder and the store do not)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _first_problem(data: Any) -> tuple[str, str] | None:
    """(dotted path, why) of the first value that breaks a rule, depth first; None if all is well."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        kind = type(value)
        if kind is str:
            if _bad_text(value):
                return path, "not valid UTF-8 text (a lone surrogate)"
        elif kind is dict or kind is list:
            if depth > MAX_DEPTH:
                return path, f"JSON nested deeper than {MAX_DEPTH} levels"
            items = value.items() if kind is dict else enumerate(value)
            for key, item in items:
                sub = f"{path}.{key}" if path else str(key)
                if kind is dict and _bad_text(key):
                    return path or "", "a key is not valid UTF-8 text (a lone surrogate)"
                stack.append((item, sub, depth + 1))
        elif kind is _Refused:
            return path, value.why
    return None


def request_id(data: Any) -> Any:
    """The ``id`` of a request frame to answer with (None when it has none usable)."""
    if isinstance(data, dict):
        candidate = data.get("id")
        if isinstance(candidate, str):
            return candidate if len(candidate) <= 100 and not _bad_text(candidate) else None
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return candidate
    return None


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
        with self._lock:
            if self._pending is None:
                self._pending = deque()
            self._pending.append((action, payload))
            if self._writer is None:
                # started under the lock: finish() may join a writer it sees, never one not yet started
                self._writer = threading.Thread(target=self._write_loop, name=f"lpcall-{self.name}-writer", daemon=True)
                self._writer.start()

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
            # the client closed: simple-websocket's reader marks the socket closed *before* it sends
            # the close reply; shutting down now could swallow that reply (the client sees 1006)
            reader = getattr(self.ws, "thread", None)
            if reader is not None and reader is not threading.current_thread():
                reader.join(1.0)
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
            try:
                data = decode_json(raw, self.max_frame_bytes)
            except FrameRefusedError as exc:
                req_id = request_id(exc.document)
                raise
            req_id = request_id(data)
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
        except Exception:  # a fault of the server, never of the frame (decode_json and the schemas vouch for it)
            logger.exception("%s: handler failed", self.name)
            self.error(req_id, LPCallError("internal error; the request was not processed", code="INTERNAL"))
