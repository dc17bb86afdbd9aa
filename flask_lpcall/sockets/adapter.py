"""The one place that knows simple-websocket's and wsproto's internals (issue 15).

flask-sock hands a route a ``simple_websocket.Server``. flask-lpcall needs a few things its public
API lacks: a ping on demand (the keepalive thread pings every socket, keepalive.py), the pong flag,
TCP_NODELAY and a TCP shutdown on its socket, the server it runs under (Werkzeug writes an HTTP
response after a socket, route.py). :class:`WebSocket` wraps the ``Server`` and is what every socket
of the package is given; no other module touches ``ws.sock``, ``ws.ws``, ``ws.connected``,
``ws.mode``, ``ws.thread`` or ``ws.pong_received``.

``send`` and ``receive`` are the library's own bound methods (no extra call on the relay's hot path).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from simple_websocket import ConnectionClosed  # type: ignore[import-untyped]
from wsproto.events import Ping
from wsproto.frame_protocol import CloseReason

__all__ = ["ConnectionClosed", "WebSocket"]

logger = logging.getLogger(__name__)

#: Seconds a server-side close waits for the client's close reply before the TCP connection ends.
CLOSE_REPLY_WAIT = 1.0


class WebSocket:
    """A simple-websocket ``Server`` as flask-lpcall's sockets use it."""

    __slots__ = ("_server", "receive", "send")

    def __init__(self, server: Any) -> None:
        self._server = server
        #: ``send(text)``: write one text frame now (only a socket's writer calls it: not thread-safe).
        self.send: Callable[[str], None] = server.send
        #: ``receive(timeout=None)``: the next frame (``str``/``bytes``); raises ConnectionClosed at the end.
        self.receive: Callable[..., str | bytes | None] = server.receive

    @property
    def is_open(self) -> bool:
        """False once either side closed (simple-websocket's reader or our close noticed)."""
        return bool(self._server.connected)

    @property
    def on_werkzeug(self) -> bool:
        """Served by Werkzeug's development server, which writes an HTTP response after the socket."""
        return getattr(self._server, "mode", None) == "werkzeug"

    @property
    def self_pinging(self) -> bool:
        """simple-websocket pings this socket itself (a site set ``SOCK_SERVER_OPTIONS["ping_interval"]``)."""
        return bool(getattr(self._server, "ping_interval", None))

    def answered_ping(self) -> bool:
        """True when the last ping was answered (or none was sent); the flag is reset for the next ping."""
        server = self._server
        if not server.pong_received:
            return False
        server.pong_received = False
        return True

    def ping(self) -> None:
        """Send a WebSocket ping now; only from the socket's writer (simple-websocket has no ping API)."""
        server = self._server
        server.sock.send(server.ws.send(Ping()))

    def no_delay(self) -> None:
        """Small frames go out at once (issue 17): with Nagle's algorithm a second small frame written right
        after another waits for the peer's (delayed) ACK of the first, up to 40 ms or a round trip."""
        sock = getattr(self._server, "sock", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError, TypeError):
            logger.debug("TCP_NODELAY not set", exc_info=True)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send our close frame (once; a closed socket is left as it is)."""
        try:
            self._server.close(code, reason)
        except (ConnectionClosed, OSError):  # already closed, or the connection is gone
            pass

    def close_and_wait(self, code: int = 1000, reason: str = "") -> None:
        """Close from the server side, wait (briefly) for the client's answer, then end the TCP connection.

        Under Werkzeug, flask-sock lets the server write an HTTP response after the handler returns;
        the socket must be closed by then or those bytes reach the client after the close frame.
        """
        self.close(code, reason)
        self.join_reader()
        self.shutdown()

    def close_unanswered(self) -> None:
        """Close as simple-websocket does on a missed pong (1008 "Ping/Pong timeout"), then end the TCP
        connection so the reader, blocked in ``recv`` on a client that may never answer, returns."""
        try:
            if self._server.connected:
                self._server.close(CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
        finally:
            self.shutdown()

    def join_reader(self, timeout: float = CLOSE_REPLY_WAIT) -> None:
        """Wait for simple-websocket's reader thread to end (it sends the client its close reply)."""
        reader = getattr(self._server, "thread", None)
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)

    def shutdown(self) -> None:
        """Send FIN now: Werkzeug keeps the connection's file objects (and the TCP connection) open otherwise."""
        sock = getattr(self._server, "sock", None)
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
