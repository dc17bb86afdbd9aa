"""Who of a call is connected to its signaling, from which tab, and since when someone is gone (no Flask).

One store document per participant, ``presence:<serviceId>:<role>`` =
``{"conn", "tab", "ts", "seen"}``: the signaling socket that holds the role (``conn``), the
browser tab it belongs to (``tab``, a random id the tab keeps in its sessionStorage), when it
joined (``ts``) and when it last showed a sign of life (``seen``, refreshed by heartbeats).
Everything lives in the store, so any worker can judge any participant:

* *present*: the document exists and ``seen`` is younger than ``dead_after``
  (2.5 heartbeats): a worker that died without closing its sockets stops refreshing, and
  its participants turn *stale* on their own;
* *gone since*: the call document's ``gone[role]`` (the socket closed cleanly), else the
  stale document's ``seen``.

The call manager's sweeper closes a call whose participant stayed away longer than
``LPCALL_RECONNECT_GRACE``.

The visitor's *page* is tracked too, for invitations: ``page:<consumerId>`` =
``{"conns": {conn: ts}, "gone": ts | None}`` lists the consumer's messaging sockets (one per
open tab), and ``gone`` says since when none is left. An invitation whose visitor has had no
page for the grace period closes early (``consumer_disconnected``) instead of blocking the
agent until ``LPCALL_INVITE_TTL``. A consumer never seen (no document) counts as present, and
so does a socket of a worker that died without closing it: those invitations simply expire. A second tab cannot take a role a live socket of another tab
holds (:class:`TabConflictError`); the same tab (a reload, a lost socket) always can.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ..errors import NotAllowedError
from ..store.keys import page_key, presence_key

logger = logging.getLogger(__name__)

TAB_CONFLICT = "CALL_IN_OTHER_TAB"
BEAT_OK, BEAT_REPLACED, BEAT_MISSING = "ok", "replaced", "missing"


class TabConflictError(NotAllowedError):
    """The call's role is held by a live socket of another browser tab."""

    def __init__(self) -> None:
        super().__init__("the call is open in another tab of this browser", code=TAB_CONFLICT, field="tab")


#: a page document outlives any invitation; each new socket of the consumer renews it
PAGE_TTL = 24 * 3600.0
#: "not read yet" for the ``known`` arguments below (a read document may be None)
UNREAD: Any = object()


class Presence:
    """Presence documents of call participants in a store (both backends)."""

    def __init__(self, store: Any, heartbeat: float, grace: float) -> None:
        self.store = store
        self.heartbeat = float(heartbeat)
        self.grace = float(grace)
        self.dead_after = max(2.5 * self.heartbeat, 1.0)
        # a safety net only: CLOSED deletes the document, a clean close deletes it too
        self.ttl = self.dead_after + self.grace + 60.0

    def doc(self, service_id: str, role: str) -> dict[str, Any] | None:
        value = self.store.get(presence_key(service_id, role))
        return value if isinstance(value, dict) else None

    def fresh(self, doc: dict[str, Any] | None, now: float | None = None) -> bool:
        if not doc:
            return False
        t = time.time() if now is None else now
        return t - float(doc.get("seen", doc.get("ts", 0))) < self.dead_after

    def claim(self, service_id: str, role: str, conn: str, tab: str | None, now: float | None = None) -> None:
        """Make ``conn`` the role's socket; TabConflictError when a live socket of another tab holds it."""
        t = time.time() if now is None else now

        def take(old: Any) -> Any:
            held = isinstance(old, dict) and self.fresh(old, t) and old.get("conn") != conn
            if held and tab and old.get("tab") and old["tab"] != tab:
                raise TabConflictError()
            return {"conn": conn, "tab": tab, "ts": t, "seen": t}

        self.store.update(presence_key(service_id, role), take, ttl=self.ttl)

    def beat(self, service_id: str, role: str, conn: str, now: float | None = None) -> bool:
        """A sign of life of ``conn``; False only when another socket took the role over."""
        return self.beat_status(service_id, role, conn, now) != BEAT_REPLACED

    def beat_status(self, service_id: str, role: str, conn: str, now: float | None = None) -> str:
        """A sign of life of ``conn``: :data:`BEAT_OK`, :data:`BEAT_REPLACED` (another socket took the
        role over) or :data:`BEAT_MISSING` (no document: the call closed, or the store lost it)."""
        t = time.time() if now is None else now
        # a missing document stays missing: the call closed (or the role was released)
        status = self.store.touch_owned(presence_key(service_id, role), "conn", conn, {"seen": t}, self.ttl)
        return {"ok": BEAT_OK, "other": BEAT_REPLACED}.get(status, BEAT_MISSING)

    def release(self, service_id: str, role: str, conn: str) -> bool:
        """``conn`` went away: drop the document if it still holds the role; True when it did."""
        result = {"held": False}

        def drop(old: Any) -> Any:
            result["held"] = not isinstance(old, dict) or old.get("conn") == conn
            return None if result["held"] else old

        self.store.update(presence_key(service_id, role), drop, ttl=self.ttl)
        return result["held"]

    def is_present(self, service_id: str, role: str, now: float | None = None, known: Any = UNREAD) -> bool:
        """``known``: the presence document already read (the sweep reads many at once), else read here."""
        return self.fresh(self._doc(service_id, role, known), now)

    def _doc(self, service_id: str, role: str, known: Any) -> dict[str, Any] | None:
        if known is UNREAD:
            return self.doc(service_id, role)
        return known if isinstance(known, dict) else None

    def gone_since(self, service_id: str, role: str, gone: Mapping[str, float], fallback: float, now: float | None = None,
                   known: Any = UNREAD) -> float | None:
        """Since when ``role`` is away (epoch s), or None while it is present (``known``: see is_present)."""
        doc = self._doc(service_id, role, known)
        if self.fresh(doc, now):
            return None
        since = gone.get(role)
        if since is not None:
            return float(since)
        if doc:  # a socket whose worker stopped refreshing it
            return float(doc.get("seen", doc.get("ts", fallback)))
        return fallback

    # -- the visitor's page (its messaging sockets) ------------------------------------------
    def page_opened(self, consumer_id: str, conn: str, now: float | None = None) -> None:
        t = time.time() if now is None else now

        def add(old: Any) -> Any:
            conns = dict(old.get("conns") or {}) if isinstance(old, dict) else {}
            conns[conn] = t
            return {"conns": conns, "gone": None}

        self.store.update(page_key(consumer_id), add, ttl=PAGE_TTL)

    def page_closed(self, consumer_id: str, conn: str, now: float | None = None) -> None:
        t = time.time() if now is None else now

        def drop(old: Any) -> Any:
            if not isinstance(old, dict):
                return None
            conns = {c: ts for c, ts in (old.get("conns") or {}).items() if c != conn}
            return {"conns": conns, "gone": old.get("gone") if conns else (old.get("gone") or t)}

        self.store.update(page_key(consumer_id), drop, ttl=PAGE_TTL)

    def page_gone_since(self, consumer_id: str, known: Any = UNREAD) -> float | None:
        """Since when the consumer has no page open (epoch s); None while one is, or never seen."""
        doc = self.store.get(page_key(consumer_id)) if known is UNREAD else known
        if not isinstance(doc, dict) or doc.get("conns") or doc.get("gone") is None:
            return None
        return float(doc["gone"])

    def forget(self, service_id: str) -> list[str]:
        """The keys to delete when the call closes."""
        return [presence_key(service_id, "agent"), presence_key(service_id, "consumer")]
