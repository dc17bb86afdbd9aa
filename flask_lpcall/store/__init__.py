"""Store backends: ``memory`` (default) and ``redis://`` (many workers)."""

from __future__ import annotations

from .base import Store, Subscription
from .memory import MemoryStore
from .redis import RedisStore


def store_from_url(url: str) -> Store:
    """Build the store named by ``LPCALL_STORE``."""
    if url == "memory":
        return MemoryStore()
    return RedisStore(url)


__all__ = ["MemoryStore", "RedisStore", "Store", "Subscription", "store_from_url"]
