"""The one ``Sock`` of the package: every WebSocket route (consumer, agent, call) is registered here.

Each route gets, before its handler runs and whatever the handler does:

* the client's ``Sec-WebSocket-Extensions`` offer removed (:func:`decline_compression`);
* the one Origin check (PROTOCOL §1, :func:`~.transport.origin_allowed`): a foreign page's socket is
  closed 1008 "origin not allowed" before any frame;
* the connection wrapped in the :class:`~.adapter.WebSocket` adapter the handler is given;
* a clean end on Werkzeug's development server too. flask-sock returns an HTTP response when a socket
  handler ends; under Werkzeug's server that response is really written, onto the TCP connection that
  just carried the WebSocket. Bytes such as ``HTTP/1.1 200 OK`` arriving after the close frame are
  what Chromium reports as "Invalid frame header" on every hang-up. The route ends each WebSocket
  itself when its handler returns: the close handshake (answered, or a close frame of ours and a short
  wait for the client's), then the TCP connection is shut down, so Werkzeug's write finds a closed
  connection (which it treats as a dropped client) and nothing follows the close frame. Gunicorn,
  eventlet and gevent write nothing after a socket: they are left as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import flask_sock  # type: ignore[import-untyped]
from flask import Blueprint, request

from ..state import get_state
from .adapter import ConnectionClosed, WebSocket
from .transport import CLOSE_POLICY, origin_allowed

logger = logging.getLogger(__name__)

SocketHandler = Callable[[WebSocket], None]


def request_origin_allowed(allowed: list[str]) -> bool:
    """:func:`~.transport.origin_allowed` for the current Flask request."""
    return origin_allowed(request.headers.get("Origin"), request.host, allowed, request.scheme)


def decline_compression() -> None:
    """A blueprint ``before_request`` hook: remove the client's ``Sec-WebSocket-Extensions`` offer.

    simple-websocket accepts permessage-deflate with a 32 KiB window both ways whenever a client
    offers it (every browser does): its zlib streams cost ~100 KiB per idle socket (issue 14,
    finding 11). Without the offer in the handshake the server answers with no extension, which
    every client must accept (RFC 6455 §9.1), and a socket costs what it costs uncompressed.
    """
    if request.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def _serve(f: SocketHandler, ws: WebSocket, path: str) -> None:
    try:
        if not request_origin_allowed(get_state().settings.allowed_origins):
            logger.warning("socket %s from foreign origin %r refused", path, request.headers.get("Origin"))
            ws.close_and_wait(CLOSE_POLICY, "origin not allowed")  # no stray HTTP bytes after the close frame
            return
        f(ws)
    except ConnectionClosed:
        pass
    finally:
        if ws.on_werkzeug:  # after the handler: complete the close handshake, end the connection
            ws.close_and_wait(1000)


class Sock(flask_sock.Sock):  # type: ignore[misc]
    """flask_sock.Sock whose routes check the Origin, hand the handler the adapter and leave nothing on
    the connection after the WebSocket."""

    def route(self, path: str, bp: Blueprint) -> Callable[[SocketHandler], SocketHandler]:
        register = super().route(path, bp=bp)
        if decline_compression not in bp.before_request_funcs.get(None, []):
            bp.before_request(decline_compression)  # once per blueprint, for all of its sockets

        def decorator(f: SocketHandler) -> SocketHandler:
            @wraps(f)
            def handler(server: Any) -> None:
                _serve(f, WebSocket(server), path)

            register(handler)
            return f

        return decorator


#: The one Sock of the package: /ws/consumer, /ws/agent and /ws/call are its routes (on the blueprint given).
sock = Sock()
