"""The one socket transport of flask-lpcall's three sockets (consumer, agent, call; issue 15).

A :class:`Transport` owns one WebSocket (:class:`~.adapter.WebSocket`, the only code that knows
simple-websocket's internals) and does for every socket the same things the same way:

* **one writer**: every outgoing frame, ping and close goes through one outbox drained by one writer
  thread, so bus callbacks (other threads, possibly a Redis listener) never block and never write
  to the socket concurrently (``send`` is not thread-safe), and a slow client holds up only its own
  frames; more than :data:`MAX_PENDING_FRAMES` waiting closes it (1013);
* the writer of a :class:`ResidentTransport` (the call socket: busy while it lives) is started once
  and waits for frames; a :class:`Transport`'s (consumer and agent sockets: thousands of idle ones
  per worker) exists only while frames are pending, so an idle socket holds no thread (a greenlet's stack under
  gevent: ~24 KB per connection, issue 7);
* pings and missed-pong closes from the keepalive thread (keepalive.py) go through the same writer,
  behind the frames already queued; TCP_NODELAY is set on every socket;
* **one decode path** (:func:`decode_json`) for every socket frame and JSON request body: size in
  UTF-8 bytes (``TOO_LARGE``), UTF-8, nesting depth, integer range (``BAD_FRAME``);
* **one Origin rule** (:func:`origin_allowed`), applied to every socket by the one route (route.py).

The request/response envelope of the consumer and agent sockets is envelope.py, the call signaling
loop call.py; both are :class:`Transport` subclasses.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import BadFrameError, NotImplementedYetError, TooLargeError
from ..protocol import CLOSE_POLICY, CLOSE_TRY_AGAIN, MAX_DEPTH, MAX_SAFE_INTEGER
from .adapter import ConnectionClosed, WebSocket

if TYPE_CHECKING:
    from .keepalive import Keepalive

__all__ = [  # NotImplementedYetError and TooLargeError: re-exported, the sockets import them from here
    "CLOSE_POLICY", "CLOSE_TRY_AGAIN", "MAX_DEPTH", "MAX_PENDING_FRAMES", "MAX_SAFE_INTEGER", "Action", "BadFrameError",
    "FrameRefusedError", "Item", "NotImplementedYetError", "ResidentTransport", "TooLargeError", "Transport",
    "decode_json", "origin_allowed", "quietly", "request_id",
]

logger = logging.getLogger(__name__)

#: Frames waiting for a slow client before the server gives up on it.
MAX_PENDING_FRAMES = 2000


class Action:
    """An outbox item that is not a frame's text: done by the writer in its turn."""

    __slots__ = ("code", "grace", "kind", "reason", "until")

    def __init__(self, kind: str, code: int = 1000, reason: str = "", grace: float = 0.0,
                 until: threading.Event | None = None) -> None:
        self.kind = kind
        self.code = code
        self.reason = reason
        self.grace = grace  # a close waits this long for ``until`` (the client leaving by itself) first
        self.until = until


PING = Action("ping")
PING_TIMEOUT = Action("ping-timeout")
STOP = Action("stop")
#: What an outbox holds: a frame's wire text, or an action.
Item = str | Action
_encode = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps builds an encoder per call


