"""WebSocket routes that end cleanly on Werkzeug's development server too (flask-sock underneath).

flask-sock returns an HTTP response when a socket handler ends; under Werkzeug's server that
response is really written, onto the TCP connection that just carried the WebSocket. Bytes
such as ``HTTP/1.1 200 OK`` arriving after the close frame are what Chromium reports as
"Invalid frame header" on every hang-up. :class:`Sock` ends each WebSocket itself when its
handler returns: the close handshake (answered, or a close frame of ours and a short wait for
the client's), then the TCP connection is shut down, so Werkzeug's write finds a closed
connection (which it treats as a dropped client) and nothing follows the close frame.
Gunicorn, eventlet and gevent write nothing after a socket: they are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import flask_sock

from .transport import close_and_wait


def end_socket(ws: Any) -> None:
    """After the handler: complete the close handshake and shut the connection down (Werkzeug only)."""
    if getattr(ws, "mode", None) != "werkzeug":
        return
    close_and_wait(ws, 1000)


class Sock(flask_sock.Sock):  # type: ignore[misc]
    """flask_sock.Sock whose routes leave nothing on the connection after the WebSocket."""

    def route(self, path: str, bp: Any = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().route(path, bp=bp, **kwargs)

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(f)
            def handler(ws: Any, *args: Any, **kw: Any) -> None:
                try:
                    f(ws, *args, **kw)
                finally:
                    end_socket(ws)

            register(handler)
            return f

        return decorator


#: the one ``Sock`` of the blueprint: /ws/consumer, /ws/agent and /ws/call are its routes
sock = Sock()
