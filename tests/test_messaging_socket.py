"""Integration: real server (werkzeug, threaded), real WebSocket clients (websockets' sync client).

A consumer Messaging-Window socket and an agent socket exchange messages; the CO_BROWSE
gate; the permission matrix refused/allowed server-side; isolation between consumers;
malformed, oversized and unauthenticated frames; Origin checks; heartbeat.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from support import start_live_server, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsclients import Agent, Consumer, message_from

from example_site.app import create_app


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Any:
    config = getattr(request, "param", {})
    srv = start_live_server(create_app(TESTING=True, **config))
    yield srv
    srv.stop()


def change_notifications(msg: dict[str, Any]) -> bool:
    return msg.get("type") == "cqm.ExConversationChangeNotification"


def cobrowse_dialog(msg: dict[str, Any]) -> dict[str, Any] | None:
    if msg.get("type") != "cqm.ExConversationChangeNotification":
        return None
    for change in msg["body"]["changes"]:
        for dialog in change["result"]["conversationDetails"]["dialogs"]:
            if dialog["channelType"] == "COBROWSE":
                return dialog
    return None


def test_consumer_and_agent_exchange_messages(server: Any) -> None:
    consumer = Consumer(server.url)
    init = consumer.connect()
    assert init["code"] == 200 and init["type"] == "InitConnectionResponse"
    assert init["body"]["consumerId"] == consumer.consumer_id
    sub = consumer.client.request("cqm.SubscribeExConversations", {"convState": ["OPEN"]})
    assert sub["code"] == 200
    snapshot = consumer.client.wait_notification(change_notifications)
    assert snapshot["body"]["changes"] == [] and snapshot["body"]["subscriptionId"] == sub["body"]["subscriptionId"]
    conv_id = consumer.open_conversation("Vera")

    agent = Agent(server.url, "bob", "bob")
    resp = agent.connect()  # available: the waiting conversation is routed to Bob
    assert resp["code"] == 200 and resp["body"]["agentId"] == "bob"
    listing = agent.client.wait_notification(lambda m: m.get("type") == "agent.ConversationList")
    assert [c["convId"] for c in listing["body"]["conversations"]] == [conv_id]
    assert listing["body"]["conversations"][0]["visitorName"] == "Vera"
    joined = consumer.client.wait_notification(message_from("Bob joined the conversation"))
    assert joined["body"]["events"][0]["role"] == "SYSTEM"
    meta = consumer.client.wait_notification(
        lambda m: change_notifications(m) and m["body"]["changes"][0]["result"]["conversationDetails"]["agent"] is not None
    )
    assert meta["body"]["changes"][0]["result"]["conversationDetails"]["agent"] == {"id": "bob", "name": "Bob"}

    opened = agent.client.request("agent.Open", {"conversationId": conv_id})
    assert opened["code"] == 200 and opened["body"]["conversation"]["agentId"] == "bob"
    history = agent.client.wait_notification(lambda m: m.get("type") == "ms.MessagingEventNotification")
    assert [e["event"]["message"] for e in history["body"]["events"]] == ["Bob joined the conversation"]

    watcher = Agent(server.url, "bob", "bob")  # a second workspace tab of Bob's, conversation not opened
    watcher.connect()
    sent = consumer.say(conv_id, "Hello, my grinder is broken")
    assert sent["code"] == 200 and sent["body"]["sequence"] == 1
    got = agent.client.wait_notification(message_from("Hello, my grinder is broken"))
    event = got["body"]["events"][0]
    assert event["role"] == "CONSUMER" and event["originatorId"] == consumer.consumer_id and event["sequence"] == 1
    change = watcher.client.wait_notification(
        lambda m: m.get("type") == "agent.LastMessage"
        and m["body"]["lastMessage"]["text"] == "Hello, my grinder is broken"
    )
    assert change["body"]["conversationId"] == conv_id and change["body"]["lastMessage"]["role"] == "CONSUMER"
    watcher.close()

    assert agent.say(conv_id, "Let's have a look")["code"] == 200
    reply = consumer.client.wait_notification(message_from("Let's have a look"))
    assert reply["body"]["events"][0]["role"] == "AGENT" and reply["body"]["conversationId"] == conv_id

    # A reconnect (reload) finds the conversation again and resumes after the last sequence.
    consumer.close()
    consumer.connect()
    consumer.client.request("cqm.SubscribeExConversations", {})
    again = consumer.client.wait_notification(change_notifications)
    assert [c["result"]["convId"] for c in again["body"]["changes"]] == [conv_id]
    consumer.client.request("ms.SubscribeMessagingEvents", {"conversationId": conv_id, "fromSeq": 2})
    rest = consumer.client.wait_notification(lambda m: m.get("type") == "ms.MessagingEventNotification")
    assert [e["event"]["message"] for e in rest["body"]["events"]] == ["Let's have a look"]

    closed = agent.client.request("cm.CloseConversation", {"conversationId": conv_id})
    assert closed["code"] == 200 and closed["body"]["state"] == "CLOSE"
    consumer.client.wait_notification(
        lambda m: change_notifications(m) and m["body"]["changes"][0]["result"]["conversationDetails"]["state"] == "CLOSE"
    )
    consumer.close()
    agent.close()


def test_cobrowse_gate(server: Any) -> None:
    agent = Agent(server.url, "bob", "bob")
    agent.connect()
    plain = Consumer(server.url, features=())
    plain.connect()
    plain_conv = plain.open_conversation("NoCalls")
    capable = Consumer(server.url)
    capable.connect()
    capable.client.request("cqm.SubscribeExConversations", {})
    capable_conv = capable.open_conversation("Calls")

    rows = {c["convId"]: c for c in agent.client.wait_notification(
        lambda m: m.get("type") == "agent.ConversationList")["body"]["conversations"]}
    for conv_id in (plain_conv, capable_conv):
        wait_for(lambda c=conv_id: agent.client.request("agent.Take", {"conversationId": c})["code"] == 200)
    refused = agent.client.request("call.Invite", {"conversationId": plain_conv, "mode": "VOICE_CALL"})
    assert refused["code"] == 403 and refused["type"] == "GenericResponse"
    assert refused["body"]["error"]["code"] == "NO_COBROWSE" and "CO_BROWSE" in refused["body"]["error"]["message"]
    assert all(r["features"] == [] for r in rows.values() if r["convId"] == plain_conv)

    allowed = agent.client.request("call.Invite", {"conversationId": capable_conv, "mode": "VIDEO_CALL"})
    assert allowed["code"] == 200, allowed
    info = allowed["body"]
    assert info["serviceId"].startswith(capable.consumer_id + "#") and info["token"] and info["mode"] == "VIDEO_CALL"
    note = capable.client.wait_notification(lambda m: cobrowse_dialog(m) is not None)
    dialog = cobrowse_dialog(note)
    assert dialog is not None
    assert dialog["dialogType"] == "OTHER" and dialog["metaData"]["sessionState"] == "INVITED"
    assert dialog["metaData"]["serviceId"] == info["serviceId"] and dialog["metaData"]["mode"] == "VIDEO_CALL"
    details = note["body"]["changes"][0]["result"]["conversationDetails"]
    assert details["dialogs"][0]["channelType"] == "MESSAGING"
    active = agent.client.request("call.Active", {})
    assert [c["serviceId"] for c in active["body"]["calls"]] == [info["serviceId"]]
    cancelled = agent.client.request("call.Cancel", {"serviceId": info["serviceId"]})
    assert cancelled["code"] == 200
    closed = capable.client.wait_notification(
        lambda m: (cobrowse_dialog(m) or {}).get("metaData", {}).get("sessionState") == "CLOSED"
    )
    assert cobrowse_dialog(closed)["channelType"] == "COBROWSE"
    for c in (plain, capable, agent):
        c.close()


@pytest.mark.parametrize(
    "server",
    [
        {"LPCALL_VOICE_ENABLED": True, "LPCALL_VIDEO_ENABLED": True},
        {"LPCALL_VOICE_ENABLED": False, "LPCALL_VIDEO_ENABLED": True},
        {"LPCALL_VOICE_ENABLED": True, "LPCALL_VIDEO_ENABLED": False},
        {"LPCALL_VOICE_ENABLED": False, "LPCALL_VIDEO_ENABLED": False},
    ],
    ids=["voice-on-video-on", "voice-off-video-on", "voice-on-video-off", "voice-off-video-off"],
    indirect=True,
)
def test_permission_matrix_enforced_by_the_server(server: Any) -> None:
    """2 profiles (alice: voice only; bob: voice + video) x 2 switch states x 2 modes."""
    settings = server.app.extensions["lpcall"].settings
    perms = {"alice": {"VOICE_CALL"}, "bob": {"VOICE_CALL", "VIDEO_CALL"}}
    switch = {"VOICE_CALL": settings.voice_enabled, "VIDEO_CALL": settings.video_enabled}
    outcomes = {}
    for name in ("alice", "bob"):
        agent = Agent(server.url, name, name)
        agent.connect()
        agent.client.request("agent.SetAvailable", {"available": False})
        page = agent.http.get(server.url + "/lpcall/agent/")
        for mode in ("VOICE_CALL", "VIDEO_CALL"):
            consumer = Consumer(server.url)
            consumer.connect()
            conv_id = consumer.open_conversation(f"{name}-{mode}")
            assert agent.client.request("agent.Take", {"conversationId": conv_id})["code"] == 200
            resp = agent.client.request("call.Invite", {"conversationId": conv_id, "mode": mode})
            expected = switch[mode] and mode in perms[name]
            button = f'data-mode="{mode}"'
            assert (button in page.text) is expected, f"{name} {mode}: button shown={button in page.text}"
            if expected:
                assert resp["code"] == 200, resp
                assert resp["body"]["mode"] == mode and resp["body"]["token"]
                assert agent.client.request("call.Cancel", {"serviceId": resp["body"]["serviceId"]})["code"] == 200
            else:
                assert resp["code"] == 403, resp
                want = "MODE_DISABLED" if not switch[mode] else "NO_PERMISSION"
                assert resp["body"]["error"]["code"] == want and resp["body"]["error"]["field"] == "body.mode"
            outcomes[(name, mode)] = resp["code"]
            consumer.close()
        agent.close()
    assert len(outcomes) == 4


def test_agent_cannot_invite_or_open_another_agents_conversation(server: Any) -> None:
    bob = Agent(server.url, "bob", "bob")
    bob.connect()
    consumer = Consumer(server.url)
    consumer.connect()
    conv_id = consumer.open_conversation()
    wait_for(lambda: server.app.extensions["lpcall"].conversations.get(conv_id)["agentId"] == "bob")
    alice = Agent(server.url, "alice", "alice")
    alice.connect()
    listing = alice.client.wait_notification(lambda m: m.get("type") == "agent.ConversationList")
    assert conv_id not in [c["convId"] for c in listing["body"]["conversations"]]
    for type_, body in [
        ("call.Invite", {"conversationId": conv_id, "mode": "VOICE_CALL"}),
        ("agent.Open", {"conversationId": conv_id}),
        ("agent.Take", {"conversationId": conv_id}),
        ("ms.PublishEvent", {"conversationId": conv_id, "event": {"type": "ContentEvent", "message": "hi"}}),
    ]:
        resp = alice.client.request(type_, body)
        assert resp["code"] == 403 and resp["body"]["error"]["code"] == "NOT_ASSIGNED", (type_, resp)
    for c in (bob, alice, consumer):
        c.close()


def test_an_agent_stops_seeing_a_queued_conversation_another_agent_takes(server: Any) -> None:
    consumer = Consumer(server.url)
    consumer.connect()
    conv_id = consumer.open_conversation("Queued")
    alice = Agent(server.url, "alice", "alice")
    alice.connect(available=False)
    assert alice.client.request("agent.Open", {"conversationId": conv_id})["code"] == 200  # a look at the queue
    consumer.say(conv_id, "before")
    alice.client.wait_notification(message_from("before"))
    bob = Agent(server.url, "bob", "bob")
    bob.connect(available=False)
    bob.take_and_open(conv_id)
    gone = alice.client.wait_notification(
        lambda m: m.get("type") == "agent.ConversationChange" and m["body"]["visible"] is False
    )
    assert gone["body"]["conversation"] == {"convId": conv_id, "agentId": "bob", "state": "OPEN"}
    consumer.say(conv_id, "after, for Bob only")
    bob.client.wait_notification(message_from("after, for Bob only"))
    assert alice.client.request("ping")["code"] == 200  # anything already sent to Alice has arrived by now
    assert not any("after, for Bob only" in json.dumps(m) for m in alice.client.notifications)
    for c in (consumer, alice, bob):
        c.close()


def test_another_consumer_cannot_read_or_write_the_conversation(server: Any) -> None:
    owner = Consumer(server.url)
    owner.connect()
    conv_id = owner.open_conversation("Owner")
    owner.say(conv_id, "my secret order number 4711")
    stranger = Consumer(server.url)
    stranger.connect()
    stranger.client.request("cqm.SubscribeExConversations", {})
    snapshot = stranger.client.wait_notification(change_notifications)
    assert snapshot["body"]["changes"] == []
    for type_, body in [
        ("ms.SubscribeMessagingEvents", {"conversationId": conv_id}),
        ("ms.PublishEvent", {"conversationId": conv_id, "event": {"type": "ContentEvent", "message": "boo"}}),
        ("cm.CloseConversation", {"conversationId": conv_id}),
    ]:
        resp = stranger.client.request(type_, body)
        assert resp["code"] == 403, resp
        assert resp["body"]["error"] == {"code": "NOT_ALLOWED", "field": "body.conversationId",
                                         "message": "body.conversationId: not your conversation"}
    assert not any("4711" in json.dumps(m) for m in stranger.client.notifications)
    # a forged token is refused at InitConnection
    forged = Consumer(server.url)
    forged.token = owner.token[:-4] + "AAAA"
    resp = forged.connect()
    assert resp["code"] == 401 and resp["body"]["error"]["code"] == "TOKEN_INVALID"
    for c in (owner, stranger, forged):
        c.close()


@pytest.mark.parametrize("server", [{"LPCALL_MAX_MESSAGE_LENGTH": 50, "LPCALL_MAX_FRAME_BYTES": 4096}], indirect=True)
def test_bad_frames_get_an_error_and_everything_stays_up(server: Any) -> None:
    other = Consumer(server.url)
    other.connect()
    other_conv = other.open_conversation("Other")
    consumer = Consumer(server.url)
    consumer.connect()
    conv_id = consumer.open_conversation("Me")
    ws = consumer.client.ws

    def raw(frame: Any) -> dict[str, Any]:
        ws.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))
        return consumer.client.wait_notification(lambda m: m.get("kind") == "resp" and m.get("code") != 200)

    def err(resp: dict[str, Any]) -> dict[str, Any]:
        assert resp["type"] == "GenericResponse"
        return resp["body"]["error"]  # type: ignore[no-any-return]

    bad = raw("{not json")
    assert bad["code"] == 400 and bad["reqId"] is None and err(bad)["field"] == "(frame)" and "JSON" in err(bad)["message"]
    bad = raw("[" * 2000 + "]" * 2000)
    assert bad["code"] == 400 and err(bad)["field"] == "(frame)" and "nested" in err(bad)["message"]
    bad = raw(b"\x00\x01")
    assert bad["code"] == 400 and "binary" in err(bad)["message"]
    bad = raw({"id": "a1", "body": {}})
    assert bad["code"] == 400 and bad["reqId"] == "a1" and err(bad)["field"] == "type"
    bad = raw({"id": "a2", "type": "ms.Nope"})
    assert err(bad)["field"] == "type" and "ms.Nope" in err(bad)["message"]
    bad = raw({"id": "a3", "type": "ms.PublishEvent", "body": {"conversationId": conv_id}})
    assert err(bad)["field"] == "body.event" and bad["reqId"] == "a3"
    bad = raw({"id": "a4", "type": "ms.PublishEvent",
               "body": {"conversationId": conv_id, "event": {"type": "ContentEvent", "message": 42}}})
    assert err(bad)["field"] == "body.event.message"
    bad = raw({"id": "a5", "type": "ms.PublishEvent",
               "body": {"conversationId": "no-such-conv", "event": {"type": "ContentEvent", "message": "x"}}})
    assert bad["code"] == 404 and err(bad)["code"] == "NOT_FOUND" and err(bad)["field"] == "body.conversationId"
    bad = raw({"id": "a6", "type": "ms.PublishEvent",
               "body": {"conversationId": conv_id, "event": {"type": "ContentEvent", "message": "x" * 51}}})
    assert bad["code"] == 413 and err(bad)["code"] == "TOO_LARGE" and err(bad)["field"] == "body.event.message"
    assert "LPCALL_MAX_MESSAGE_LENGTH" in err(bad)["message"]
    bad = raw(json.dumps({"id": "a7", "type": "ping", "pad": "p" * 5000}))
    assert bad["code"] == 413 and err(bad)["field"] == "(frame)" and "LPCALL_MAX_FRAME_BYTES" in err(bad)["message"]
    bad = raw({"id": True, "type": "ping"})
    assert err(bad)["field"] == "id"

    # The socket, this conversation and the other one are all still working.
    assert consumer.say(conv_id, "still here")["code"] == 200
    consumer.client.wait_notification(message_from("still here"))
    assert other.say(other_conv, "me too")["code"] == 200
    other.client.wait_notification(message_from("me too"))
    pong = consumer.client.request("ping")
    assert pong["code"] == 200 and pong["type"] == "pong"
    consumer.close()
    other.close()


def test_requests_before_init_connection_are_refused(server: Any) -> None:
    with connect(server.ws_url + "/lpcall/ws/consumer", origin=server.url) as ws:
        ws.send(json.dumps({"id": 1, "type": "cm.ConsumerRequestConversation", "body": {}}))
        resp = json.loads(ws.recv(timeout=10))
        assert resp["code"] == 401 and resp["body"]["error"]["code"] == "NOT_AUTHENTICATED" and resp["reqId"] == 1
        ws.send(json.dumps({"id": 2, "type": "InitConnection", "headers": [{"type": ".ams.headers.ClientProperties"}]}))
        resp = json.loads(ws.recv(timeout=10))
        assert resp["code"] == 400 and resp["body"]["error"]["field"] == "headers"


def test_foreign_origin_and_anonymous_agent_are_closed_1008(server: Any) -> None:
    for path in ("/lpcall/ws/consumer", "/lpcall/ws/agent"):
        with connect(server.ws_url + path, origin="http://evil.example") as ws:
            with pytest.raises(ConnectionClosed) as exc:
                ws.recv(timeout=10)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1008
    with connect(server.ws_url + "/lpcall/ws/agent", origin=server.url) as ws:  # not logged in
        first = json.loads(ws.recv(timeout=10))
        assert first["code"] == 401 and first["body"]["error"]["code"] == "NOT_AUTHENTICATED"
        with pytest.raises(ConnectionClosed) as exc:
            ws.recv(timeout=10)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1008


def test_agent_pages_need_login_and_csrf(server: Any) -> None:
    import requests

    s = requests.Session()
    page = s.get(server.url + "/lpcall/agent/", allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].endswith("/lpcall/agent/login")
    refused = s.post(server.url + "/lpcall/agent/login", data={"username": "bob", "password": "bob"})
    assert refused.status_code == 400 and "CSRF" in refused.text
    agent = Agent(server.url, "bob", "bob")
    assert agent.http.get(server.url + "/lpcall/agent/").status_code == 200
    no_token = agent.http.post(server.url + "/lpcall/agent/logout")
    assert no_token.status_code == 400
    assert agent.http.get(server.url + "/lpcall/agent/", allow_redirects=False).status_code == 200


@pytest.mark.parametrize("server", [{"LPCALL_HEARTBEAT_INTERVAL": 2.0}], indirect=True)
def test_dead_socket_is_noticed(server: Any) -> None:
    """A client that stops answering WebSocket pings is dropped (two heartbeats) and loses its availability."""
    agent = Agent(server.url, "bob", "bob")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        (
            f"GET /lpcall/ws/agent HTTP/1.1\r\nHost: localhost:{server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: {agent.cookie()}\r\n\r\n"
        ).encode()
    )
    sock.settimeout(20)
    handshake = b""
    while b"\r\n\r\n" not in handshake:  # the frame must not share a read with the HTTP request
        handshake += sock.recv(4096)
    assert handshake.startswith(b"HTTP/1.1 101")
    sub = json.dumps({"id": "1", "type": "agent.Subscribe", "body": {"available": True}}).encode()
    mask = b"\x01\x02\x03\x04"
    sock.sendall(bytes([0x81, 0x80 | len(sub)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(sub)))
    service = server.app.extensions["lpcall"].conversations
    wait_for(lambda: "bob" in service.available_agents(), timeout=10, message="agent available")
    received = handshake
    while True:  # we never answer the server's pings
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
        if b"Ping/Pong timeout" in received:
            break
    assert b"Ping/Pong timeout" in received
    sock.close()
    wait_for(lambda: "bob" not in service.available_agents(), timeout=10, message="availability released")


def test_transcript_has_no_gaps_or_duplicates_when_subscribing_during_a_burst(server: Any) -> None:
    import threading

    consumer = Consumer(server.url)
    consumer.connect()
    conv_id = consumer.open_conversation("Burst")
    sender = Consumer(server.url)  # a second tab of the same consumer sends the burst
    sender.token, sender.consumer_id = consumer.token, consumer.consumer_id
    sender.connect()

    def burst() -> None:
        for i in range(60):
            assert sender.say(conv_id, f"b{i}")["code"] == 200

    thread = threading.Thread(target=burst)
    thread.start()
    watcher = Consumer(server.url)
    watcher.token, watcher.consumer_id = consumer.token, consumer.consumer_id
    watcher.connect()
    watcher.client.request("ms.SubscribeMessagingEvents", {"conversationId": conv_id, "fromSeq": 0})
    thread.join(30)
    seen: list[int] = []

    def collect(msg: dict[str, Any]) -> bool:
        if msg.get("type") == "ms.MessagingEventNotification":
            seen.extend(e["sequence"] for e in msg["body"]["events"])
        return len(seen) >= 60

    watcher.client.wait_notification(collect, timeout=20)
    assert seen == list(range(60))
    for c in (consumer, sender, watcher):
        c.close()


def test_one_socket_cannot_pile_up_conversation_subscriptions(server: Any) -> None:
    """Each cqm.SubscribeExConversations used to add a store subscription with no limit (found by the
    fuzzer's review): 200 on one socket now keep at most MAX_META_SUBSCRIPTIONS, the newest still works."""
    from flask_lpcall.state import get_state
    from flask_lpcall.store.keys import ch_consumer

    consumer = Consumer(server.url)
    consumer.connect()
    subs = [consumer.client.request("cqm.SubscribeExConversations", {"convState": ["OPEN"]}) for _ in range(200)]
    assert all(s["code"] == 200 for s in subs)
    store = get_state(server.app).store
    assert len(store._subs.get(ch_consumer(consumer.consumer_id), [])) <= 4
    newest = subs[-1]["body"]["subscriptionId"]
    consumer.client.notifications.clear()
    consumer.open_conversation("Vera")
    consumer.client.wait_notification(lambda m: m.get("type") == "cqm.ExConversationChangeNotification"
                                      and m["body"]["subscriptionId"] == newest and m["body"]["changes"])
