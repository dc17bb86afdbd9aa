"""The agent workspace socket ``GET /ws/agent`` (PROTOCOL §4): one logged-in agent's list,
transcripts, availability and call invitations, on the one transport (``envelope.FrameSocket``)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ..core.agents import NETCHECK_REQUEST_KEY, check_can_invite, load_agent, session_valid
from ..core.conversations import ROLE_AGENT, check_message
from ..core.schemas import AGENT_REQUESTS
from ..errors import InvalidStateError, NotAllowedError, NotFoundError
from ..protocol import CLOSE_POLICY
from ..state import LPCallState
from .consumer import MessagingSubscription
from .envelope import FrameSocket
from .transport import quietly

logger = logging.getLogger(__name__)


class AgentConnection:
    """One workspace socket of one logged-in agent."""

    def __init__(self, state: LPCallState, ws: Any, agent: Any, sid: str | None) -> None:
        self.state = state
        self.settings = state.settings
        self.agent = agent
        self.sid = sid
        self.service = state.conversations
        self.conn = FrameSocket(ws, max_frame_bytes=self.settings.max_frame_bytes, name="agent",
                                keepalive=state.keepalive)
        self.socket_id = uuid.uuid4().hex
        self.available = False
        self.list_sub: Any = None
        self.opened: dict[str, Any] = {}
        self.stale: list[Any] = []  # transcript subscriptions of conversations another agent took
        self.handlers = {
            "agent.Subscribe": self.subscribe,
            "agent.SetAvailable": self.set_available,
            "agent.Take": self.take,
            "agent.Open": self.open,
            "ms.PublishEvent": self.publish_event,
            "cm.CloseConversation": self.close_conversation,
            "call.Invite": self.call_invite,
            "call.Cancel": self.call_cancel,
            "call.Active": self.call_active,
            "netcheck.Request": self.netcheck_request,
            "ping": self.ping,
        }

    def run(self) -> None:
        try:
            self.conn.serve(self.handlers, AGENT_REQUESTS, on_frame=self._touch)
        finally:
            if self.available:
                quietly("releasing availability", self.service.set_available, self.agent.id, self.agent.name,
                        self.socket_id, False)
            if self.list_sub is not None:
                quietly("closing the list subscription", self.list_sub.close)
            for sub in [*self.opened.values(), *self.stale]:
                quietly("closing a transcript subscription", sub.close)
            self.conn.finish()

    def _logged_out(self) -> None:
        """The login of this socket ended (logout in another tab or request): it closes."""
        self.conn.error(None, NotAllowedError("you logged out; log in again", code="NOT_AUTHENTICATED"))
        self.conn.close(CLOSE_POLICY, "logged out")

    def _touch(self) -> None:
        if self.available:
            self.service.touch_presence(self.socket_id)

    def _visible(self, conv_id: str) -> dict[str, Any]:
        doc = self.service.get(conv_id)
        if doc is None:
            raise NotFoundError(f"body.conversationId: unknown conversation {conv_id!r}", field="body.conversationId")
        if not self.service.visible_to_agent(doc, self.agent.id):
            raise NotAllowedError("body.conversationId: the conversation is assigned to another agent", code="NOT_ASSIGNED",
                                  field="body.conversationId")
        return doc

    def _mine(self, conv_id: str) -> dict[str, Any]:
        doc = self._visible(conv_id)
        if doc.get("agentId") != self.agent.id:
            raise NotAllowedError("body.conversationId: take the conversation first (agent.Take)", code="NOT_ASSIGNED",
                                  field="body.conversationId")
        return doc

    def _row(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        return self.service.row(doc)

    # -- requests ----------------------------------------------------------------
    def subscribe(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        lock = threading.RLock()

        def on_bus(message: Any) -> None:
            if not isinstance(message, dict):
                return
            if message.get("type") == "logout":
                if self.sid and message.get("sid") == self.sid:
                    self._logged_out()
                return
            if message.get("type") == "last":
                # A socket that has the conversation open gets the event itself and updates its list from it.
                if message["agentId"] in (None, self.agent.id) and message["conversationId"] not in self.opened:
                    self.conn.notify("agent.LastMessage", {"conversationId": message["conversationId"],
                                                           "lastMessage": message["lastMessage"]})
                return
            if message.get("type") != "meta":
                return
            doc = message["conversation"]
            with lock:
                if self.service.visible_to_agent(doc, self.agent.id):
                    # no store read in a bus callback: the row has no lastMessage, the client keeps its own
                    self.conn.notify("agent.ConversationChange", {"conversation": self.service.summary(doc),
                                                                  "visible": True})
                else:  # taken by another agent: just enough to drop it from the list
                    opened = self.opened.pop(doc["convId"], None)
                    if opened is not None:  # it stops receiving that transcript at once
                        opened.active = False
                        self.stale.append(opened)
                    self.conn.notify(
                        "agent.ConversationChange",
                        {"conversation": {"convId": doc["convId"], "agentId": doc["agentId"], "state": doc["state"]},
                         "visible": False},
                    )

        with lock:
            if self.list_sub is None:
                self.list_sub = self.service.agents_fanout.subscribe(on_bus)
            rows = [self._row(d) for d in self.service.for_agent(self.agent.id)]
            self.conn.respond(env["id"], env["type"], {"agentId": self.agent.id, "name": self.agent.name})
            self.conn.notify("agent.ConversationList", {"conversations": rows})
        self._set_available(body["available"])

    def _set_available(self, available: bool) -> None:
        if available != self.available:
            self.available = available
            self.service.set_available(self.agent.id, self.agent.name, self.socket_id, available)

    def set_available(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        self._set_available(body["available"])
        return {"available": self.available}

    def take(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self.service.take(body["conversationId"], self.agent.id, self.agent.name)
        return {"conversation": self._row(doc)}

    def open(self, env: dict[str, Any], body: dict[str, Any]) -> None:
        doc = self._visible(body["conversationId"])
        old = self.opened.pop(doc["convId"], None)
        if old is not None:
            old.close()
        sub = MessagingSubscription(self.conn, self.state.store, self.service, doc["convId"], body["fromSeq"])
        self.opened[doc["convId"]] = sub
        self.conn.respond(env["id"], env["type"], {"conversation": self._row(doc)})
        sub.send_history()

    def publish_event(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self._mine(body["conversationId"])
        text = check_message(body["event"]["message"], self.settings.max_message_length)
        event = self.service.post(doc["convId"], ROLE_AGENT, self.agent.id, text, doc=doc)
        return {"sequence": event["sequence"]}

    def close_conversation(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        doc = self._mine(body["conversationId"])
        closed = self.service.close(doc["convId"])
        return {"conversationId": closed["convId"], "state": closed["state"]}

    def _calls(self) -> Any:
        return self.state.calls

    def _fresh_agent(self) -> Any:
        """Reload the agent so a changed profile, a removed agent or a logout counts at once."""
        own_session = self.state.extension.login_bridge is None
        if own_session and not session_valid(self.state.store, self.agent.id, self.sid):
            raise NotAllowedError("you logged out; log in again", code="NOT_AUTHENTICATED")
        agent = load_agent(self.state, self.agent.id)
        if agent is None:
            raise NotAllowedError("you are no longer a known agent; log in again", code="NOT_AUTHENTICATED")
        self.agent = agent
        return agent

    def call_invite(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        agent = self._fresh_agent()
        conv = self.service.get(body["conversationId"])
        check_can_invite(agent, conv, body["mode"], self.settings)
        result: dict[str, Any] = self._calls().invite(agent, body["conversationId"], body["mode"])
        return result

    def call_cancel(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        result = self._calls().cancel(self._fresh_agent(), body["serviceId"])
        return {"serviceId": body["serviceId"], "sessionState": "CLOSED", "call": result}

    def call_active(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {"calls": self.state.calls.active_for_agent(self.agent.id)}

    def netcheck_request(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Ask the consumer to run the pre-call network check (PROTOCOL §4).

        Posts a SYSTEM message with ``systemKey`` :data:`NETCHECK_REQUEST_KEY`; the engagement window
        renders it with a "Check my network" button, and the result comes back as ``system.netcheck``.
        """
        doc = self._mine(body["conversationId"])
        if doc.get("state") != "OPEN":
            raise InvalidStateError("body.conversationId: the conversation is closed", field="body.conversationId")
        event = self.service.add_system_message(doc["convId"], NETCHECK_REQUEST_KEY, agent=self.agent.name)
        if event is None:
            raise NotFoundError("body.conversationId: unknown conversation", field="body.conversationId")
        logger.info("agent %s asked conversation %s for a network check", self.agent.id, doc["convId"])
        return {"conversationId": doc["convId"], "sequence": event["sequence"], "systemKey": NETCHECK_REQUEST_KEY}

    def ping(self, env: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {}
