"""The consumer socket ``GET /ws/consumer`` (PROTOCOL §3: InitConnection, conversations, messages,
metadata) and the transcript subscription both the consumer and the agent sockets use.

Pushes travel through ``store.publish``/``subscribe`` only, so the other end may
be connected to another worker.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from ..core.conversations import ROLE_CONSUMER, ConversationService, check_message
from ..core.schemas import CONSUMER_REQUESTS, validate_init_headers
from ..errors import NotAllowedError, NotFoundError
from ..state import LPCallState
from ..store import Subscription
from ..store.keys import ch_consumer, ch_conv
from .envelope import FrameSocket, Handler
from .transport import quietly

logger = logging.getLogger(__name__)

#: cqm.SubscribeExConversations subscriptions one consumer socket keeps; a newer one replaces the oldest
MAX_META_SUBSCRIPTIONS = 4


class MessagingSubscription:
    """Transcript events of one conversation, in order, without gaps or duplicates."""

    __slots__ = ("_lock", "active", "conn", "conv_id", "history", "next_seq", "service", "sub", "watch")

    def __init__(self, conn: FrameSocket, store: Any, service: ConversationService, conv_id: str, from_seq: int) -> None:
        self.conn = conn
        self.service = service
        self.conv_id = conv_id
        self.next_seq = from_seq
        self.active = True  # False: drop further events (the agent lost access)
        self._lock = threading.RLock()
        with self._lock:
            self.sub: Subscription = store.subscribe(ch_conv(conv_id), self._on_bus, self._resync)
            self.watch = service.watch(conv_id)  # its sides hear if the store loses it (finding 9)
            self.history: list[dict[str, Any]] | None = service.events(conv_id, from_seq)
            if self.history:
                self.next_seq = self.history[-1]["sequence"] + 1

    def send_history(self) -> None:
        with self._lock:
            self.conn.notify("ms.MessagingEventNotification", {"conversationId": self.conv_id, "events": self.history})
            self.history = None  # sent: live events go out on their own from now on

    def _on_bus(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "meta":
            self.watch.seen(message["conversation"])
        if not isinstance(message, dict) or message.get("type") != "event":
            return
        event = message["event"]
        with self._lock:
            if not self.active:
                return
            self._push(self.service.catch_up(self.conv_id, self.next_seq, event))  # gaps filled, repeats dropped

    def _resync(self) -> None:
        """The store's bus was away (Redis restarted or unreachable): what was published meanwhile is only in
        the transcript, so read it from there now, not at the next message (which may never come)."""
        with self._lock:
            if self.active:
                self._push(self.service.events(self.conv_id, self.next_seq))

    def _push(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.next_seq = events[-1]["sequence"] + 1
            if self.history is not None:  # the history is not out yet (the response goes first): they follow it
                self.history.extend(events)
                return
            self.conn.notify("ms.MessagingEventNotification", {"conversationId": self.conv_id, "events": events})

    def close(self) -> None:
        self.watch.close()
        self.sub.close()


class _BoundHandlers(Mapping[str, Handler]):
    """A connection's request handlers, looked up by name in its class's table: one small object per
    socket instead of a dict of bound methods (issue 7: thousands of sockets per worker)."""

    __slots__ = ("_names", "_owner")

    def __init__(self, owner: Any, names: Mapping[str, str]) -> None:
        self._owner = owner
        self._names = names

    def __getitem__(self, kind: str) -> Handler:
        return getattr(self._owner, self._names[kind])  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _ChangeFeed:
    """The bus callback of one ``cqm.SubscribeExConversations``: metadata changes of the consumer's
    conversations, never before the subscription's snapshot (both go out under ``lock``)."""

    __slots__ = ("lock", "owner", "sub_id")

    def __init__(self, owner: ConsumerConnection, sub_id: str) -> None:
        self.owner = owner
        self.sub_id = sub_id
        self.lock = threading.Lock()  # only queues frames under it, never re-entered

    def __call__(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("type") == "meta":
            owner = self.owner
            with self.lock:
                owner.conn.notify(
                    "cqm.ExConversationChangeNotification",
                    {"subscriptionId": self.sub_id, "changes": [owner.service.change(message["conversation"])]},
                )


class ConsumerConnection:
    """One consumer socket: identity from InitConnection, then the consumer's own conversations only."""

    __slots__ = ("conn", "consumer_id", "features", "messaging", "meta_subs", "page_id", "service", "settings", "state")

    #: request type -> method name (per class; each socket looks its handlers up here)
    HANDLERS: ClassVar[dict[str, str]] = {
        "InitConnection": "init_connection",
        "cm.ConsumerRequestConversation": "request_conversation",
        "ms.PublishEvent": "publish_event",
        "cqm.SubscribeExConversations": "subscribe_conversations",
        "ms.SubscribeMessagingEvents": "subscribe_messaging",
        "cm.CloseConversation": "close_conversation",
        "ping": "ping",
    }

    def __init__(self, state: LPCallState, ws: Any) -> None:
        self.state = state
        self.settings = state.settings
        self.service = state.conversations
        self.conn = FrameSocket(ws, max_frame_bytes=self.settings.max_frame_bytes, name="consumer",
                                keepalive=state.keepalive)
        self.consumer_id: str | None = None
        self.features: list[str] = []
        self.messaging: dict[str, MessagingSubscription] = {}
        self.meta_subs: list[Subscription] = []
        self.page_id: str | None = None  # set while this socket counts as the visitor's page

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return _BoundHandlers(self, self.HANDLERS)

    def run(self) -> None:
        try:
            self.conn.serve(self.handlers, CONSUMER_REQUESTS)
        finally:
            for sub in list(self.messaging.values()):
                quietly("closing a transcript subscription", sub.close)
            for msub in self.meta_subs:
                quietly("closing a metadata subscription", msub.close)
            if self.page_id is not None and self.consumer_id is not None:
                quietly("recording the visitor's page as closed", self.state.calls.consumer_page_closed, self.consumer_id,
                        self.page_id)
            self.conn.finish()

    # -- helpers ---------------------------------------------------------------
    def _consumer(self) -> str:
        if self.consumer_id is None:
            raise NotAllowedError("send InitConnection with a ConsumerAuthentication header first", code="NOT_AUTHENTICATED")
        return self.consumer_id

    def _own(self, conv_id: str) -> dict[str, Any]:
        cid = self._consumer()
        doc = self.service.get(conv_id)
        if doc is None:
            raise NotFoundError(f"body.conversationId: unknown conversation {conv_id!r}", field="body.conversationId")
        if doc["consumerId"] != cid:
            raise NotAllowedError("body.conversationId: not your conversation", field="body.conversationId")
        return doc

    # -- requests ----------------------------------------------------------------
    def init_connection(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        headers = validate_init_headers(env["headers"])
        try:
            payload = self.state.signer.verify("consumer", headers["jwt"], self.settings.consumer_token_ttl)
        except NotAllowedError as exc:
            exc.field = "headers.jwt"
            raise
        cid = payload.get("cid")
        if not isinstance(cid, str):
            raise NotAllowedError("headers.jwt: token is not a consumer token", code="TOKEN_INVALID", field="headers.jwt")
        if self.consumer_id not in (None, cid):
            raise NotAllowedError("this connection already belongs to another consumer", field="headers.jwt")
        self.consumer_id = cid
        if self.page_id is None:  # an invitation's visitor is here (presence.py)
            self.page_id = str(uuid.uuid4())
            self.state.calls.consumer_page_opened(cid, self.page_id)
        self.features = sorted(set(headers["features"]))
        for doc in self.service.for_consumer(cid):
            if doc.get("features") != self.features:
                self.service.set_features(doc["convId"], self.features)
        return {"consumerId": cid, "features": self.features}

    def ping(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {}

    def request_conversation(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        cid = self._consumer()
        doc, created = self.service.open(
            cid, visitor_name=body.get("visitorName"), features=self.features, brand_id=body.get("brandId")
        )
        return {"conversationId": doc["convId"], "created": created}

    def publish_event(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self._own(body["conversationId"])
        text = check_message(body["event"]["message"], self.settings.max_message_length)
        event = self.service.post(doc["convId"], ROLE_CONSUMER, doc["consumerId"], text, doc=doc)
        return {"sequence": event["sequence"]}

    def subscribe_conversations(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        cid = self._consumer()
        states = tuple(body["convState"])
        feed = _ChangeFeed(self, str(uuid.uuid4()))
        while len(self.meta_subs) >= MAX_META_SUBSCRIPTIONS:  # one socket cannot pile them up: the oldest goes
            quietly("closing a replaced metadata subscription", self.meta_subs.pop(0).close)
        with feed.lock:
            self.meta_subs.append(self.state.store.subscribe(ch_consumer(cid), feed))
            snapshot = self.service.for_consumer(cid, states)
            self.conn.respond(env["id"], env["type"], {"subscriptionId": feed.sub_id})
            self.conn.notify(
                "cqm.ExConversationChangeNotification",
                {"subscriptionId": feed.sub_id, "changes": [self.service.change(d) for d in snapshot]},
            )

    def subscribe_messaging(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        doc = self._own(body["conversationId"])
        old = self.messaging.pop(doc["convId"], None)
        if old is not None:
            old.close()
        sub = MessagingSubscription(self.conn, self.state.store, self.service, doc["convId"], body["fromSeq"])
        self.messaging[doc["convId"]] = sub
        self.conn.respond(env["id"], env["type"], {"conversationId": doc["convId"]})
        sub.send_history()

    def close_conversation(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self._own(body["conversationId"])
        closed = self.service.close(doc["convId"])
        return {"conversationId": closed["convId"], "state": closed["state"]}
