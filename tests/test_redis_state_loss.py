"""State loss is told (issue 14, finding 9): Redis restarted empty (or flushed) mid-call.

Two gunicorn + gevent servers on one real redis-server; the visitor's sockets on one, the
agent's on the other. After the loss both call sockets get ``closed {reason:"state_lost",
errorId:"UNABLE_TO_CONNECT"}``, the visitor's conversation feed and the agent's list get the
conversation CLOSE with ``closeReason:"state_lost"``, and a hang-up on the lost call is answered
by that ``closed``, not by ``NOT_FOUND``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from servers import GunicornServer, RedisServer, two_hosts
from websockets.sync.client import ClientConnection, connect
from wsclients import Agent, Consumer

LOST = {"type": "closed", "reason": "state_lost", "errorId": "UNABLE_TO_CONNECT", "by": None}


@pytest.fixture(scope="module")
def hosts(redis_server: RedisServer) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    with two_hosts(redis_server.url, workers=1, FLASK_LPCALL_HEARTBEAT_INTERVAL="1") as pair:
        yield pair


class Live:
    """A visitor (host A) and an agent (host B) in an accepted voice call, every socket open."""

    def __init__(self, a: GunicornServer, b: GunicornServer, accept: bool = True) -> None:
        self.agent = Agent(b.url)
        self.consumer = Consumer(a.url)
        assert self.agent.connect(available=False)["code"] == 200
        assert self.consumer.connect()["code"] == 200
        self.conv_id = self.consumer.open_conversation("Vera")
        assert self.consumer.client is not None and self.agent.client is not None
        feed = self.consumer.client.request("cqm.SubscribeExConversations", {"convState": ["OPEN"]})
        assert feed["code"] == 200, feed
        self.agent.take_and_open(self.conv_id)
        invite = self.agent.client.request("call.Invite", {"conversationId": self.conv_id, "mode": "VOICE_CALL"})
        assert invite["code"] == 200, invite
        info = invite["body"]
        payload = {"serviceId": info["serviceId"], "agentId": "bob", "visitorName": "Vera", "mode": "VOICE_CALL",
                   "ssid": "ssid-1", "svid": "svid-1"}
        # accept: the Accept is recorded; else the visitor's window listens before it (PROTOCOL §5)
        accepted = requests.post(f"{a.url}/lpcall/api/call/{'accept' if accept else 'prepare'}", json=payload,
                                 timeout=10, headers={"Authorization": f"Bearer {self.consumer.token}"})
        assert accepted.status_code == 200, accepted.text
        self.service_id = info["serviceId"]
        self.agent_call = self._join(b, info["token"])
        self.consumer_call = self._join(a, accepted.json()["token"])

    @staticmethod
    def _join(server: GunicornServer, token: str) -> ClientConnection:
        ws = connect(f"{server.ws_url}/lpcall/ws/call?token={token}", origin=server.url, open_timeout=10)
        joined = json.loads(ws.recv(timeout=10))
        assert joined["type"] == "joined", joined
        return ws

    def close(self) -> None:
        for ws in (self.agent_call, self.consumer_call):
            ws.close()
        self.consumer.close()
        self.agent.close()


def _next_frame(ws: ClientConnection, kinds: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    """The first frame of one of ``kinds`` (pongs, peer-joined … skipped), with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") in kinds:
            return frame  # type: ignore[no-any-return]


def _change_with_state(client: Any, type_: str, conv_id: str, timeout: float = 20) -> dict[str, Any]:
    def match(msg: dict[str, Any]) -> bool:
        if msg.get("type") != type_:
            return False
        if type_ == "agent.ConversationChange":
            row = msg["body"]["conversation"]
            return row.get("convId") == conv_id and row.get("state") == "CLOSE"
        return any(c["result"]["convId"] == conv_id and c["result"]["conversationDetails"]["state"] == "CLOSE"
                   for c in msg["body"]["changes"])

    return client.wait_notification(match, timeout=timeout)  # type: ignore[no-any-return]


def test_redis_restarted_empty_mid_call_both_sides_are_told(hosts: tuple[GunicornServer, GunicornServer],
                                                            redis_server: RedisServer) -> None:
    a, b = hosts
    live = Live(a, b)
    try:
        redis_server.restart()  # empty: no persistence (--save "", no AOF)
        assert _next_frame(live.consumer_call, ("closed", "error")) == LOST
        assert _next_frame(live.agent_call, ("closed", "error")) == LOST
        assert live.consumer.client is not None and live.agent.client is not None
        seen_by_visitor = _change_with_state(live.consumer.client, "cqm.ExConversationChangeNotification", live.conv_id)
        details = next(c["result"]["conversationDetails"] for c in seen_by_visitor["body"]["changes"]
                   if c["result"]["convId"] == live.conv_id)
        assert details["closeReason"] == "state_lost"
        row = _change_with_state(live.agent.client, "agent.ConversationChange", live.conv_id)["body"]["conversation"]
        assert row["closeReason"] == "state_lost"
        # the visitor can go on: a new conversation opens
        again = live.consumer.client.request("cm.ConsumerRequestConversation", {"visitorName": "Vera"})
        assert again["code"] == 200 and again["body"]["created"] and again["body"]["conversationId"] != live.conv_id
    finally:
        live.close()


def test_a_hangup_on_a_flushed_call_is_answered_by_closed_not_not_found(hosts: tuple[GunicornServer, GunicornServer],
                                                                        redis_server: RedisServer) -> None:
    a, b = hosts
    live = Live(a, b)
    try:
        redis_server.client().flushall()
        live.agent_call.send(json.dumps({"type": "hangup"}))
        assert _next_frame(live.agent_call, ("closed", "error")) == LOST
        assert _next_frame(live.consumer_call, ("closed", "error")) == LOST
    finally:
        live.close()


def test_an_invitation_lost_with_redis_closes_the_agent_and_the_listening_visitor(
        hosts: tuple[GunicornServer, GunicornServer], redis_server: RedisServer) -> None:
    a, b = hosts
    live = Live(a, b, accept=False)
    try:
        redis_server.client().flushall()
        assert _next_frame(live.consumer_call, ("closed", "error")) == LOST
        assert _next_frame(live.agent_call, ("closed", "error")) == LOST
    finally:
        live.close()
