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
from collections.abc import Callable, Sequence
from typing import Any

Json = Any
Callback = Callable[[Json], None]
Resync = Callable[[], None]
#: ``append_sequenced``: a dict's ``"sequence"`` entry holding this placeholder becomes the appended item's index.
SEQUENCE = -7317


def with_sequence(value: Json, sequence: int) -> Json:
    """``value`` with every ``"sequence": SEQUENCE`` entry of its dicts set to ``sequence``."""
    if type(value) is dict:
        return {k: sequence if k == "sequence" and v == SEQUENCE else with_sequence(v, sequence) for k, v in value.items()}
    if type(value) is list:
        return [with_sequence(v, sequence) for v in value]
    return value


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

    def touch_owned(self, key: str, field: str, owner: str, changes: dict[str, Json], ttl: float) -> str:
        """If the document at ``key`` (a flat JSON object) has ``field == owner``: merge ``changes`` into it
        and give it ``ttl`` again. Returns ``"ok"``, ``"other"`` (another owner: left as it is) or
        ``"missing"`` (no document: none is made). One step; Redis runs it as one script, one round trip
        (a socket's heartbeat, every socket every interval: issue 20)."""
        result = {"status": "ok"}

        def touch(old: Json | None) -> Json | None:
            if not isinstance(old, dict):
                result["status"] = "missing"
                return None
            if old.get(field) != owner:
                result["status"] = "other"
                return old
            result["status"] = "ok"
            return {**old, **changes}

        self.update(key, touch)  # keeps the TTL: another owner's document is left as it is, TTL too
        if result["status"] == "ok":
            self.expire(key, ttl)
        return result["status"]

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

    def append_sequenced(
        self,
        key: str,
        item: Json,
        ttl: float,
        *,
        put: Sequence[tuple[str, Json]] = (),
        touch: Sequence[str] = (),
        publish: Sequence[tuple[str, Json]] = (),
    ) -> int:
        """Append ``item`` to the list ``key``, then store each ``put`` value, refresh the TTL of the ``touch``
        keys and publish each ``publish`` message; in the values put and published, ``"sequence":
        SEQUENCE`` becomes the item's index. All keys get ``ttl``. Returns the list's new length.

        One chat message (issue 20): Redis does it all in one atomic step, one round trip, so the item
        is never stored without its publication (nor published unstored)."""
        length = self.append(key, item, ttl=ttl)
        for k, value in put:
            self.set(k, with_sequence(value, length - 1), ttl=ttl)
        for k in touch:
            self.expire(k, ttl)
        for channel, message in publish:
            self.publish(channel, with_sequence(message, length - 1))
        return length

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
    def subscribe(self, channel: str, callback: Callback, resync: Resync | None = None) -> Subscription:
        """Call ``callback`` with every message published on ``channel`` from now on.

        ``resync``: called when messages may have been missed (the bus connection to Redis broke and is
        back), so that a subscriber whose messages are also stored (a transcript) reads what it missed."""

    # -- health --------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailableError when the backend cannot be reached."""

    def close(self) -> None:
        """Release connections and threads."""
