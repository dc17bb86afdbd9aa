"""WebSocket pings and per-socket heartbeats for all of a worker's sockets, from one thread.

simple-websocket can ping by itself (``ping_interval``), but then every socket's reader waits
for each incoming frame in a selector with a timeout. Under gevent that is a selector, an event,
an I/O watcher and a timer per frame: a fifth of a busy worker's CPU at 1,000 call pairs
(issue 7, benchmarks/RESULTS.md). flask-lpcall therefore leaves simple-websocket's pings off (its
reader then blocks in a plain ``recv``) and one :class:`Keepalive` thread per app does the same
job every ``LPCALL_HEARTBEAT_INTERVAL`` for every socket it watches:

* a socket that did not answer the previous ping is closed (1008 "Ping/Pong timeout", as
  simple-websocket does); if it is still there one interval later (its writer is stuck on a
  client that reads nothing), the TCP connection is shut down;
* otherwise the next ping goes out through the socket's own writer, behind the frames already
  queued (one writer per socket: a slow client holds up only its own frames);
* the socket's ``tick`` runs (the call socket refreshes its presence there, PROTOCOL §5).

The visits are spread over the interval in slices of :data:`SLICE` sockets, so a worker holding
thousands of sockets never stops relaying for a whole round of heartbeats (a 2,000-socket round
in one go held every other greenlet up for ~0.2 s). Sockets leave the set when they end; the thread ends when the set is empty and starts again
with the next socket. A site that sets ``SOCK_SERVER_OPTIONS["ping_interval"]`` itself gets
simple-websocket's pings; those sockets only get their ``tick`` here.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from .adapter import WebSocket

logger = logging.getLogger(__name__)

#: Sockets visited in one go; between slices the thread waits (other greenlets run).
SLICE = 16


class Watched(Protocol):
    """What a socket offers the keepalive thread (every transport.Transport)."""

    ws: WebSocket

    def send_ping(self) -> None:
        """Queue a WebSocket ping behind the frames already queued."""

    def ping_timeout(self) -> None:
        """The previous ping got no pong: close the socket (through its writer)."""

    def tick(self) -> None:
        """Once per interval, for a socket that is alive."""


class Keepalive:
    """One thread pinging and ticking every watched socket each ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = float(interval)
        self._watched: set[Watched] = set()
        self._condemned: set[Watched] = set()  # closed for a missed pong, not gone yet
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, sock: Watched) -> None:
        start = None
        with self._lock:
            self._watched.add(sock)
            if self._thread is None:
                start = self._thread = threading.Thread(target=self._run, name="lpcall-keepalive", daemon=True)
        if start is not None:
            start.start()

    def unwatch(self, sock: Watched) -> None:
        with self._lock:
            self._watched.discard(sock)
            self._condemned.discard(sock)

    def _run(self) -> None:
        pause = threading.Event()  # never set: a timer that any thread model (gevent or not) honours
        while True:
            with self._lock:
                if not self._watched:
                    self._thread = None
                    return
                sockets = list(self._watched)
            slices = range(0, len(sockets), SLICE)
            step = self.interval / len(slices)  # one round of visits takes one interval
            failed: list[Exception] = []
            for start in slices:
                pause.wait(step)
                for sock in sockets[start : start + SLICE]:
                    if sock not in self._watched:
                        continue  # ended meanwhile
                    try:
                        self._visit(sock)
                    except Exception as exc:  # noqa: BLE001 - one socket failing (a store outage) must not stop the rest
                        failed.append(exc)
            if failed:  # one line per round, not one per socket (a store outage fails them all)
                logger.warning("keepalive: %d of %d sockets' heartbeats failed, the first: %r", len(failed),
                               len(sockets), failed[0], exc_info=failed[0])

    def _visit(self, sock: Watched) -> None:
        ws = sock.ws
        if not ws.is_open:
            return  # its reader noticed; the route ends and unwatches it
        if not ws.self_pinging:  # simple-websocket does not ping this one itself
            if not ws.answered_ping():
                if sock in self._condemned:
                    ws.shutdown()
                else:
                    self._condemned.add(sock)
                    sock.ping_timeout()
                return
            sock.send_ping()
        sock.tick()
