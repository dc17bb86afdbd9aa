"""The store and bus interface every backend implements.

State is JSON-serialisable values under string keys (with optional TTLs), lists
(transcripts) and sets (indexes). The bus is pub/sub on string channels: a
message published on one worker reaches every subscriber on every worker.
Callbacks run on a backend thread (memory: the publisher's), must be quick and
must not block; exceptions in them are logged and swallowed.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable
from typing import Any

Json = Any
Callback = Callable[[Json], None]


class Subscription(abc.ABC):
    __slots__ = ()  # one per live socket subscription: subclasses may stay dict-free (issue 7)

    @abc.abstractmethod
    def close(self) -> None:
        """Stop delivering messages. Idempotent."""


class Store(abc.ABC):
    # -- documents -----------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: str) -> Json | None: ...

    @abc.abstractmethod
    def set(self, key: str, value: Json, ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    def delete(self, *keys: str) -> None: ...

    @abc.abstractmethod
    def update(self, key: str, fn: Callable[[Json | None], Json | None], ttl: float | None = None) -> Json | None:
        """Atomically replace the value with ``fn(old)``; ``None`` deletes. Returns the new value.

        ``fn`` may run more than once (optimistic retry) and must be pure. An
        exception raised by ``fn`` aborts the update and propagates.
        """

    @abc.abstractmethod
    def expire(self, key: str, ttl: float) -> None: ...

    def get_many(self, keys: list[str]) -> list[Json | None]:
        """The values of ``keys`` in order (``None`` for a missing one); Redis reads them with MGET."""
        return [self.get(key) for key in keys]

    def lease(self, name: str, owner: str, ttl: float) -> bool:
        """Hold the lease ``name`` for ``ttl`` seconds more if ``owner`` holds it or nobody does.

        For work that one process of many does on behalf of all (the call sweep): the lease passes to
        another owner once its holder stops renewing it (released, or its process died). A store only
        one process uses always grants it."""
        return True

    def release(self, name: str, owner: str) -> None:
        """Give the lease ``name`` up if ``owner`` holds it."""

    # -- lists ---------------------------------------------------------------
    @abc.abstractmethod
    def append(self, key: str, item: Json, ttl: float | None = None) -> int:
        """Append to a list; returns the new length."""

    @abc.abstractmethod
    def range(self, key: str, start: int = 0, stop: int = -1) -> list[Json]:
        """Items ``start..stop`` inclusive (negative counts from the end), like Redis LRANGE."""

    # -- sets ----------------------------------------------------------------
    @abc.abstractmethod
    def add(self, key: str, member: str, ttl: float | None = None) -> None: ...

    @abc.abstractmethod
    def remove(self, key: str, member: str) -> None: ...

    @abc.abstractmethod
    def members(self, key: str) -> builtins.set[str]: ...

    # -- introspection -------------------------------------------------------
    @abc.abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """Live keys starting with ``prefix`` (for sweeping and tests, not hot paths)."""

    # -- bus -----------------------------------------------------------------
    @abc.abstractmethod
    def publish(self, channel: str, message: Json) -> None: ...

    @abc.abstractmethod
    def subscribe(self, channel: str, callback: Callback) -> Subscription: ...

    # -- health --------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError when the backend cannot be reached."""

    def close(self) -> None:
        """Release connections and threads."""
