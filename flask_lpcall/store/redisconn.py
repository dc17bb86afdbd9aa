"""The Redis store's connection pools: redis-py's, with the check of an idle connection on and cheap.

redis-py's pool asks every connection it hands out ``can_read()``: anything unread (a reply left
behind, or the server's EOF) means the connection must be made again. redis-py 8 skips acting on
the answer while its "maintenance notifications" are on, which they are by default ("auto"): a
reply left unread on a pooled connection became the next command's reply. They are for Redis
Enterprise failovers over RESP3; the store speaks RESP2 and turns them off, so the check acts again.
Its check runs ``poll()``
through the ``select`` module, which gevent replaces with a hub-driven version: under gunicorn's
gevent worker each store command then cost a timer, a greenlet switch and a whole turn of the
hub before it was even sent (issue 20: ~45 µs of CPU per command, heartbeats of 2,000 sockets
included). Here the same check is one real non-blocking ``poll()`` of the socket; when the socket
has something (data or EOF), or the parser may hold data of its own, redis-py's check decides as
before. ``rediss://`` keeps redis-py's class: TLS buffers decrypted bytes above the socket.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Callable
from typing import Any

import redis

try:
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # redis-py before 8: no such notifications, the pool's check acts
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

_poll_factory: Callable[[], Any] | None = None


def _real_poll() -> Any:
    """A ``select.poll`` object of the OS, also when gevent has patched ``select``."""
    global _poll_factory
    if _poll_factory is None:
        monkey = sys.modules.get("gevent.monkey")
        _poll_factory = monkey.get_original("select", "poll") if monkey is not None else select.poll
    return _poll_factory()


class _IdleCheck:
    """``can_read(0)`` (the pool's check) without gevent's poll when nothing waits on the socket."""

    _sock: Any
    _parser: Any

    def can_read(self, timeout: float = 0) -> bool:
        sock, reader = self._sock, getattr(self._parser, "_reader", None)
        if timeout or sock is None or reader is None or not hasattr(select, "poll"):
            return bool(super().can_read(timeout))  # type: ignore[misc]
        poller = _real_poll()
        poller.register(sock.fileno(), select.POLLIN)
        if poller.poll(0):  # data or EOF on the socket: redis-py's own check tells which
            return bool(super().can_read(0))  # type: ignore[misc]
        return bool(reader.has_data())  # hiredis may still hold part of a reply


class TCPConnection(_IdleCheck, redis.Connection):
    pass


class UnixConnection(_IdleCheck, redis.UnixDomainSocketConnection):
    pass


def pool_options(url: str) -> dict[str, Any]:
    """Keywords for ``ConnectionPool.from_url(url, …)``: RESP2, the connection class (redis-py's for TLS), and
    maintenance notifications off where redis-py has them (8.0 and later).

    RESP2 because redis-py 8 speaks RESP3 unless told: there every pub/sub message is a push notification,
    and its push handler formats the whole message into a debug log record (``str(response)`` and a
    ``getLogger`` under logging's lock) before returning it, on every relayed frame (issue 20)."""
    options: dict[str, Any] = {"protocol": 2}
    if MaintNotificationsConfig is not None:
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "redis":
        options["connection_class"] = TCPConnection
    elif scheme == "unix":
        options["connection_class"] = UnixConnection
    return options
