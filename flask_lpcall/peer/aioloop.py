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
        self._thread: threading.Thread | None = None
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
                    try:
                        loop.run_forever()
                    finally:
                        loop.close()

                self._thread = threading.Thread(target=main, name=self._name, daemon=True)
                self._thread.start()
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

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop (an aiortc peer nobody closed keeps sending RTP and ICE
        consent checks), then stop the loop, wait for its thread and close it. Idempotent; a later use
        starts a new loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
        if loop is None or loop.is_closed():
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(timeout), loop).result(timeout + 1)
            except (concurrent.futures.TimeoutError, RuntimeError):  # RuntimeError: stopped meanwhile
                logger.warning("background loop %s: its tasks did not end within %gs", self._name, timeout)
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("background loop %s: its thread did not end within %gs", self._name, timeout)


async def _cancel_all(timeout: float) -> None:
    """Cancel every other task of the running loop and wait (at most ``timeout``) for them to end."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