class Transport:
    """One WebSocket with a single writer: frames, pings and the close, in the order they were queued."""

    # thousands of idle sockets per worker: no instance dict, no queue while nothing is pending
    __slots__ = ("_items", "_lock", "_writer", "closed", "keepalive", "name", "ws")

    def __init__(self, ws: WebSocket, *, name: str = "socket", keepalive: Keepalive | None = None) -> None:
        self.ws = ws
        self.keepalive = keepalive  # pings this socket while it serves (keepalive.py)
        self.name = name
        self.closed = threading.Event()  # set once the close is under way: later frames are dropped
        self._lock = threading.Lock()  # guards _items and _writer; never held while writing
        self._items: deque[Item] | None = None  # exists only while a writer runs
        self._writer: threading.Thread | None = None
        ws.no_delay()

    # -- queueing (any thread) ---------------------------------------------------------------------
    def send(self, frame: Mapping[str, Any]) -> None:
        """Queue a frame; safe from any thread, never blocks on the network."""
        self.send_text(_encode(frame))

    def send_text(self, text: str) -> None:
        """Queue a frame's wire text as it is (a relayed frame, call.py's fast path)."""
        if self.closed.is_set():
            return
        pending = self.pending()
        if pending > MAX_PENDING_FRAMES:
            logger.warning("%s: client too slow (%d frames pending), closing", self.name, pending)
            self.close(CLOSE_TRY_AGAIN, "too many pending frames")
            return
        self.put(text)

    def close(self, code: int = 1000, reason: str = "", *, grace: float = 0.0,
              until: threading.Event | None = None) -> None:
        """Close after the frames already queued have been sent; with ``grace``, only if ``until`` is not
        set within that many seconds (the client closes by itself)."""
        if not self.closed.is_set():
            self.put(Action("close", code, reason, grace, until))

    # -- keepalive.Watched ---------------------------------------------------------------------------
    def send_ping(self) -> None:
        if not self.closed.is_set():
            self.put(PING)

    def ping_timeout(self) -> None:
        if not self.closed.is_set():
            self.put(PING_TIMEOUT)

    def tick(self) -> None:
        """Nothing per interval by default (the consumer's and agent's presence follows their frames)."""

    def pending(self) -> int:
        return len(self._items or ())

    def put(self, item: Item) -> None:
        """Queue an item and make sure a writer will do it (one is started if none runs)."""
        with self._lock:
            if self._items is None:
                self._items = deque()
            self._items.append(item)
            if self._writer is None:
                # started under the lock: finish() may join a writer it sees, never one not yet started
                self._start_writer()

    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name=f"lpcall-{self.name}-writer", daemon=True)
        self._writer.start()

    # -- the writer ----------------------------------------------------------------------------------
    def _next(self) -> Item | None:
        """The next item; None when the outbox is empty (this writer ends, the next frame starts one)."""
        with self._lock:
            if not self._items:
                self._writer = None
                self._items = None
                return None
            return self._items.popleft()

    def _write_loop(self) -> None:
        try:
            while True:
                item = self._next()
                if item is None:
                    return
                try:
                    if type(item) is str:
                        self.ws.send(item)
                    elif not self._act(item):  # type: ignore[arg-type]
                        return
                except (ConnectionClosed, OSError) as exc:  # the socket is gone; the reader notices
                    logger.debug("%s: send failed (%s)", self.name, exc)
                    self.closed.set()
                    return
                except Exception:  # pragma: no cover - a bug must not leave the thread dead silently
                    logger.exception("%s: writer failed", self.name)
                    self.closed.set()
                    return
        finally:
            self._retire()

    def _act(self, action: Action) -> bool:
        """Do one action; False when the writer ends."""
        kind = action.kind
        if kind == "ping":
            self.ws.ping()
            return True
        if kind == "stop":
            return False
        self.closed.set()
        if kind == "ping-timeout":
            self.ws.close_unanswered()
        elif action.until is None or not action.until.wait(action.grace):
            self.ws.close_and_wait(action.code, action.reason)
        return False

    def _retire(self) -> None:
        with self._lock:
            if self._writer is threading.current_thread():
                self._writer = None
            if self.closed.is_set() or (self._writer is None and not self._items):
                self._items = None

    # -- the end -------------------------------------------------------------------------------------
    def watch(self) -> None:
        """Pinged (and ticked) by the worker's keepalive thread from now on."""
        if self.keepalive is not None:
            self.keepalive.watch(self)

    def unwatch(self) -> None:
        if self.keepalive is not None:
            self.keepalive.unwatch(self)

    def finish(self, timeout: float = 2.0) -> None:
        """Let the frames already queued go out, then end the writer; the handler is done with the socket."""
        writer = self._stop_writer()
        if writer is not None and writer is not threading.current_thread():
            writer.join(timeout)
        self.closed.set()
        if not self.ws.is_open:
            # the client closed: simple-websocket's reader marks the socket closed *before* it sends
            # the close reply; shutting down now could swallow that reply (the client sees 1006)
            self.ws.join_reader()
            self.ws.shutdown()

    def _stop_writer(self) -> threading.Thread | None:
        with self._lock:
            writer = self._writer
            if writer is not None and self._items is not None:
                self._items.append(STOP)
        return writer


class ResidentTransport(Transport):
    """A transport whose one writer is started once (:meth:`start`) and waits for frames while the socket
    lives: the call socket, busy while it lives, pays no thread start per burst and no lock per frame."""

    __slots__ = ("_queue", "_ready")

    def __init__(self, ws: WebSocket, *, name: str = "socket", keepalive: Keepalive | None = None) -> None:
        super().__init__(ws, name=name, keepalive=keepalive)
        self._queue: deque[Item] = deque()
        self._ready = threading.Event()  # under gevent a third of queue.Queue's cost (no condition, no locks)

    def pending(self) -> int:
        return len(self._queue)

    def send_text(self, text: str) -> None:
        """:meth:`Transport.send_text` with the common case (open, not backed up) inline: the relay's hot path."""
        queue = self._queue
        if len(queue) <= MAX_PENDING_FRAMES and not self.closed.is_set():
            queue.append(text)
            self._ready.set()
        else:
            super().send_text(text)

    def put(self, item: Item) -> None:
        """Queue an item (no lock: the one writer waits on the event)."""
        self._queue.append(item)
        self._ready.set()

    def send_first(self, frame: Mapping[str, Any]) -> None:
        """Queue a frame ahead of every other; only before :meth:`start` (the writer takes from the front)."""
        self._queue.appendleft(_encode(frame))
        self._ready.set()

    def start(self) -> None:
        """Start the writer; what was queued before goes out first."""
        with self._lock:
            if self._writer is None:
                self._start_writer()

    def _next(self) -> Item | None:
        queue = self._queue
        while not queue:
            self._ready.wait()
            self._ready.clear()  # cleared before the deque is looked at again: no wake-up is lost
        return queue.popleft()

    def _retire(self) -> None:
        """A resident writer runs once: nothing to hand over."""

    def _stop_writer(self) -> threading.Thread | None:
        self.put(STOP)
        self.start()  # frames queued before a writer ever ran (an error before `joined`) go out too
        return self._writer


def quietly(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run a cleanup step; a failure (store outage) is logged, never raised into the socket route."""
    try:
        fn(*args)
    except Exception as exc:
        logger.warning("%s failed: %s", what, exc, exc_info=True)


# -- the one Origin rule of every socket (PROTOCOL §1) --------------------------------------
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


# -- the one decode path of every socket frame and JSON request body ------------------------


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
            items: Iterable[tuple[Any, Any]] = value.items() if kind is dict else enumerate(value)
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
