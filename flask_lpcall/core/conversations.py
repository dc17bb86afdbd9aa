"""Web-messaging conversations: a store-backed service (no Flask import).

A conversation belongs to one consumer, is routed to an available agent (a simple
queue: the least-loaded available agent, oldest conversation first) or taken by an
agent, and keeps a transcript of consumer, agent and system messages. Every change
is published on the bus (PROTOCOL §6) so the sockets on any worker can push it:

* ``conv:<convId>``   ``{"type": "event", "conversationId", "event"}`` and ``{"type": "meta", "conversation"}``
* ``consumer:<cid>``  ``{"type": "meta", "conversation"}`` (the consumer's conversations)
* ``agents``          ``{"type": "meta", "conversation"}`` and ``{"type": "last", "conversationId", "agentId",
  "lastMessage"}`` (the workspace lists)

Values in the store are JSON only; all writes of the conversation document go
through ``store.update`` so two workers never lose each other's changes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .. import texts as text_catalog
from ..errors import BadFrameError, InvalidStateError, NotAllowedError, NotFoundError, TooLargeError
from ..store import Store
from ..store.base import SEQUENCE
from ..store.fanout import Fanout
from ..store.keys import (
    CH_AGENTS,
    K_AVAILABLE,
    K_OPEN,
    ch_consumer,
    ch_conv,
    k_agent_convs,
    k_agent_socket,
    k_consumer_convs,
    k_conv,
    k_events,
    k_last,
)

logger = logging.getLogger(__name__)

ROLE_CONSUMER = "CONSUMER"
ROLE_AGENT = "AGENT"
ROLE_SYSTEM = "SYSTEM"
STATE_OPEN = "OPEN"
STATE_CLOSE = "CLOSE"
FEATURE_COBROWSE = "CO_BROWSE"

#: Most conversations the router assigns to one agent automatically (Take has no limit).
AUTO_ASSIGN_LIMIT = 8
#: Characters of the last message kept for the workspace list.
PREVIEW_CHARS = 140


def _now_ms() -> int:
    return int(time.time() * 1000)


#: ``closeReason`` of a conversation whose state vanished from the store (restarted empty, flushed)
STATE_LOST = "state_lost"
#: Rounds of the loss watch per heartbeat-long interval (see ConversationService.watch).
WATCH_SENTINEL_TTL_ROUNDS = 20



def _brief(doc: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """What :meth:`ConversationService.mark_lost` needs of a conversation, small (one per live
    transcript subscription: ~0.4 KB instead of ~1.8 KB for the whole document)."""
    if not doc:
        return None
    dialog = doc.get("cobrowse") or {}
    open_dialog = None
    if (dialog.get("metaData") or {}).get("sessionState") in ("INVITED", "ACCEPTED"):
        open_dialog = (dialog.get("dialogId"), dialog.get("dialogType"), dialog.get("channelType"))
    features = tuple(sys.intern(f) for f in doc.get("features") or () if isinstance(f, str))
    return (doc.get("state"), doc.get("consumerId"), doc.get("agentId"), doc.get("agentName"), doc.get("startTs"),
            doc.get("visitorName"), features, open_dialog)


def _unbrief(conv_id: str, brief: tuple[Any, ...]) -> dict[str, Any]:
    state, consumer_id, agent_id, agent_name, start_ts, visitor_name, features, open_dialog = brief
    cobrowse = None
    if open_dialog is not None:
        cobrowse = {"dialogId": open_dialog[0], "dialogType": open_dialog[1], "channelType": open_dialog[2],
                    "metaData": {"sessionState": "ACCEPTED"}}
    return {"convId": conv_id, "consumerId": consumer_id, "visitorName": visitor_name, "features": list(features),
            "agentId": agent_id, "agentName": agent_name, "state": state, "startTs": start_ts,
            "metaDataLastUpdateTs": start_ts, "lastMessage": None, "cobrowse": cobrowse}


class WatchHandle:
    """One live subscriber's interest in a conversation (:meth:`ConversationService.watch`)."""

    __slots__ = ("_service", "brief", "conv_id")

    def __init__(self, service: ConversationService, conv_id: str, doc: Mapping[str, Any] | None) -> None:
        self._service, self.conv_id, self.brief = service, conv_id, _brief(doc)

    def seen(self, doc: Mapping[str, Any]) -> None:
        """The conversation's latest document (a ``meta`` message from the bus)."""
        self.brief = _brief(doc)

    @property
    def doc(self) -> dict[str, Any] | None:
        """The conversation as last seen (the fields a lost-conversation notice needs)."""
        return None if self.brief is None else _unbrief(self.conv_id, self.brief)

    def close(self) -> None:
        self._service._unwatch(self)


