"""Consumer side of web messaging: the Messaging-Window-style socket and the consumer HTTP API.

* ``GET  /ws/consumer``           PROTOCOL §3 (InitConnection, conversations, messages, metadata)
* ``POST /api/consumer/session``  a signed consumer identity (PROTOCOL §1)
* ``GET  /api/client-config``     texts and switches for the browser code

Pushes travel through ``store.publish``/``subscribe`` only, so the other end may
be connected to another worker.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from flask import Blueprint, Flask, jsonify, request

from .. import signals
from ..core.conversations import ROLE_CONSUMER, ConversationService, ch_consumer, ch_conv
from ..core.schemas import CONSUMER_REQUESTS, validate_init_headers
from ..errors import BadFrameError, NotAllowedError, NotFoundError
from ..extension import LPCallState, get_state
from ..store import Subscription
from .envelope import FrameSocket, Handler
from .keepalive import Keepalive
from .route import sock
from .transport import TooLargeError, quietly

logger = logging.getLogger(__name__)

#: cqm.SubscribeExConversations subscriptions one consumer socket keeps; a newer one replaces the oldest
MAX_META_SUBSCRIPTIONS = 4

#: Extra room simple-websocket allows above LPCALL_MAX_FRAME_BYTES before it drops the
#: connection (1009); frames in between get a 413 error frame and the socket stays up.
TRANSPORT_SLACK = 4


def init_state(app: Flask, state: LPCallState) -> None:
    s = state.settings
    service = ConversationService(
        state.store,
        state.texts,
        ttl=s["LPCALL_CONVERSATION_TTL"],
        presence_ttl=max(3 * s["LPCALL_HEARTBEAT_INTERVAL"], 5.0),
        on_opened=lambda doc: signals.conversation_opened.send(app, conversation=doc),
        on_message=lambda doc, event: signals.message_sent.send(app, conversation=doc, event=event),
    )
    state.services["conversations"] = service
    # Every socket is pinged each heartbeat and dropped when it misses a pong: by one keepalive
    # thread, not by simple-websocket's per-socket selector wait (keepalive.py).
    state.services["keepalive"] = Keepalive(s["LPCALL_HEARTBEAT_INTERVAL"])
    opts = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    opts.setdefault("max_message_size", TRANSPORT_SLACK * s["LPCALL_MAX_FRAME_BYTES"])


def conversations(state: LPCallState | None = None) -> ConversationService:
    service: ConversationService = (state or get_state()).services["conversations"]
    return service


def check_message(text: str, limit: int, field: str = "body.event.message") -> str:
    """The limits every chat message obeys, on both sockets."""
    if len(text) > limit:
        raise TooLargeError(f"{field}: {len(text)} characters is over the limit of {limit} (LPCALL_MAX_MESSAGE_LENGTH)",
                            field=field)
    if not text.strip():
        raise BadFrameError(f"{field}: must not be empty", field=field)
    return text


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
        self.service = conversations(state)
        self.conn = FrameSocket(ws, max_frame_bytes=self.settings["LPCALL_MAX_FRAME_BYTES"], name="consumer",
                                keepalive=state.services["keepalive"])
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
            calls = self.state.services.get("calls")
            if self.page_id is not None and calls is not None and self.consumer_id is not None:
                quietly("recording the visitor's page as closed", calls.consumer_page_closed, self.consumer_id, self.page_id)
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
            payload = self.state.signer.verify("consumer", headers["jwt"], self.settings["LPCALL_CONSUMER_TOKEN_TTL"])
        except NotAllowedError as exc:
            exc.field = "headers.jwt"
            raise
        cid = payload.get("cid")
        if not isinstance(cid, str):
            raise NotAllowedError("headers.jwt: token is not a consumer token", code="TOKEN_INVALID", field="headers.jwt")
        if self.consumer_id not in (None, cid):
            raise NotAllowedError("this connection already belongs to another consumer", field="headers.jwt")
        self.consumer_id = cid
        calls = self.state.services.get("calls")
        if self.page_id is None and calls is not None:  # an invitation's visitor is here (presence.py)
            self.page_id = str(uuid.uuid4())
            calls.consumer_page_opened(cid, self.page_id)
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
        text = check_message(body["event"]["message"], self.settings["LPCALL_MAX_MESSAGE_LENGTH"])
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


# -- HTTP API ----------------------------------------------------------------------
def bearer_consumer(state: LPCallState) -> str | None:
    """The consumerId of a valid ``Authorization: Bearer`` consumer token, else None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    try:
        payload = state.signer.verify("consumer", header[7:].strip(), state.settings["LPCALL_CONSUMER_TOKEN_TTL"])
    except NotAllowedError:
        return None
    cid = payload.get("cid")
    return cid if isinstance(cid, str) else None


def client_config(state: LPCallState) -> dict[str, Any]:
    s = state.settings
    return {
        "texts": state.texts,
        "locale": s["LPCALL_LOCALE"],
        "analytics": s["LPCALL_ANALYTICS"],
        "engagementWindow": bool(s["LPCALL_ENGAGEMENT_WINDOW"]),
        "voiceEnabled": bool(s["LPCALL_VOICE_ENABLED"]),
        "videoEnabled": bool(s["LPCALL_VIDEO_ENABLED"]),
        "heartbeat": s["LPCALL_HEARTBEAT_INTERVAL"],
        "maxMessageLength": s["LPCALL_MAX_MESSAGE_LENGTH"],
        "maxFrameBytes": s["LPCALL_MAX_FRAME_BYTES"],
        "callEndedSeconds": s["LPCALL_CALL_ENDED_SECONDS"],
    }


def register(bp: Blueprint) -> None:
    @sock.route("/ws/consumer", bp=bp)
    def consumer_socket(ws: Any) -> None:
        ConsumerConnection(get_state(), ws).run()

    @bp.post("/api/consumer/session")
    def consumer_session() -> Any:
        state = get_state()
        from ..web.api import json_body  # the JSON APIs' one body reader (api.py)

        vid = json_body(optional=True).get("vid")
        if vid is not None and (not isinstance(vid, str) or not 0 < len(vid) <= 200):
            raise BadFrameError("vid: must be a string of 1 to 200 characters", field="vid")
        cid = bearer_consumer(state) or str(uuid.uuid4())
        token = state.signer.sign("consumer", {"cid": cid, "vid": vid})
        resp = jsonify({"consumerId": cid, "token": token})
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @bp.get("/api/client-config")
    def client_config_view() -> Any:
        resp = jsonify(client_config(get_state()))
        resp.headers["Cache-Control"] = "no-cache"
        return resp

