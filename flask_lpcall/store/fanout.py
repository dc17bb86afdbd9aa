"""``Fanout``: one store subscription per process and channel, shared by every local listener."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .base import Store

logger = logging.getLogger(__name__)


class _FanoutHandle:
    def __init__(self, fanout: Fanout, callback: Callable[[Any], None]) -> None:
        self._fanout, self.callback = fanout, callback

    def close(self) -> None:
        self._fanout._remove(self)


class Fanout:
    """One store subscription to ``channel`` per process, shared by every local listener.

    The store copies a message once per subscription; with many agent sockets on one
    worker, the ``agents`` channel is read once and handed to each socket (read-only).
    """

    def __init__(self, store: Store, channel: str) -> None:
        self.store, self.channel = store, channel
        self._lock = threading.Lock()
        self._handles: list[_FanoutHandle] = []
        self._sub: Any = None

    def subscribe(self, callback: Callable[[Any], None]) -> _FanoutHandle:
        handle = _FanoutHandle(self, callback)
        with self._lock:
            self._handles.append(handle)
            if self._sub is None:
                try:
                    self._sub = self.store.subscribe(self.channel, self._deliver)
                except Exception:
                    self._handles.remove(handle)
                    raise
        return handle

    def _remove(self, handle: _FanoutHandle) -> None:
        with self._lock:
            if handle in self._handles:
                self._handles.remove(handle)
            sub = self._sub if not self._handles else None
            if sub is not None:
                self._sub = None
        if sub is not None:
            sub.close()

    def _deliver(self, message: Any) -> None:
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            try:
                handle.callback(message)
            except Exception:
                logger.exception("listener of %s failed", self.channel)