class ConversationService:
    """Conversations, transcripts and routing on top of a :class:`~flask_lpcall.store.Store`."""

    def __init__(
        self,
        store: Store,
        texts: Mapping[str, str],
        *,
        ttl: float = 24 * 3600,
        presence_ttl: float = 30.0,
        clock: Callable[[], int] = _now_ms,
        on_opened: Callable[[dict[str, Any]], object] | None = None,
        on_message: Callable[[dict[str, Any], dict[str, Any]], object] | None = None,
    ) -> None:
        self.store = store
        self.texts = texts
        self.ttl = ttl
        self.presence_ttl = presence_ttl
        self.clock = clock
        self.on_opened = on_opened
        self.on_message = on_message
        #: the workspace lists of this process share one subscription to the ``agents`` channel
        self.agents_fanout = Fanout(store, CH_AGENTS)
        # -- the loss watch (watch()): conversations with a live subscriber in this process --
        self.watch_interval = max(presence_ttl / 3, 0.2)
        self._watched: dict[str, list[WatchHandle]] = {}
        self._watch_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._sentinel = f"lpcall:alive:{uuid.uuid4().hex}"
        self._sentinel_set = False

    # -- reading ---------------------------------------------------------------
    def get(self, conv_id: str) -> dict[str, Any] | None:
        """The conversation document (``consumerId, agentId, agentName, features, visitorName, state`` …)."""
        if not isinstance(conv_id, str) or not conv_id:
            return None
        doc: dict[str, Any] | None = self.store.get(k_conv(conv_id))
        return doc

    def require(self, conv_id: str) -> dict[str, Any]:
        doc = self.get(conv_id)
        if doc is None:
            raise NotFoundError(f"unknown conversation {conv_id!r}", field="conversationId")
        return doc

    def for_consumer(self, consumer_id: str, states: tuple[str, ...] = (STATE_OPEN,)) -> list[dict[str, Any]]:
        """The consumer's conversations in ``states``, oldest first."""
        out = []
        for conv_id in self.store.members(k_consumer_convs(consumer_id)):
            doc = self.get(conv_id)
            if doc is None:
                self.store.remove(k_consumer_convs(consumer_id), conv_id)
            elif doc["state"] in states:
                out.append(doc)
        return sorted(out, key=lambda d: d["startTs"])

    def open_conversations(self) -> list[dict[str, Any]]:
        out = []
        for conv_id in self.store.members(K_OPEN):
            doc = self.get(conv_id)
            if doc is None or doc["state"] != STATE_OPEN:
                self.store.remove(K_OPEN, conv_id)
            else:
                out.append(doc)
        return sorted(out, key=lambda d: d["startTs"])

    def visible_to_agent(self, doc: Mapping[str, Any], agent_id: str) -> bool:
        """An agent sees the queue (unassigned) and its own conversations."""
        return doc.get("agentId") in (None, agent_id)

    def for_agent(self, agent_id: str) -> list[dict[str, Any]]:
        return [d for d in self.open_conversations() if self.visible_to_agent(d, agent_id)]

    def events(self, conv_id: str, from_seq: int = 0) -> list[dict[str, Any]]:
        """Transcript events from ``from_seq`` on, each with its ``sequence``."""
        items = self.store.range(k_events(conv_id), max(from_seq, 0), -1)
        return [{**item, "sequence": max(from_seq, 0) + i} for i, item in enumerate(items)]

    def catch_up(self, conv_id: str, next_seq: int, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """What a live subscriber expecting ``next_seq`` delivers for ``event`` from the bus: nothing
        for a sequence it already has, else the event preceded by every event it has not had yet.

        Two workers publish out of sequence order (worker A appends 5 and worker B 6, B publishes
        first), and pub/sub loses what is published while a worker's bus reconnects. The transcript
        is the truth: an event's list entry exists before it is published, and every earlier one
        before it, so a gap is filled from the store at once and nothing needs to wait. A subscriber
        thus always holds a gapless prefix of the transcript (its last sequence is a valid resume
        point, ``fromSeq`` = last + 1) and every event exactly once. A store error propagates and
        changes nothing: the next event fills the same gap again.
        """
        seq = event.get("sequence")
        if not isinstance(seq, int) or seq < next_seq:
            return []
        missing = []
        if seq > next_seq:
            items = self.store.range(k_events(conv_id), next_seq, seq - 1)
            missing = [{**item, "sequence": next_seq + i} for i, item in enumerate(items)]
        return [*missing, dict(event)]

    # -- loss of state (issue 14, finding 9) ------------------------------------
    def watch(self, conv_id: str, doc: dict[str, Any] | None = None) -> WatchHandle:
        """Tell this conversation's sides if its state vanishes from the store while they are connected.

        Redis restarted empty or flushed keeps no conversation: nobody closes it, so nobody
        would hear of it. Each process keeps a sentinel key of its own in the store (TTL
        :data:`WATCH_SENTINEL_TTL_ROUNDS` rounds) and reads it once per round (``watch_interval``,
        a heartbeat): one GET per worker, whatever the number of sockets. When it is gone
        the store lost its data, and every watched conversation whose document is gone too is
        closed with ``closeReason`` :data:`STATE_LOST` (:meth:`mark_lost`).
        """
        handle = WatchHandle(self, conv_id, doc if doc is not None else self.get(conv_id))
        start = None
        with self._watch_lock:
            self._watched.setdefault(conv_id, []).append(handle)
            if self._watcher is None:
                start = self._watcher = threading.Thread(target=self._watch_loop, name="lpcall-conv-watch", daemon=True)
        if start is not None:
            self._set_sentinel()  # from the first watch on: a loss right after it counts
            start.start()
        return handle

    def _set_sentinel(self) -> None:
        self.store.set(self._sentinel, 1, ttl=WATCH_SENTINEL_TTL_ROUNDS * self.watch_interval)
        self._sentinel_set = True

    def _unwatch(self, handle: WatchHandle) -> None:
        with self._watch_lock:
            handles = self._watched.get(handle.conv_id, [])
            if handle in handles:
                handles.remove(handle)
            if not handles:
                self._watched.pop(handle.conv_id, None)

    def _watch_loop(self) -> None:
        pause = threading.Event()  # never set: a timer under gevent and threads alike
        while True:
            pause.wait(self.watch_interval)
            with self._watch_lock:
                if not self._watched:
                    self._watcher = None
                    self._sentinel_set = False  # a later watch starts afresh
                    return
            try:
                self.check_lost()
            except Exception as exc:  # noqa: BLE001 - a store outage: the next round looks again
                logger.debug("conversation loss watch: %r", exc)

    def check_lost(self) -> list[str]:
        """One round of the loss watch; returns the conversations it found lost (and closed)."""
        lost: list[str] = []
        if self._sentinel_set and self.store.get(self._sentinel) is None:
            with self._watch_lock:
                watched = {conv_id: handles[-1].doc for conv_id, handles in self._watched.items() if handles}
            logger.warning("the store lost its data (restarted empty or flushed?): checking %d conversation(s)",
                           len(watched))
            for conv_id, doc in watched.items():
                if doc and doc.get("state") == STATE_OPEN and self.get(conv_id) is None and self.mark_lost(doc):
                    lost.append(conv_id)
        self._set_sentinel()
        return lost

    def mark_lost(self, doc: Mapping[str, Any]) -> bool:
        """The conversation ``doc`` vanished from the store: store it again as closed (``closeReason``
        :data:`STATE_LOST`, an open call's dialog CLOSED) and push that to both sides, as a close is
        pushed (PROTOCOL §3, §4). Several workers may find it: only the first one pushes (True)."""
        closed: dict[str, Any] = {**doc, "state": STATE_CLOSE, "closeReason": STATE_LOST,
                                  "metaDataLastUpdateTs": self.clock(), "lastMessage": None}
        dialog = doc.get("cobrowse")
        if dialog and (dialog.get("metaData") or {}).get("sessionState") in ("INVITED", "ACCEPTED"):
            closed["cobrowse"] = {"dialogId": dialog.get("dialogId"), "dialogType": dialog.get("dialogType"),
                                  "channelType": dialog.get("channelType"), "metaData": {"sessionState": "CLOSED"}}
        mine = {"value": False}

        def revive(old: Any) -> Any:
            mine["value"] = old is None
            return closed if old is None else old

        self.store.update(k_conv(doc["convId"]), revive, ttl=self.ttl)
        if mine["value"]:
            logger.warning("conversation %s vanished from the store: closed (%s)", doc["convId"], STATE_LOST)
            self._publish_meta(closed)
        return mine["value"]

    # -- opening ---------------------------------------------------------------
    def open(
        self,
        consumer_id: str,
        *,
        visitor_name: str | None = None,
        features: list[str] | None = None,
        brand_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The consumer's open conversation, or a new one routed to an agent. Returns (doc, created)."""
        existing = self.for_consumer(consumer_id)
        if existing:
            doc = existing[-1]
            if features is not None and sorted(set(features)) != doc.get("features"):
                doc = self.set_features(doc["convId"], features) or doc
            return doc, False
        now = self.clock()
        conv_id = str(uuid.uuid4())
        doc = {
            "convId": conv_id,
            "consumerId": consumer_id,
            "visitorName": (visitor_name or "").strip() or None,
            "features": sorted(set(features or [])),
            "brandId": brand_id,
            "agentId": None,
            "agentName": None,
            "state": STATE_OPEN,
            "startTs": now,
            "metaDataLastUpdateTs": now,
            "lastMessage": None,
            "cobrowse": None,
        }
        self.store.set(k_conv(conv_id), doc, ttl=self.ttl)
        self.store.add(k_consumer_convs(consumer_id), conv_id, ttl=self.ttl)
        self.store.add(K_OPEN, conv_id)
        logger.info("conversation %s opened by consumer %s", conv_id, consumer_id)
        self._publish_meta(doc)
        if self.on_opened is not None:
            self.on_opened(doc)
        routed = self.route(conv_id)
        return routed or doc, True

    def set_features(self, conv_id: str, features: list[str]) -> dict[str, Any] | None:
        """Record the features the consumer's connection declared (the CO_BROWSE gate)."""
        wanted = sorted(set(features))
        doc = self._update(conv_id, lambda d: {**d, "features": wanted})
        return doc

    # -- messages --------------------------------------------------------------
    def post(
        self,
        conv_id: str,
        role: str,
        originator_id: str,
        message: str,
        *,
        system_key: str | None = None,
        doc: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append a text message to the transcript and push it to both sides (``doc``: already read)."""
        if doc is None:
            doc = self.require(conv_id)
        if doc["state"] != STATE_OPEN and role != ROLE_SYSTEM:
            raise InvalidStateError("the conversation is closed", field="conversationId")
        now = self.clock()
        event: dict[str, Any] = {
            "originatorId": originator_id,
            "role": role,
            "event": {"type": "ContentEvent", "contentType": "text/plain", "message": message},
            "serverTimestamp": now,
        }
        if system_key:
            event["systemKey"] = system_key
        # One store step (issue 20): the transcript entry, the list preview (its own small key: no rewrite of
        # the conversation document per message), the TTLs and both pushes; SEQUENCE becomes the entry's index.
        preview = {"text": message[:PREVIEW_CHARS], "role": role, "ts": now, "sequence": SEQUENCE}
        length = self.store.append_sequenced(
            k_events(conv_id), event, self.ttl,
            put=[(k_last(conv_id), preview)],
            touch=[k_conv(conv_id), k_consumer_convs(doc["consumerId"])],  # a conversation with messages is not idle
            publish=[
                (ch_conv(conv_id), {"type": "event", "conversationId": conv_id, "event": {**event, "sequence": SEQUENCE}}),
                (CH_AGENTS, {"type": "last", "conversationId": conv_id, "agentId": doc.get("agentId"), "lastMessage": preview}),
            ],
        )
        event["sequence"] = preview["sequence"] = length - 1
        if self.on_message is not None:
            self.on_message({**doc, "lastMessage": preview}, event)
        return event

    def last_message(self, conv_id: str) -> dict[str, Any] | None:
        last: dict[str, Any] | None = self.store.get(k_last(conv_id))
        return last

    def add_system_message(self, conv_id: str, text_key: str, **params: Any) -> dict[str, Any] | None:
        """Render ``text_key`` from the catalog and append it as a SYSTEM message (PROTOCOL §10)."""
        if self.get(conv_id) is None:
            logger.warning("system message %s for unknown conversation %s", text_key, conv_id)
            return None
        text = text_catalog.render(self.texts, text_key, **params)
        return self.post(conv_id, ROLE_SYSTEM, "system", text, system_key=text_key)

    # -- agents ------------------------------------------------------------------
    def take(self, conv_id: str, agent_id: str, agent_name: str) -> dict[str, Any]:
        """Assign the conversation to the agent (unassigned or already theirs)."""
        self.require(conv_id)
        state: dict[str, Any] = {}

        def assign(d: dict[str, Any] | None) -> dict[str, Any] | None:
            if d is None:
                raise NotFoundError(f"unknown conversation {conv_id!r}", field="conversationId")
            if d["state"] != STATE_OPEN:
                raise InvalidStateError("the conversation is closed", field="conversationId")
            if d["agentId"] not in (None, agent_id):
                raise NotAllowedError("the conversation is assigned to another agent", code="NOT_ASSIGNED", field="conversationId")
            state["new"] = d["agentId"] is None
            return {**d, "agentId": agent_id, "agentName": agent_name, "metaDataLastUpdateTs": self.clock()}

        doc: dict[str, Any] | None = self.store.update(k_conv(conv_id), assign, ttl=self.ttl)
        assert doc is not None
        if state["new"]:
            self.store.add(k_agent_convs(agent_id), conv_id, ttl=self.ttl)
            logger.info("conversation %s assigned to agent %s", conv_id, agent_id)
            self._publish_meta(doc)
            self.add_system_message(conv_id, "system.agent_joined", agent=agent_name)
        return doc

    def agent_load(self, agent_id: str) -> int:
        n = 0
        for conv_id in self.store.members(k_agent_convs(agent_id)):
            doc = self.get(conv_id)
            if doc is None or doc["state"] != STATE_OPEN or doc["agentId"] != agent_id:
                self.store.remove(k_agent_convs(agent_id), conv_id)
            else:
                n += 1
        return n

    def set_available(self, agent_id: str, agent_name: str, socket_id: str, available: bool) -> None:
        """An agent socket is (not) taking new conversations; available ones get the queue."""
        member = f"{socket_id}|{agent_id}"
        if available:
            self.store.set(k_agent_socket(socket_id), {"agentId": agent_id, "agentName": agent_name}, ttl=self.presence_ttl)
            self.store.add(K_AVAILABLE, member)
            for doc in self.open_conversations():
                if doc["agentId"] is None and self.route(doc["convId"]) is None:
                    break
        else:
            self.store.remove(K_AVAILABLE, member)
            self.store.delete(k_agent_socket(socket_id))

    def touch_presence(self, socket_id: str) -> None:
        self.store.expire(k_agent_socket(socket_id), self.presence_ttl)

    def available_agents(self) -> dict[str, str]:
        """agentId -> name of agents with a live available socket."""
        out: dict[str, str] = {}
        for member in self.store.members(K_AVAILABLE):
            socket_id, _, agent_id = member.partition("|")
            presence = self.store.get(k_agent_socket(socket_id))
            if presence is None:
                self.store.remove(K_AVAILABLE, member)
            else:
                out[agent_id] = presence["agentName"]
        return out

    def route(self, conv_id: str) -> dict[str, Any] | None:
        """Give an unassigned conversation to the least-loaded available agent (None: nobody free)."""
        candidates = sorted((self.agent_load(a), a, name) for a, name in self.available_agents().items())
        for load, agent_id, name in candidates:
            if load >= AUTO_ASSIGN_LIMIT:
                return None
            try:
                return self.take(conv_id, agent_id, name)
            except NotAllowedError:
                return None  # someone else took it meanwhile
            except (NotFoundError, InvalidStateError):
                return None
        return None

    # -- closing -----------------------------------------------------------------
    def close(self, conv_id: str) -> dict[str, Any]:
        self.require(conv_id)
        doc = self._update(conv_id, lambda d: {**d, "state": STATE_CLOSE})
        assert doc is not None
        self.store.remove(K_OPEN, conv_id)
        if doc.get("agentId"):
            self.store.remove(k_agent_convs(doc["agentId"]), conv_id)
        logger.info("conversation %s closed", conv_id)
        return doc

    # -- calls (PROTOCOL §10) ------------------------------------------------------
    def set_cobrowse_dialog(self, conv_id: str, dialog: dict[str, Any]) -> dict[str, Any] | None:
        """Store the COBROWSE dialog and push a change notification to the consumer and agents."""
        return self._update(conv_id, lambda d: {**d, "cobrowse": dialog})

    # -- wire shapes (PROTOCOL §3) ---------------------------------------------------
    @staticmethod
    def messaging_dialog(doc: Mapping[str, Any]) -> dict[str, Any]:
        participants = [doc["consumerId"]] + ([doc["agentId"]] if doc.get("agentId") else [])
        return {
            "dialogId": doc["convId"],
            "participants": participants,
            "dialogType": "MAIN",
            "channelType": "MESSAGING",
            "state": doc["state"],
            "creationTs": doc["startTs"],
            "metaDataLastUpdateTs": doc["metaDataLastUpdateTs"],
        }

    @classmethod
    def conversation_details(cls, doc: Mapping[str, Any]) -> dict[str, Any]:
        dialogs = [cls.messaging_dialog(doc)]
        if doc.get("cobrowse"):
            dialogs.append(doc["cobrowse"])
        participants = [doc["consumerId"]] + ([doc["agentId"]] if doc.get("agentId") else [])
        return {
            "convId": doc["convId"],
            "state": doc["state"],
            "participants": participants,
            "dialogs": dialogs,
            "startTs": doc["startTs"],
            "metaDataLastUpdateTs": doc["metaDataLastUpdateTs"],
            "visitorName": doc.get("visitorName"),
            "features": list(doc.get("features") or []),
            "agent": {"id": doc["agentId"], "name": doc["agentName"]} if doc.get("agentId") else None,
            **({"closeReason": doc["closeReason"]} if doc.get("closeReason") else {}),
        }

    @classmethod
    def change(cls, doc: Mapping[str, Any]) -> dict[str, Any]:
        """One ``changes[]`` entry of a ``cqm.ExConversationChangeNotification``."""
        return {
            "type": "UPSERT",
            "result": {"convId": doc["convId"], "effectiveTTR": -1, "conversationDetails": cls.conversation_details(doc)},
        }

    def row(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`summary` with the current last message."""
        return self.summary(doc, self.last_message(doc["convId"]))

    @staticmethod
    def summary(doc: Mapping[str, Any], last: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A row of the agent's conversation list (PROTOCOL §4)."""
        call = None
        dialog = doc.get("cobrowse")
        if dialog:
            meta = dialog.get("metaData") or {}
            if meta.get("sessionState") in ("INVITED", "ACCEPTED"):
                call = {"serviceId": meta.get("serviceId"), "mode": meta.get("mode"), "sessionState": meta.get("sessionState")}
        return {
            "convId": doc["convId"],
            "consumerId": doc["consumerId"],
            "visitorName": doc.get("visitorName"),
            "features": list(doc.get("features") or []),
            "agentId": doc.get("agentId"),
            "agentName": doc.get("agentName"),
            "state": doc["state"],
            "startTs": doc["startTs"],
            "lastMessage": dict(last) if last else doc.get("lastMessage"),
            "call": call,
            **({"closeReason": doc["closeReason"]} if doc.get("closeReason") else {}),
        }

    # -- internals -----------------------------------------------------------------
    def _update(
        self, conv_id: str, fn: Callable[[dict[str, Any]], dict[str, Any]], *, publish: bool = True
    ) -> dict[str, Any] | None:
        def apply(d: dict[str, Any] | None) -> dict[str, Any] | None:
            if d is None:
                return None
            new = fn(d)
            new["metaDataLastUpdateTs"] = max(self.clock(), d["metaDataLastUpdateTs"])
            return new

        doc: dict[str, Any] | None = self.store.update(k_conv(conv_id), apply, ttl=self.ttl)
        if doc is not None and publish:
            self._publish_meta(doc)
        return doc

    def _publish_meta(self, doc: dict[str, Any]) -> None:
        message = {"type": "meta", "conversation": doc}
        self.store.publish(ch_conv(doc["convId"]), message)
        self.store.publish(ch_consumer(doc["consumerId"]), message)
        self.store.publish(CH_AGENTS, message)


def check_message(text: str, limit: int, field: str = "body.event.message") -> str:
    """The limits every chat message obeys, on both sockets."""
    if len(text) > limit:
        raise TooLargeError(f"{field}: {len(text)} characters is over the limit of {limit} (LPCALL_MAX_MESSAGE_LENGTH)",
                            field=field)
    if not text.strip():
        raise BadFrameError(f"{field}: must not be empty", field=field)
    return text
