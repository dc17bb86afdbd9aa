"""The call service: call sessions in the store, their side effects and their timers (no Flask).

One instance per app at ``state.calls``. Every transition is an atomic
``store.update`` of ``call:<serviceId>`` running the pure state machine of ``calls.py``,
so with Redis and many workers exactly one worker wins a transition and performs its
side effects: the COBROWSE dialog (through the conversation service), the transcript
system message, the ``closed`` frame to both signaling participants, the blinker
signal. At CLOSED every key of the call is deleted from the store.

A sweeper thread (started on demand, exits when no call is left) closes expired
invitations (``LPCALL_INVITE_TTL``) and calls whose participant stayed away longer
than ``LPCALL_RECONNECT_GRACE``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import signals
from ..errors import BadFrameError, InvalidStateError, NotAllowedError, NotFoundError
from ..protocol import ACCEPTED, CLOSED, INVITED, ROLES, SESSION_ERROR_IDS
from ..store.keys import SWEEP_LEASE, call_channel, call_key, page_key, presence_key
from ..texts import render
from .calls import CallSession
from .ice import ice_config
from .presence import UNREAD, Presence
from .records import fold_quality
from .tokens import TokenSigner

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger(__name__)

#: The sweeper runs every eighth of the shortest timer (invite TTL, reconnect grace), at most
#: every SWEEP_INTERVAL seconds: timers stay precise to ~12 % while a worker with many calls
#: does not re-read every call document several times a second.
SWEEP_INTERVAL = 1.0
MIN_SWEEP_INTERVAL = 0.05
#: calls judged between two yields of a sweep pass (~2 ms of hub time each on the memory store)
SWEEP_CHUNK = 25
#: the pause between two chunks: a real timer (gevent's sleep(0) only runs the queued callbacks,
#: it does not poll the sockets, so it would not let a frame through)
SWEEP_PAUSE = 0.001
IDLE_EXIT = 30.0
#: The store lease of the sweeper (issue 20): with many workers on one Redis only the holder sweeps
#: (the sweep reads every call, whoever's it is); another takes over within SWEEP_LEASE_ROUNDS
#: intervals when the holder stops (its worker died, or has no call left to watch).
SWEEP_LEASE_ROUNDS = 3
#: Close reason of a call whose state vanished from the store (restarted empty, flushed, evicted).
STATE_LOST = "state_lost"
#: The sessionError id the visitor gets for it: the call cannot go on and a new one can be tried
#: (AGENT_DISCONNECTED would blame an agent who is still there, and who is told the same).
STATE_LOST_ERROR = "UNABLE_TO_CONNECT"
#: Seconds a socket waits before it trusts that its call vanished: a normal close deletes the
#: call's keys a moment before its `closed` frame reaches the sockets.
LOST_CONFIRM = 0.5


def other(role: str) -> str:
    return "consumer" if role == "agent" else "agent"


def format_duration(seconds: int) -> str:
    h, rest = divmod(max(0, int(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class CallManager:
    """Store-backed call service (PROTOCOL §10)."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        texts: Mapping[str, str],
        signer: TokenSigner,
        conversations: Callable[[], Any],
        sender: Any = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.texts = texts
        self.signer = signer
        self._conversations = conversations
        self.sender = sender
        # who is connected, from which tab, since when gone (issue 5, presence.py)
        self.presence = Presence(store, float(settings.heartbeat_interval), float(settings.reconnect_grace))
        self._sweeper: threading.Thread | None = None
        self._sweeper_lock = threading.Lock()
        self._stop = threading.Event()
        self._lease_id = uuid.uuid4().hex

    @property
    def lease_owner(self) -> str:
        """This manager on the sweep lease (a forked worker is another owner)."""
        return f"{self._lease_id}:{os.getpid()}"

    def sweep_lead(self) -> bool:
        """Take or renew the sweep lease: True when this worker sweeps for every worker now."""
        return bool(self.store.lease(self._lease_name, self.lease_owner, SWEEP_LEASE_ROUNDS * self.sweep_interval))

    @property
    def _lease_name(self) -> str:
        """Workers share the lease only if they judge calls alike (the same timers)."""
        s = self.settings
        timers = (s.invite_ttl, s.reconnect_grace, s.heartbeat_interval)
        return f"{SWEEP_LEASE}:" + ":".join(f"{float(t):g}" for t in timers)

    def _release_lease(self) -> None:
        try:
            self.store.release(self._lease_name, self.lease_owner)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            logger.debug("sweep lease not released: %r", exc)

    # -- reading ------------------------------------------------------------------
    def get(self, service_id: str) -> CallSession | None:
        doc = self.store.get(call_key(service_id)) if isinstance(service_id, str) else None
        return CallSession.from_dict(doc) if doc else None

    def doc(self, service_id: str) -> dict[str, Any] | None:
        """The stored call document: the call record plus ``media`` and ``gone`` per role."""
        return self.store.get(call_key(service_id))  # type: ignore[no-any-return]

    def _live_docs(self) -> list[dict[str, Any]]:
        keys = self.store.keys("call:")
        return [doc for key, doc in zip(keys, self.store.get_many(keys))
                if isinstance(doc, dict) and "serviceId" in doc and call_key(doc["serviceId"]) == key]

    def active_for_agent(self, agent_id: str) -> list[dict[str, Any]]:
        """Join infos of the agent's open calls (``call.Active``: an agent reload gets its call back)."""
        calls = [CallSession.from_dict(d) for d in self._live_docs() if d["agentId"] == agent_id]
        return [self.join_info(c, "agent") for c in calls if c.is_open]

    def active_for_consumer(self, consumer_id: str) -> CallSession | None:
        for doc in self._live_docs():
            if doc["consumerId"] == consumer_id and doc["sessionState"] != CLOSED:
                return CallSession.from_dict(doc)
        return None

    def call_for_conversation(self, conv_id: str) -> CallSession | None:
        ref = self.store.get(f"conv:{conv_id}:call")
        if not isinstance(ref, dict):
            return None
        session = self.get(ref.get("serviceId", ""))
        return session if session and session.is_open else None

    # -- join info ------------------------------------------------------------------
    def token_for(self, session: CallSession, role: str) -> str:
        return self.signer.sign("call", {"sid": session.service_id, "role": role, "uid": session.uid_of(role)})

    def join_info(self, session: CallSession, role: str) -> dict[str, Any]:
        """What a participant needs to join the call's signaling (invite/accept/resume answers)."""
        s = self.settings
        camera_off = s.agent_camera_off_at_start if role == "agent" else s.consumer_camera_off_at_start
        return {
            "serviceId": session.service_id,
            "conversationId": session.conversation_id,
            "mode": session.mode,
            "role": role,
            "token": self.token_for(session, role),
            **ice_config(s, session.uid_of(role)),
            "cameraOffAtStart": bool(camera_off),
            "connectTimeout": float(s.connect_timeout),
            "agentName": session.agent_name,
            "visitorName": session.visitor_name,
            "sessionState": session.state,
            "expires": session.expires,
            "connectedTs": session.connected_ts,  # a resumed call's timer goes on from here (issue 5)
        }

    # -- transitions ------------------------------------------------------------------
    def _transition(self, service_id: str, fn: Callable[[CallSession], None]) -> tuple[CallSession, dict[str, Any]]:
        """Atomically apply ``fn`` to the stored session; NotFoundError when there is none."""
        result: dict[str, Any] = {}

        def apply(doc: Any) -> Any:
            if not isinstance(doc, dict):
                raise NotFoundError("no such call", field="serviceId")
            session = CallSession.from_dict(doc)
            fn(session)
            new = {**doc, **session.to_doc()}
            result["doc"] = new
            return new

        self.store.update(call_key(service_id), apply)
        doc = result["doc"]
        return CallSession.from_dict(doc), doc

    def open_call(self, *, conversation_id: str, consumer_id: str, agent_id: str, agent_name: str, visitor_name: str, mode: str) -> CallSession:
        """Create an INVITED call (no permission checks: ``invite`` does them)."""
        session = CallSession.invite(
            conversation_id=conversation_id,
            consumer_id=consumer_id,
            agent_id=agent_id,
            agent_name=agent_name,
            visitor_name=visitor_name,
            mode=mode,
            ttl=float(self.settings.invite_ttl),
        )
        doc = session.to_doc()
        ttl = float(self.settings.invite_ttl) + 24 * 3600  # a safety net; CLOSED deletes it
        self.store.set(call_key(session.service_id), doc, ttl=ttl)
        self.store.set(f"conv:{conversation_id}:call", {"serviceId": session.service_id}, ttl=ttl)
        self.ensure_sweeper()
        return session

    def invite(self, agent: Any, conv_id: str, mode: str) -> dict[str, Any]:
        """The agent invites the conversation's consumer; returns the agent's join info."""
        if mode not in ("VOICE_CALL", "VIDEO_CALL"):
            raise BadFrameError("mode: must be VOICE_CALL or VIDEO_CALL", field="mode")
        if not (self.settings.voice_enabled if mode == "VOICE_CALL" else self.settings.video_enabled):
            raise NotAllowedError(f"{mode} is switched off for this site", code="MODE_DISABLED", field="mode")
        service = self._conversations()
        conv = service.get(conv_id) if service is not None else None
        if not conv:
            raise NotFoundError("no such conversation", field="conversationId")
        if conv.get("agentId") != agent.id:
            raise NotAllowedError("the conversation is not assigned to you", field="conversationId")
        if "CO_BROWSE" not in (conv.get("features") or []):
            raise NotAllowedError("the visitor's window does not support calls", code="NO_COBROWSE", field="conversationId")
        if self.call_for_conversation(conv_id) is not None:
            raise NotAllowedError("a call is already in progress", code="CALL_IN_PROGRESS", field="conversationId")
        session = self.open_call(
            conversation_id=conv_id,
            consumer_id=conv["consumerId"],
            agent_id=agent.id,
            agent_name=getattr(agent, "name", agent.id),
            visitor_name=conv.get("visitorName") or "",
            mode=mode,
        )
        self._publish_dialog(session)
        self._system(session, "system.invited")
        self._signal(signals.call_invited, session)
        logger.info("call %s invited (%s) by %s", session.service_id, mode, agent.id)
        return self.join_info(session, "agent")

    def _own(self, session: CallSession, role: str, uid: str) -> None:
        if session.uid_of(role) != uid:
            raise NotFoundError("no such call", field="serviceId")  # do not tell strangers it exists

    def cancel(self, agent: Any, service_id: str) -> dict[str, Any]:
        session = self.get(service_id)
        if session is None:
            raise NotFoundError("no such call", field="serviceId")
        self._own(session, "agent", agent.id)
        return self._close(service_id, "cancelled").to_dict()

    def accept(self, consumer_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The consumer accepts (lpCoBrowse ``cobrowseAccepted``); returns the consumer's join info."""
        service_id = payload["serviceId"]
        session = self.get(service_id)
        if session is None:
            raise NotFoundError("no such call", field="serviceId")
        self._own(session, "consumer", consumer_id)
        if payload.get("mode") != session.mode:
            raise BadFrameError(f"mode: the invitation is for {session.mode}", field="mode")
        if session.state == ACCEPTED:  # a repeated cobrowseAccepted: same answer
            return self.join_info(session, "consumer")
        if session.is_expired():
            self._close_quietly(service_id, "expired")
            raise InvalidStateError("the invitation has expired")

        def accept(s: CallSession) -> None:
            s.accept()

        session, _ = self._transition(service_id, accept)
        self._publish_dialog(session)
        self._system(session, "system.accepted")
        self._signal(signals.call_accepted, session)
        self.store.publish(call_channel(service_id, "agent"), {"type": "session", "sessionState": ACCEPTED})
        return self.join_info(session, "consumer")

    def decline(self, consumer_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        session = self.get(payload["serviceId"])
        if session is None:
            raise NotFoundError("no such call", field="serviceId")
        self._own(session, "consumer", consumer_id)
        self._close(session.service_id, "declined")
        return {"serviceId": session.service_id, "sessionState": CLOSED}

    def hangup(self, role: str, uid: str, service_id: str) -> CallSession:
        """Hang up; while still INVITED this is a cancel (agent) or a decline (consumer)."""
        session = self.get(service_id)
        if session is None:
            raise NotFoundError("no such call", field="serviceId")
        self._own(session, role, uid)
        if session.state == INVITED:
            return self._close(service_id, "cancelled" if role == "agent" else "declined")
        return self._close(service_id, f"hangup_{role}")

    def fail(self, role: str, uid: str, service_id: str, error_id: str) -> CallSession:
        if error_id not in SESSION_ERROR_IDS:
            raise BadFrameError(f"id: must be one of {', '.join(SESSION_ERROR_IDS)}", field="id")
        session = self.get(service_id)
        if session is None:
            raise NotFoundError("no such call", field="serviceId")
        self._own(session, role, uid)
        return self._close(service_id, "error", error_id=error_id, by=role)

    def mark_connected(self, role: str, uid: str, service_id: str) -> None:
        first = {"value": False}

        def connect(s: CallSession) -> None:
            if s.uid_of(role) != uid:
                raise NotFoundError("no such call", field="serviceId")
            if s.state == ACCEPTED:
                first["value"] = s.mark_connected()

        session, _ = self._transition(service_id, connect)
        if first["value"]:
            self._signal(signals.call_connected, session)

    # -- signaling presence -------------------------------------------------------------
    def participant_joined(self, service_id: str, role: str, conn_id: str, tab: str | None = None) -> tuple[CallSession, dict[str, Any]]:
        """The socket ``conn_id`` (of browser tab ``tab``) joins; TabConflictError if another tab holds the role."""
        self.presence.claim(service_id, role, conn_id, tab)

        def joined(s: CallSession) -> None:
            if not s.is_open:
                raise NotFoundError("no such call", field="serviceId")
            s.mark_joined(role)

        try:
            result = self._transition(service_id, joined)
        except NotFoundError:
            self.presence.release(service_id, role, conn_id)  # no presence key outlives its call
            raise
        self.ensure_sweeper()
        return result

    def heartbeat(self, service_id: str, role: str, conn_id: str) -> bool:
        """A sign of life of the socket ``conn_id``; False when another socket took the role over."""
        return self.presence.beat(service_id, role, conn_id)

    def beat(self, service_id: str, role: str, conn_id: str) -> str:
        """:meth:`heartbeat` telling why not: ``presence.BEAT_OK``, ``BEAT_REPLACED`` or ``BEAT_MISSING``
        (then :meth:`lost` says whether the call's state vanished)."""
        return self.presence.beat_status(service_id, role, conn_id)

    def lost(self, service_id: str) -> bool:
        """True when the call's document is gone from a reachable store although this worker's socket
        still serves it and got no `closed`: Redis restarted empty, flushed or evicted (a store that
        cannot be reached raises StoreUnavailableError: that is no loss)."""
        return self.store.get(call_key(service_id)) is None

    @staticmethod
    def lost_frame() -> dict[str, Any]:
        """The `closed` frame a socket sends its own client when its call vanished (PROTOCOL §5)."""
        return {"type": "closed", "reason": STATE_LOST, "errorId": STATE_LOST_ERROR, "by": None}

    def participant_left(self, service_id: str, role: str, conn_id: str) -> float | None:
        """The socket ``conn_id`` went away; returns the grace deadline (epoch s) or None."""
        if not self.presence.release(service_id, role, conn_id):
            return None  # a newer socket of the same participant is already there
        now = time.time()

        def left(s: CallSession) -> None:
            s.mark_gone(role, now)

        try:
            self._transition(service_id, left)
        except NotFoundError:
            return None
        return now + float(self.settings.reconnect_grace)

    def consumer_page_opened(self, consumer_id: str, conn_id: str) -> None:
        """A messaging socket of the consumer is open (presence.py: the visitor's page)."""
        self.presence.page_opened(consumer_id, conn_id)

    def consumer_page_closed(self, consumer_id: str, conn_id: str) -> None:
        self.presence.page_closed(consumer_id, conn_id)

    def is_present(self, service_id: str, role: str) -> bool:
        return self.presence.is_present(service_id, role)

    def set_media_state(self, service_id: str, role: str, muted: bool, camera_off: bool) -> None:
        def media(s: CallSession) -> None:
            s.set_media(role, muted=muted, camera_off=camera_off)

        self._transition(service_id, media)

    def note_quality(self, service_id: str, role: str, frame: dict[str, Any]) -> None:
        """One side's relayed `quality` frame, folded into the call for its record (issue 17)."""
        now = time.time()

        def fold(s: CallSession) -> None:
            s.quality = fold_quality(s.quality, role, frame, now)

        self._transition(service_id, fold)

    # -- closing ------------------------------------------------------------------------
    def _close(self, service_id: str, reason: str, *, error_id: str | None = None, by: str | None = None) -> CallSession:
        def close(s: CallSession) -> None:
            s.close(reason, error_id=error_id, by=by)

        session, _ = self._transition(service_id, close)
        self._finish(session)
        return session

    def _close_quietly(self, service_id: str, reason: str) -> CallSession | None:
        try:
            return self._close(service_id, reason)
        except (InvalidStateError, NotFoundError):
            return None  # another worker or request closed it first

    def _finish(self, session: CallSession) -> None:
        sid = session.service_id
        ref = self.store.get(f"conv:{session.conversation_id}:call")
        keys = [call_key(sid), presence_key(sid, "agent"), presence_key(sid, "consumer")]
        if isinstance(ref, dict) and ref.get("serviceId") == sid:
            keys.append(f"conv:{session.conversation_id}:call")
        self.store.delete(*keys)
        frame = {"type": "closed", "reason": session.close_reason, "errorId": session.error_id, "by": session.ended_by}
        for role in ROLES:
            self.store.publish(call_channel(sid, role), frame)
        self._publish_dialog(session)
        key = {
            "declined": "system.declined",
            "cancelled": "system.cancelled",
            "expired": "system.expired",
            "error": "system.failed",
        }.get(session.close_reason or "", "system.failed" if session.error_id else "system.ended")
        if session.close_reason == "consumer_disconnected" and session.accepted_ts is None:
            key = "system.visitor_left"
        self._system(session, key)
        self._signal(signals.call_ended, session)
        logger.info("call %s closed: %s", sid, session.close_reason)

    # -- side effects -------------------------------------------------------------------
    def _publish_dialog(self, session: CallSession) -> None:
        service = self._conversations()
        if service is None:
            return
        try:
            service.set_cobrowse_dialog(session.conversation_id, session.cobrowse_dialog())
        except Exception:  # the call must not fail because a notification did
            logger.exception("could not publish the COBROWSE dialog of %s", session.service_id)

    def _system(self, session: CallSession, key: str) -> None:
        service = self._conversations()
        if service is None:
            return
        params: dict[str, Any] = {
            "agent": session.agent_name,
            "mode": render(self.texts, f"mode.{session.mode}"),
            "duration": format_duration(session.duration_seconds()),
            "visitor": session.visitor_name or render(self.texts, "agent.visitor"),
        }
        if session.error_id:
            params["error"] = render(self.texts, f"error.{session.error_id}")
        try:
            service.add_system_message(session.conversation_id, key, **params)
        except Exception:
            logger.exception("could not write the system message %s of %s", key, session.service_id)

    def _signal(self, signal: Any, session: CallSession) -> None:
        # Each receiver on its own: blinker's send() stops at the first receiver that raises,
        # so one broken CRM hook would otherwise starve the others (and the report record).
        if getattr(signal, "is_muted", False):
            return
        for receiver in list(signal.receivers_for(self.sender)):
            try:
                receiver(self.sender, call=session.to_dict())
            except Exception:  # a brand's receiver must not break the call
                logger.exception("a receiver of %s failed", signal.name)

    # -- timers -------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> list[CallSession]:
        """Close expired invitations and calls whose participant stayed away too long."""
        return self._sweep(now)[0]

    def _sweep(self, now: float | None = None) -> tuple[list[CallSession], int]:
        """One pass over the live calls: (the calls it closed, how many calls it saw).

        Incremental: the calls are read, judged and (if due) closed SWEEP_CHUNK at a time, and the
        pass yields to the other greenlets/threads between chunks, so a worker holding a thousand
        calls never stops relaying frames for the whole pass (issue 7: it held the gevent hub ~80 ms).
        Each chunk costs two store reads whatever its size (issue 20): its call documents, then the
        presence and page documents the judgement needs (MGET on Redis, not one GET each)."""
        fixed = now
        grace = float(self.settings.reconnect_grace)
        closed: list[CallSession] = []
        seen = 0
        keys = self.store.keys("call:")
        for start in range(0, len(keys), SWEEP_CHUNK):
            if start:
                time.sleep(SWEEP_PAUSE)  # gevent: a timer, so the hub polls the sockets meanwhile
            chunk = keys[start:start + SWEEP_CHUNK]
            live = [(s, d) for s, d in zip(chunk, self.store.get_many(chunk))
                    if isinstance(d, dict) and "serviceId" in d and call_key(d["serviceId"]) == s]
            seen += len(live)
            known = self._presence_docs([CallSession.from_dict(d) for _, d in live])
            for _, doc in live:
                t = time.time() if fixed is None else fixed
                reason = self._due(CallSession.from_dict(doc), t, grace, known)
                if reason:
                    done = self._close_quietly(doc["serviceId"], reason)
                    if done is not None:
                        closed.append(done)
        return closed, seen

    def _presence_docs(self, sessions: list[CallSession]) -> dict[str, Any]:
        """The presence and page documents :meth:`_due` reads for ``sessions``, in one store read."""
        wanted: list[str] = []
        for session in sessions:
            if session.state == INVITED:
                wanted += [presence_key(session.service_id, "agent"), page_key(session.consumer_id)]
            elif session.state == ACCEPTED:
                wanted += [presence_key(session.service_id, role) for role in ("agent", "consumer")]
        return dict(zip(wanted, self.store.get_many(wanted))) if wanted else {}

    def _due(self, session: CallSession, t: float, grace: float,
             known: Mapping[str, Any] | None = None) -> str | None:
        """Why the sweeper must close ``session`` now, or None (``known``: documents already read)."""
        known = known or {}
        sid = session.service_id
        gone = session.gone
        if session.state == INVITED:
            if session.is_expired(t):
                return "expired"
            agent = known.get(presence_key(sid, "agent"), UNREAD)
            if "agent" in gone and t - gone["agent"] >= grace and not self.presence.is_present(sid, "agent", known=agent):
                return "agent_disconnected"
            page = known.get(page_key(session.consumer_id), UNREAD)
            page_gone = self.presence.page_gone_since(session.consumer_id, known=page)
            if page_gone is not None and t - page_gone >= grace:
                return "consumer_disconnected"  # the visitor's page is gone: nobody can accept
        elif session.state == ACCEPTED:
            for role in ("agent", "consumer"):
                since = self.presence.gone_since(sid, role, gone, (session.accepted_ts or 0) / 1000, t,
                                                 known=known.get(presence_key(sid, role), UNREAD))
                if since is not None and t - since >= grace:
                    return f"{role}_disconnected"
        return None

    @property
    def sweep_interval(self) -> float:
        shortest = min(float(self.settings.invite_ttl), float(self.settings.reconnect_grace))
        return max(MIN_SWEEP_INTERVAL, min(SWEEP_INTERVAL, shortest / 8))

    def ensure_sweeper(self) -> None:
        with self._sweeper_lock:
            if self._sweeper is not None and self._sweeper.is_alive():
                return
            ref = weakref.ref(self)
            stop = self._stop
            self._sweeper = threading.Thread(target=_sweep_loop, args=(ref, stop), name="lpcall-sweeper", daemon=True)
            self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self._release_lease()


def _sweep_loop(ref: weakref.ReferenceType[CallManager], stop: threading.Event) -> None:
    idle_since = time.monotonic()
    first = ref()
    interval = first.sweep_interval if first is not None else SWEEP_INTERVAL
    del first
    while not stop.wait(interval):
        manager = ref()
        if manager is None:
            return
        try:
            # not the lead: another worker sweeps; stay ready to take over (busy)
            busy = manager._sweep()[1] > 0 if manager.sweep_lead() else True
        except Exception:
            logger.exception("call sweep failed")
            busy = True
        del manager
        if busy:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > IDLE_EXIT:
            manager = ref()
            if manager is None:
                return
            with manager._sweeper_lock:  # exit only if no call appeared meanwhile
                if not manager.store.keys("call:"):
                    manager._sweeper = None
                    manager._release_lease()
                    return
            del manager
