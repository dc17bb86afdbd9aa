"""A private asyncio event loop in a daemon thread, for driving aiortc from sync code.

Flask views (the network check) and synchronous tests use aiortc through
:meth:`BackgroundLoop.run`, which always has a deadline. Needs real OS threads: use the
threaded dev server or a ``sync``/``gthread`` worker for the routes that rely on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import LPCallError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class LoopTimeoutError(LPCallError):
    """A coroutine run on the background loop missed its deadline."""

    code = "TIMEOUT"


class BackgroundLoop:
    """One event loop running forever in a daemon thread, started on first use."""

    def __init__(self, name: str = "lpcall-aio") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=main, name=self._name, daemon=True).start()
                ready.wait(10)
                self._loop = loop
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro``; the returned future can be waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and return its result, or raise LoopTimeoutError."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LoopTimeoutError(f"no result within {timeout:g}s") from None

    def stop(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
