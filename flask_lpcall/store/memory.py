"""In-process store: the zero-setup default for one process."""

from __future__ import annotations

import builtins
import copy
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .base import Callback, Json, Resync, Store, Subscription

logger = logging.getLogger(__name__)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data: every subscriber gets its own (none can change another's data).

    Strings, numbers, booleans and None are immutable and shared; dicts and lists are rebuilt.
    ~4x cheaper than ``copy.deepcopy`` (no memo, no dispatch) on the relay's hot path (issue 7);
    anything else falls back to ``copy.deepcopy``.
    """
    kind = type(value)
    if kind is dict:
        return {k: json_copy(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [json_copy(v) for v in value]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)


class _MemorySubscription(Subscription):
    __slots__ = ("_store", "callback", "channel")

    def __init__(self, store: MemoryStore, channel: str, callback: Callback) -> None:
        self._store = store
        self.channel = channel
        self.callback = callback

    def close(self) -> None:
        self._store._unsubscribe(self)


class MemoryStore(Store):
    """Thread-safe (and gevent-safe) dict store. Values are deep-copied in and out (``json_copy``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._subs: dict[str, list[_MemorySubscription]] = {}

    # -- helpers ---------------------------------------------------------------
    def _alive(self, key: str) -> bool:
        exp = self._expiry.get(key)
        if exp is not None and exp <= time.monotonic():
            self._data.pop(key, None)
            self._expiry.pop(key, None)
            return False
        return key in self._data

    def _touch(self, key: str, ttl: float | None) -> None:
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = time.monotonic() + ttl

    # -- documents -------------------------------------------------------------
    def get(self, key: str) -> Json | None:
        with self._lock:
            return json_copy(self._data[key]) if self._alive(key) else None

    def set(self, key: str, value: Json, ttl: float | None = None) -> None:
        json.dumps(value)  # same contract as Redis: JSON only
        with self._lock:
            self._data[key] = json_copy(value)
            self._touch(key, ttl)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)
                self._expiry.pop(key, None)

    def update(self, key: str, fn: Callable[[Json | None], Json | None], ttl: float | None = None) -> Json | None:
        with self._lock:
            old = json_copy(self._data[key]) if self._alive(key) else None
            new = fn(old)
            if new is None:
                self.delete(key)
                return None
            self.set(key, new, ttl if ttl is not None else self._remaining(key))
            return json_copy(new)

    def _remaining(self, key: str) -> float | None:
        exp = self._expiry.get(key)
        return None if exp is None else max(exp - time.monotonic(), 0.001)

    def expire(self, key: str, ttl: float) -> None:
        with self._lock:
            if self._alive(key):
                self._touch(key, ttl)

    # -- lists -----------------------------------------------------------------
    def append(self, key: str, item: Json, ttl: float | None = None) -> int:
        json.dumps(item)
        with self._lock:
            lst = self._data[key] if self._alive(key) else []
            lst.append(json_copy(item))
            self._data[key] = lst
            if ttl is not None:
                self._touch(key, ttl)
            return len(lst)

    def range(self, key: str, start: int = 0, stop: int = -1) -> list[Json]:
        with self._lock:
            if not self._alive(key):
                return []
            lst = self._data[key]
            end = len(lst) if stop == -1 else (stop + 1 if stop >= 0 else len(lst) + stop + 1)
            items: list[Any] = json_copy(lst[start:end] if start >= 0 else lst[len(lst) + start : end])
            return items

    # -- sets ------------------------------------------------------------------
    def add(self, key: str, member: str, ttl: float | None = None) -> None:
        with self._lock:
            s = self._data[key] if self._alive(key) else set()
            s.add(member)
            self._data[key] = s
            if ttl is not None:
                self._touch(key, ttl)

    def remove(self, key: str, member: str) -> None:
        with self._lock:
            if self._alive(key):
                self._data[key].discard(member)
                if not self._data[key]:
                    self.delete(key)

    def members(self, key: str) -> builtins.set[str]:
        with self._lock:
            return set(self._data[key]) if self._alive(key) else set()

    def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [k for k in list(self._data) if k.startswith(prefix) and self._alive(k)]

    # -- bus ---------------------------------------------------------------------
    def publish(self, channel: str, message: Json) -> None:
        with self._lock:
            subs = list(self._subs.get(channel, ()))
        if not subs:
            return
        for sub in subs:
            try:
                sub.callback(json_copy(message))
            except Exception:  # a broken subscriber must not break the publisher
                logger.exception("subscriber of %s failed", channel)

    def subscribe(self, channel: str, callback: Callback, resync: Resync | None = None) -> Subscription:
        # one process, no connection to lose: nothing is ever missed (resync is never called)
        sub = _MemorySubscription(self, channel, callback)
        with self._lock:
            self._subs.setdefault(channel, []).append(sub)
        return sub

    def _unsubscribe(self, sub: _MemorySubscription) -> None:
        with self._lock:
            lst = self._subs.get(sub.channel, [])
            if sub in lst:
                lst.remove(sub)
            if not lst:
                self._subs.pop(sub.channel, None)

    def ping(self) -> None:
        return None
