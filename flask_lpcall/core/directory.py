"""The built-in agent directory: agents, their hashed passwords and profile permissions in SQLite.

``LPCall(app)`` without ``agent_loader`` / ``agent_authenticator`` hooks (and without
``use_flask_login``) logs agents in against this directory. It lives in ``LPCALL_AGENT_DB``
(default ``lpcall-agents.sqlite3`` in the app's instance folder) and is managed with
``flask lpcall agent add|list|set|remove``. Passwords are stored as werkzeug.security hashes only.

Reading a directory whose file does not exist yet finds no agent and creates nothing; the first
``add`` creates the file (and the folder). Every call opens its own connection, so the directory
works from any thread, worker process or CLI at once (SQLite's own locking; WAL mode).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
#: A user name: what the agent types at the login form, and its agent id.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_PASSWORD = 500  # the login form reads at most this many characters

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    username TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
)
"""

# a hash to compare against for an unknown user name, so both answers take as long
_DUMMY_HASH = generate_password_hash("flask-lpcall unknown agent")


class DirectoryError(ValueError):
    """A directory operation refused (bad name, duplicate, unknown agent); ``field`` names the input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DirectoryEntry:
    username: str
    name: str
    permissions: frozenset[str]


def check_username(username: str) -> str:
    if not isinstance(username, str) or not NAME_RE.match(username):
        raise DirectoryError(
            "NAME must be 1-64 characters: letters, digits and _ . @ - (starting with a letter or digit)", "NAME"
        )
    return username


def check_password(password: str) -> str:
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        raise DirectoryError(f"the password must be 1-{MAX_PASSWORD} characters", "password")
    return password


class _KeptConnection(sqlite3.Connection):
    """The one connection of an in-memory directory: closing it would lose every agent."""

    def close(self) -> None:
        pass


class AgentDirectory:
    """Agents in one SQLite file (or ``":memory:"``, kept as long as the process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        self._ready = False

    @property
    def in_memory(self) -> bool:
        return self.path == MEMORY

    def exists(self) -> bool:
        return self.in_memory or os.path.exists(self.path)

    @contextmanager
    def _db(self, create: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection (None when reading a directory whose file does not exist yet)."""
        if self.in_memory:
            with self._lock:
                if self._memory is None:
                    self._memory = sqlite3.connect(MEMORY, check_same_thread=False, factory=_KeptConnection)
                    self._memory.execute(SCHEMA)
                with self._memory:
                    yield self._memory
            return
        if not create and not os.path.exists(self.path):
            yield None
            return
        if create:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(SCHEMA)
                self._ready = True
            with conn:
                yield conn
        finally:
            conn.close()

    # -- reading ---------------------------------------------------------------------
    def get(self, username: str) -> DirectoryEntry | None:
        with self._db(create=False) as db:
            row = db.execute("SELECT username, name, permissions FROM agents WHERE username = ?",
                             (username,)).fetchone() if db else None
        return _entry(row) if row else None

    def all(self) -> list[DirectoryEntry]:
        with self._db(create=False) as db:
            rows = db.execute("SELECT username, name, permissions FROM agents ORDER BY username").fetchall() if db else []
        return [_entry(r) for r in rows]

    def count(self) -> int:
        with self._db(create=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM agents").fetchone()[0]) if db else 0

    def authenticate(self, username: str, password: str) -> DirectoryEntry | None:
        """The agent when the password is right, else None (an unknown name costs the same time)."""
        with self._db(create=False) as db:
            row = db.execute("SELECT username, name, permissions, password_hash FROM agents WHERE username = ?",
                             (username,)).fetchone() if db else None
        if row is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        return _entry(row[:3]) if check_password_hash(row[3], password) else None

    # -- managing --------------------------------------------------------------------
    def add(self, username: str, password: str, permissions: Iterable[str], name: str | None = None) -> DirectoryEntry:
        check_username(username)
        check_password(password)
        now = int(time.time())
        perms = sorted(set(permissions))
        with self._db(create=True) as db:
            assert db is not None
            try:
                db.execute(
                    "INSERT INTO agents (username, name, password_hash, permissions, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (username, name or username, generate_password_hash(password), json.dumps(perms), now, now),
                )
            except sqlite3.IntegrityError:
                raise DirectoryError(f"an agent named {username!r} exists already (use 'set' to change it)",
                                     "NAME") from None
        logger.info("agent %s added to the directory %s", username, self.path)
        return DirectoryEntry(username, name or username, frozenset(perms))

    def update(self, username: str, *, password: str | None = None, permissions: Iterable[str] | None = None,
               name: str | None = None) -> DirectoryEntry:
        current = self.get(username)
        if current is None:
            raise DirectoryError(f"no agent named {username!r}", "NAME")
        sets: list[str] = ["updated_at = ?"]
        values: list[object] = [int(time.time())]
        if password is not None:
            sets.append("password_hash = ?")
            values.append(generate_password_hash(check_password(password)))
        if permissions is not None:
            sets.append("permissions = ?")
            values.append(json.dumps(sorted(set(permissions))))
        if name is not None:
            sets.append("name = ?")
            values.append(name)
        with self._db(create=True) as db:
            assert db is not None
            db.execute(f"UPDATE agents SET {', '.join(sets)} WHERE username = ?", (*values, username))
        updated = self.get(username)
        assert updated is not None
        return updated

    def remove(self, username: str) -> None:
        with self._db(create=False) as db:
            deleted = db.execute("DELETE FROM agents WHERE username = ?", (username,)).rowcount if db else 0
        if not deleted:
            raise DirectoryError(f"no agent named {username!r}", "NAME")
        logger.info("agent %s removed from the directory %s", username, self.path)


def _entry(row: tuple[str, str, str]) -> DirectoryEntry:
    return DirectoryEntry(username=row[0], name=row[1], permissions=frozenset(json.loads(row[2])))


def directory_path(instance_path: str, configured: str) -> str:
    """``LPCALL_AGENT_DB`` as a path: relative paths live in the app's instance folder."""
    if configured == MEMORY:
        return configured
    path = os.path.expanduser(configured)
    return path if os.path.isabs(path) else os.path.join(instance_path, path)
