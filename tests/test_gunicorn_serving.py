"""Production serving: two gunicorn + gevent servers (2 workers each) sharing one real redis-server.

The consumer talks to one server, the agent to the other; everything between them
crosses Redis. Then Redis is stopped and restarted under them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from servers import GunicornServer, RedisServer, two_hosts
from support import wait_for
from wsclients import Agent, Consumer, message_from


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    with two_hosts(redis_server.url, workers=2) as pair:
        yield pair


def _conversation_change(conv_id: str) -> Any:
    def match(msg: dict[str, Any]) -> bool:
        return msg.get("type") == "agent.ConversationChange" and msg["body"]["conversation"].get("convId") == conv_id

    return match


def test_serves_pages_and_api_under_gevent(cluster: tuple[GunicornServer, GunicornServer]) -> None:
    a, _ = cluster
    home = requests.get(a.url + "/", timeout=10)
    assert home.status_code == 200 and "lpTag" in home.text
    config = requests.get(a.url + "/lpcall/api/client-config", timeout=10).json()
    assert config["texts"]


def test_consumer_and_agent_on_different_servers_talk_through_redis(cluster: tuple[GunicornServer, GunicornServer]) -> None:
    a, b = cluster
    agent = Agent(b.url)
    consumer = Consumer(a.url)
    try:
        assert agent.connect()["code"] == 200
        assert consumer.connect()["code"] == 200
        conv_id = consumer.open_conversation("Vera")
        # The new conversation shows up in the agent's list on the other server.
        assert agent.client is not None and consumer.client is not None
        agent.client.wait_notification(_conversation_change(conv_id))
        agent.take_and_open(conv_id)

        for i in range(5):  # several messages: they may land on either worker of either server
            assert consumer.say(conv_id, f"hello {i} from A")["code"] == 200
            agent.client.wait_notification(message_from(f"hello {i} from A"))
            assert agent.say(conv_id, f"hi {i} from B")["code"] == 200
            consumer.client.wait_notification(message_from(f"hi {i} from B"))
    finally:
        consumer.close()
        agent.close()


def test_redis_outage_gives_a_clear_error_and_service_resumes(
    cluster: tuple[GunicornServer, GunicornServer], redis_server: RedisServer
) -> None:
    a, b = cluster
    agent = Agent(b.url)
    consumer = Consumer(a.url)
    try:
        agent.connect(available=False)  # an available agent: test_available_agent_socket_survives_an_outage
        consumer.connect()
        conv_id = consumer.open_conversation()
        assert agent.client is not None and consumer.client is not None
        agent.client.wait_notification(_conversation_change(conv_id))

        redis_server.stop()
        # Both sockets stay open and answer with a clear, machine-readable error.
        down = consumer.say(conv_id, "while down")
        assert down["code"] == 503, down
        error = down["body"]["error"]
        assert error["code"] == "STORE_UNAVAILABLE"
        assert "Redis" in error["message"] and "unavailable" in error["message"]
        invite = agent.client.request("call.Invite", {"conversationId": conv_id, "mode": "VIDEO_CALL"})
        assert invite["code"] == 503 and invite["body"]["error"]["code"] == "STORE_UNAVAILABLE", invite
        payload = {"serviceId": "s-" + uuid.uuid4().hex, "agentId": "bob", "visitorName": "Vera", "mode": "VIDEO_CALL",
                   "ssid": "ssid-1", "svid": "svid-1"}
        api = requests.post(a.url + "/lpcall/api/call/accept", json=payload, timeout=10,
                            headers={"Authorization": f"Bearer {consumer.token}"})
        assert api.status_code == 503 and api.json()["error"]["code"] == "STORE_UNAVAILABLE", api.text
        fresh = Consumer(a.url)
        init = fresh.connect()
        assert init["code"] == 503 and init["body"]["error"]["code"] == "STORE_UNAVAILABLE", init
        fresh.close()

        redis_server.start()  # an empty Redis on the same port: the old conversation is gone, new ones work
        # The agent socket opened before the outage gets list changes again once its server has
        # re-subscribed (pub/sub messages published before that are lost, so try with fresh conversations).
        again, conv2 = wait_for(lambda: _new_conversation_seen_by(agent, a.url), timeout=20,
                                message="a new conversation reaches the agent after the restart")
        agent.take_and_open(conv2)
        # New calls work again.
        invite = agent.client.request("call.Invite", {"conversationId": conv2, "mode": "VIDEO_CALL"})
        assert invite["code"] == 200 and invite["body"]["serviceId"], invite
        assert again.client is not None
        assert again.say(conv2, "back again")["code"] == 200
        agent.client.wait_notification(message_from("back again"))
        assert agent.say(conv2, "welcome back")["code"] == 200
        again.client.wait_notification(message_from("welcome back"))
        again.close()
    finally:
        consumer.close()
        agent.close()


def _new_conversation_seen_by(agent: Agent, base_url: str) -> tuple[Consumer, str] | None:
    consumer = Consumer(base_url)
    if consumer.connect()["code"] != 200:
        consumer.close()
        return None
    conv_id = consumer.open_conversation("After")
    assert agent.client is not None
    try:
        agent.client.wait_notification(_conversation_change(conv_id), timeout=1.5)
    except (AssertionError, TimeoutError):
        consumer.close()
        return None
    return consumer, conv_id


def test_available_agent_socket_survives_an_outage(
    cluster: tuple[GunicornServer, GunicornServer], redis_server: RedisServer
) -> None:
    _, b = cluster
    agent = Agent(b.url)
    try:
        agent.connect(available=True)
        assert agent.client is not None
        redis_server.stop()
        try:
            resp = agent.client.request("ping", {})
            assert resp["code"] in (200, 503), resp
        finally:
            redis_server.start()
        wait_for(lambda: agent.client.request("ping", {})["code"] == 200, timeout=15, message="agent socket usable")
    finally:
        agent.close()


def test_active_call_api_answers_json_during_an_outage(
    cluster: tuple[GunicornServer, GunicornServer], redis_server: RedisServer
) -> None:
    a, _ = cluster
    consumer = Consumer(a.url)
    redis_server.stop()
    try:
        api = requests.get(a.url + "/lpcall/api/call/active", headers={"Authorization": f"Bearer {consumer.token}"},
                           timeout=10)
        assert api.status_code == 503 and api.json()["error"]["code"] == "STORE_UNAVAILABLE", api.text
    finally:
        redis_server.start()


def test_call_socket_answers_store_unavailable_during_an_outage(
    cluster: tuple[GunicornServer, GunicornServer], redis_server: RedisServer
) -> None:
    from urllib.parse import quote

    from websockets.sync.client import connect

    a, b = cluster
    agent = Agent(b.url)
    consumer = Consumer(a.url)
    try:
        agent.connect(available=False)
        consumer.connect()
        conv_id = consumer.open_conversation()
        assert agent.client is not None
        agent.client.wait_notification(_conversation_change(conv_id))
        agent.take_and_open(conv_id)
        invite = agent.client.request("call.Invite", {"conversationId": conv_id, "mode": "VOICE_CALL"})
        assert invite["code"] == 200, invite
        token = invite["body"]["token"]
        redis_server.stop()
        try:
            with connect(f"{a.ws_url}/lpcall/ws/call?token={quote(token)}", open_timeout=10) as ws:
                frame = json.loads(ws.recv(timeout=10))
            assert frame["type"] == "error" and frame["code"] == "STORE_UNAVAILABLE", frame
            assert "unavailable" in frame["message"]
        finally:
            redis_server.start()
    finally:
        consumer.close()
        agent.close()
