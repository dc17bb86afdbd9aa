"""The call manager and the signaling socket over a real server (no browser)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from callkit import BOB, call_keys, cobrowse_payload, conversation, make_app, services, system_keys
from support import wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from flask_lpcall import signals
from flask_lpcall.errors import InvalidStateError, NotAllowedError, NotFoundError
from flask_lpcall.state import get_state


class Peer:
    """A signaling participant: a websocket plus the frames it received."""

    def __init__(self, url: str, token: str, origin: str | None = None) -> None:
        headers = {"Origin": origin} if origin else None
        self.ws = connect(f"{url}/lpcall/ws/call?token={quote(token)}", additional_headers=headers, open_timeout=5, close_timeout=1)
        self.frames: list[dict[str, Any]] = []

    def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        for i, f in enumerate(self.frames):
            if f["type"] == kind:
                return self.frames.pop(i)
        while True:
            frame = json.loads(self.ws.recv(timeout=timeout))
            if frame["type"] == kind:
                return frame
            self.frames.append(frame)

    def send(self, frame: Any) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def close(self) -> None:
        self.ws.close()


def _assert_closed_1008(peer: Peer) -> None:
    """No frame follows; the close frame says 1008. (Werkzeug's dev server writes an HTTP
    response after the close frame, which can keep the client from parsing it: then the
    socket just ends.)"""
    with pytest.raises((ConnectionClosed, TimeoutError)) as exc:
        peer.ws.recv(timeout=1.5)
    if isinstance(exc.value, ConnectionClosed) and exc.value.rcvd is not None:
        assert exc.value.rcvd.code == 1008


@pytest.fixture
def app() -> Any:
    return make_app(LPCALL_INVITE_TTL=60, LPCALL_RECONNECT_GRACE=30)


def _invite_accept(app: Any, mode: str = "VIDEO_CALL") -> tuple[Any, dict[str, Any], dict[str, Any]]:
    calls, _ = services(app)
    setup = conversation(app)
    agent_info = calls.invite(BOB, setup.conv_id, mode)
    consumer_info = calls.accept(setup.consumer_id, cobrowse_payload(agent_info))
    return setup, agent_info, consumer_info


def test_invite_accept_hangup_notifies_writes_transcript_and_empties_store(app: Any) -> None:
    calls, convs = services(app)
    got: list[tuple[str, dict[str, Any]]] = []

    def receiver(name: str) -> Any:
        return lambda sender, call: got.append((name, call))

    keep = [receiver(n) for n in ("invited", "accepted", "ended")]
    signals.call_invited.connect(keep[0], app)
    signals.call_accepted.connect(keep[1], app)
    signals.call_ended.connect(keep[2], app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    assert info["role"] == "agent" and info["serviceId"].startswith(setup.consumer_id + "#")
    assert convs.get(setup.conv_id)["cobrowse"]["metaData"]["sessionState"] == "INVITED"
    with pytest.raises(NotAllowedError) as exc:
        calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    assert exc.value.code == "CALL_IN_PROGRESS"
    with pytest.raises(NotFoundError):
        calls.accept("someone-else", cobrowse_payload(info))
    calls.accept(setup.consumer_id, cobrowse_payload(info))
    assert convs.get(setup.conv_id)["cobrowse"]["metaData"]["sessionState"] == "ACCEPTED"
    calls.hangup("agent", BOB.id, info["serviceId"])
    assert convs.get(setup.conv_id)["cobrowse"] == {
        "dialogId": convs.get(setup.conv_id)["cobrowse"]["dialogId"],
        "dialogType": "OTHER",
        "channelType": "COBROWSE",
        "metaData": {"sessionState": "CLOSED"},
    }
    assert system_keys(app, setup.conv_id)[-3:] == ["system.invited", "system.accepted", "system.ended"]
    texts = [e["event"]["message"] for e in convs.events(setup.conv_id) if e.get("role") == "SYSTEM"]
    assert texts[-3:-1] == ["Bob sent a video call invitation", "The video call invitation was accepted"]
    assert re.fullmatch(r"The video call ended after \d+:\d\d", texts[-1]), texts[-1]
    assert [n for n, _ in got] == ["invited", "accepted", "ended"]
    assert got[-1][1]["closeReason"] == "hangup_agent" and got[-1][1]["endedBy"] == "agent"
    assert call_keys(app) == []


def test_invite_is_refused_without_cobrowse_feature_or_when_switched_off() -> None:
    app = make_app(LPCALL_VIDEO_ENABLED=False)
    calls, convs = services(app)
    setup = conversation(app)
    with pytest.raises(NotAllowedError) as exc:
        calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    assert exc.value.code == "MODE_DISABLED"
    doc, _ = convs.open("no-cobrowse-consumer", visitor_name="X", features=[])
    convs.take(doc["convId"], BOB.id, BOB.name)
    with pytest.raises(NotAllowedError) as exc:
        calls.invite(BOB, doc["convId"], "VOICE_CALL")
    assert exc.value.code == "NO_COBROWSE"


def test_decline_cancel_and_expiry_close_with_their_system_message(app: Any) -> None:
    calls, _ = services(app)
    s1 = conversation(app)
    i1 = calls.invite(BOB, s1.conv_id, "VOICE_CALL")
    calls.decline(s1.consumer_id, cobrowse_payload(i1))
    s2 = conversation(app)
    i2 = calls.invite(BOB, s2.conv_id, "VIDEO_CALL")
    calls.cancel(BOB, i2["serviceId"])
    with pytest.raises(NotFoundError):
        calls.accept(s2.consumer_id, cobrowse_payload(i2))
    s3 = conversation(app)
    i3 = calls.invite(BOB, s3.conv_id, "VIDEO_CALL")
    closed = calls.sweep(now=i3["expires"] + 0.1)
    assert [c.close_reason for c in closed] == ["expired"]
    assert system_keys(app, s1.conv_id)[-1] == "system.declined"
    assert system_keys(app, s2.conv_id)[-1] == "system.cancelled"
    assert system_keys(app, s3.conv_id)[-1] == "system.expired"
    assert call_keys(app) == []


def test_accept_with_the_wrong_mode_or_twice(app: Any) -> None:
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    with pytest.raises(Exception) as exc:
        calls.accept(setup.consumer_id, cobrowse_payload(info, mode="VIDEO_CALL"))
    assert getattr(exc.value, "field", None) == "mode"
    first = calls.accept(setup.consumer_id, cobrowse_payload(info))
    again = calls.accept(setup.consumer_id, cobrowse_payload(info))
    assert first["serviceId"] == again["serviceId"] and again["role"] == "consumer"
    with pytest.raises(InvalidStateError):
        calls.cancel(BOB, info["serviceId"])


def test_http_api_accept_decline_active_resume(app: Any) -> None:
    calls, _ = services(app)
    client = app.test_client()
    setup = conversation(app)
    auth = {"Authorization": f"Bearer {setup.consumer_token}"}
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    assert client.get("/lpcall/api/call/active", headers=auth).json["call"]["sessionState"] == "INVITED"
    bad = client.post("/lpcall/api/call/accept", json={**cobrowse_payload(info), "ssid": ""}, headers=auth)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "ssid"
    assert client.post("/lpcall/api/call/accept", json=cobrowse_payload(info)).status_code == 401
    stranger = {"Authorization": "Bearer " + get_state(app).signer.sign("consumer", {"cid": "x", "vid": "y"})}
    assert client.post("/lpcall/api/call/accept", json=cobrowse_payload(info), headers=stranger).status_code == 404
    ok = client.post("/lpcall/api/call/accept", json=cobrowse_payload(info), headers=auth)
    assert ok.status_code == 200, ok.json
    body = ok.json
    assert {"serviceId", "mode", "token", "iceServers", "iceTransportPolicy", "cameraOffAtStart", "role", "agentName"} <= set(body)
    assert body["role"] == "consumer" and body["agentName"] == "Bob" and body["iceTransportPolicy"] == "all"
    resumed = client.post("/lpcall/api/call/resume", json={"serviceId": info["serviceId"]}, headers=auth)
    assert resumed.status_code == 200 and resumed.json["serviceId"] == info["serviceId"]
    assert client.post("/lpcall/api/call/resume", json={"serviceId": info["serviceId"]}, headers=stranger).status_code == 404
    calls.hangup("consumer", setup.consumer_id, info["serviceId"])
    assert client.get("/lpcall/api/call/active", headers=auth).json == {"call": None}
    gone = client.post("/lpcall/api/call/resume", json={"serviceId": info["serviceId"]}, headers=auth)
    assert gone.status_code == 404 and gone.json["error"]["code"] == "NOT_FOUND"
    s2 = conversation(app)
    i2 = calls.invite(BOB, s2.conv_id, "VOICE_CALL")
    declined = client.post(
        "/lpcall/api/call/decline", json=cobrowse_payload(i2), headers={"Authorization": f"Bearer {s2.consumer_token}"}
    )
    assert declined.json == {"serviceId": i2["serviceId"], "sessionState": "CLOSED"}
    assert call_keys(app) == []


def test_signaling_relays_between_the_two_participants(app: Any, live_server: Any) -> None:
    server = live_server(app)
    _, agent_info, consumer_info = _invite_accept(app)
    agent = Peer(server.ws_url, agent_info["token"])
    joined = agent.next("joined")
    assert joined["polite"] is False and joined["peerPresent"] is False and joined["role"] == "agent"
    consumer = Peer(server.ws_url, consumer_info["token"])
    cj = consumer.next("joined")
    assert cj["polite"] is True and cj["peerPresent"] is True and cj["mode"] == "VIDEO_CALL"
    assert agent.next("peer-joined")["role"] == "consumer"
    agent.send({"type": "description", "description": {"type": "offer", "sdp": "v=0 agent"}})
    got = consumer.next("description")
    assert got["from"] == "agent" and got["description"]["sdp"] == "v=0 agent"
    consumer.send({"type": "candidate", "candidate": None})
    assert agent.next("candidate") == {"type": "candidate", "candidate": None, "from": "consumer"}
    consumer.send({"type": "state", "muted": True, "cameraOff": False})
    assert agent.next("state")["muted"] is True
    consumer.send({"type": "ping"})
    assert consumer.next("pong") == {"type": "pong"}
    consumer.send({"type": "connected"})
    wait_for(lambda: services(app)[0].get(agent_info["serviceId"]).connected_ts, timeout=5)
    consumer.send({"type": "hangup"})
    for peer in (agent, consumer):
        closed = peer.next("closed")
        assert closed["reason"] == "hangup_consumer" and closed["by"] == "consumer"
    wait_for(lambda: call_keys(app) == [], timeout=5, message="call keys gone")


def test_malformed_frames_get_an_error_and_the_call_continues(app: Any, live_server: Any) -> None:
    server = live_server(app)
    _, agent_info, consumer_info = _invite_accept(app)
    agent = Peer(server.ws_url, agent_info["token"])
    consumer = Peer(server.ws_url, consumer_info["token"])
    agent.next("joined")
    consumer.next("joined")
    cases = [
        ("not json", "(frame)"),
        ("[1, 2]", "(frame)"),
        ({"type": "teleport"}, "type"),
        ({"type": "description", "description": {"type": "offer", "sdp": 5}}, "description.sdp"),
        ({"type": "state", "muted": "yes", "cameraOff": False}, "muted"),
        ({"type": "failure", "id": "BORED"}, "id"),
        ({"type": "candidate", "candidate": {"candidate": "x", "sdpMLineIndex": -1}}, "candidate.sdpMLineIndex"),
        ("x" * 70000, "(frame)"),
    ]
    for frame, field in cases:
        consumer.send(frame)
        err = consumer.next("error")
        assert err["field"] == field, (frame if len(str(frame)) < 100 else "big", err)
        assert err["message"]
    consumer.send({"type": "description", "description": {"type": "answer", "sdp": "still here"}})
    assert agent.next("description")["description"]["sdp"] == "still here"
    assert services(app)[0].get(agent_info["serviceId"]).state == "ACCEPTED"


def test_a_stranger_with_the_service_id_cannot_join(app: Any, live_server: Any) -> None:
    server = live_server(app)
    setup, agent_info, _ = _invite_accept(app)
    sid = agent_info["serviceId"]
    signer = get_state(app).signer
    other_app_token = make_app(SECRET_KEY="another-secret").extensions["lpcall"].signer.sign("call", {"sid": sid, "role": "consumer", "uid": setup.consumer_id})
    forged = [
        "",
        sid,
        other_app_token,  # signed with another secret
        signer.sign("consumer", {"cid": setup.consumer_id, "vid": "v"}),  # a token for another purpose
        signer.sign("call", {"sid": sid, "role": "consumer", "uid": "intruder"}),
        signer.sign("call", {"sid": sid, "role": "observer", "uid": setup.consumer_id}),
    ]
    for token in forged:
        peer = Peer(server.ws_url, token)
        err = peer.next("error")
        assert err["code"] == "TOKEN_INVALID"
        _assert_closed_1008(peer)
    assert services(app)[0].get(sid).joined == []


def test_a_foreign_origin_is_refused(app: Any, live_server: Any) -> None:
    server = live_server(app)
    _, agent_info, _ = _invite_accept(app)
    peer = Peer(server.ws_url, agent_info["token"], origin="https://evil.example")
    _assert_closed_1008(peer)
    ok = Peer(server.ws_url, agent_info["token"], origin=server.url)
    assert ok.next("joined")["role"] == "agent"


def test_expiry_and_grace_close_the_call_for_the_sockets(live_server: Any) -> None:
    app = make_app(LPCALL_INVITE_TTL=1, LPCALL_RECONNECT_GRACE=1)
    server = live_server(app)
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    agent = Peer(server.ws_url, info["token"])
    agent.next("joined")
    assert agent.next("closed", timeout=10)["reason"] == "expired"
    assert system_keys(app, setup.conv_id)[-1] == "system.expired"
    # grace: the consumer's socket goes away and does not come back
    _, agent_info, consumer_info = _invite_accept(app)
    agent = Peer(server.ws_url, agent_info["token"])
    consumer = Peer(server.ws_url, consumer_info["token"])
    agent.next("joined")
    consumer.next("joined")
    consumer.close()
    left = agent.next("peer-left")
    assert left["role"] == "consumer" and left["graceUntil"] > 0
    closed = agent.next("closed", timeout=10)
    assert closed["reason"] == "consumer_disconnected"
    wait_for(lambda: call_keys(app) == [], timeout=5)


def test_durations_in_system_messages() -> None:
    from flask_lpcall.core.callmanager import format_duration

    assert [format_duration(n) for n in (0, 5, 65, 600, 3599, 3600, 3725)] == ["0:00", "0:05", "1:05", "10:00", "59:59", "1:00:00", "1:02:05"]


def test_before_the_accept_the_consumer_only_listens(app: Any, live_server: Any) -> None:
    """PROTOCOL §5 "Before the Accept": the agent's offer reaches a listening consumer ahead, but
    nothing of the consumer's media negotiation reaches the agent before its `accept` frame."""
    server = live_server(app)
    calls, _ = services(app)
    setup = conversation(app)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {setup.consumer_token}"}
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    payload = cobrowse_payload(info)
    # the join info while invited: only for this visitor, only for the invitation's mode
    stranger = {"Authorization": "Bearer " + get_state(app).signer.sign("consumer", {"cid": "x", "vid": "y"})}
    assert client.post("/lpcall/api/call/prepare", json=payload, headers=stranger).status_code == 404
    wrong = client.post("/lpcall/api/call/prepare", json={**payload, "mode": "VOICE_CALL"}, headers=auth)
    assert wrong.status_code == 400 and wrong.json["error"]["field"] == "mode"
    for body, field in (({**payload, "ssid": ""}, "ssid"), ({**payload, "extra": 1}, "extra"), ("not json", "(body)")):
        bad = client.post("/lpcall/api/call/prepare", **({"json": body} if isinstance(body, dict) else {"data": body}), headers=auth)
        assert bad.status_code == 400 and bad.json["error"]["field"] == field, bad.json
    assert client.post("/lpcall/api/call/prepare", json=payload).status_code == 401  # no consumer token
    prepared = client.post("/lpcall/api/call/prepare", json=payload, headers=auth)
    assert prepared.status_code == 200 and prepared.json["sessionState"] == "INVITED"
    agent = Peer(server.ws_url, info["token"])
    assert agent.next("joined")["peerPresent"] is False
    listener = Peer(server.ws_url, prepared.json["token"])
    joined = listener.next("joined")
    assert joined["sessionState"] == "INVITED" and joined["peerPresent"] is True
    assert agent.next("peer-joined")["role"] == "consumer"
    assert calls.is_present(info["serviceId"], "consumer") is False  # a listener holds no place yet
    agent.send({"type": "description", "description": {"type": "offer", "sdp": "v=0 agent"}})
    assert listener.next("description")["description"]["sdp"] == "v=0 agent"
    for frame in (
        {"type": "description", "description": {"type": "answer", "sdp": "v=0 too early"}},
        {"type": "candidate", "candidate": None},
        {"type": "connected"},
        {"type": "failure", "id": "NO_CAMERA_ACCESS"},
    ):
        listener.send(frame)
        error = listener.next("error")
        assert error["code"] == "NOT_ACCEPTED" and error["field"] == "type", frame
    # a bad Accept names the field; the agent cannot accept; the call goes on
    listener.send({"type": "accept", "payload": {**payload, "ssid": ""}})
    assert listener.next("error")["field"] == "payload.ssid"
    other = {**payload, "serviceId": setup.consumer_id + "#other"}
    listener.send({"type": "accept", "payload": other})
    assert listener.next("error")["field"] == "payload.serviceId"
    agent.send({"type": "accept", "payload": payload})
    assert agent.next("error")["code"] == "NOT_ALLOWED"
    assert calls.get(info["serviceId"]).state == "INVITED"
    listener.send({"type": "ping"})
    assert listener.next("pong") == {"type": "pong"}
    # the Accept on the socket, then the answer right behind it: in order, both arrive
    listener.send({"type": "accept", "payload": payload})
    listener.send({"type": "description", "description": {"type": "answer", "sdp": "v=0 consumer"}})
    assert agent.next("session")["sessionState"] == "ACCEPTED"
    assert agent.next("peer-joined") == {"type": "peer-joined", "role": "consumer", "accepted": True}
    answer = agent.next("description")
    assert answer["from"] == "consumer" and answer["description"]["sdp"] == "v=0 consumer"
    assert listener.next("session")["sessionState"] == "ACCEPTED"
    assert calls.get(info["serviceId"]).state == "ACCEPTED"
    assert calls.is_present(info["serviceId"], "consumer") is True
    assert "system.accepted" in system_keys(app, setup.conv_id)
    assert [f for f in agent.frames if f.get("from") == "consumer"] == []  # nothing refused got through
    listener.send({"type": "hangup"})
    assert agent.next("closed")["reason"] == "hangup_consumer"
    wait_for(lambda: call_keys(app) == [], timeout=5, message="call keys gone")


def test_a_second_tab_listening_stops_when_the_first_accepts(app: Any, live_server: Any) -> None:
    server = live_server(app)
    calls, _ = services(app)
    setup = conversation(app)
    info = calls.invite(BOB, setup.conv_id, "VOICE_CALL")
    token = calls.token_for(calls.get(info["serviceId"]), "consumer")
    tab_a = Peer(server.ws_url, token)
    tab_b = Peer(server.ws_url, token)
    for tab in (tab_a, tab_b):
        assert tab.next("joined")["sessionState"] == "INVITED"
    tab_a.send({"type": "accept", "payload": cobrowse_payload(info)})
    assert tab_a.next("session")["sessionState"] == "ACCEPTED"
    assert tab_b.next("session")["sessionState"] == "ACCEPTED"  # tab B's engine stops on this
    # the agent joins after a listener: the listener's `listening` tells it someone waits for its offer
    s3 = conversation(app)
    i3 = calls.invite(BOB, s3.conv_id, "VIDEO_CALL")
    early = Peer(server.ws_url, calls.token_for(calls.get(i3["serviceId"]), "consumer"))
    early.next("joined")
    late_agent = Peer(server.ws_url, i3["token"])
    assert late_agent.next("joined")["peerPresent"] is False  # a listener holds no place
    assert early.next("peer-joined")["role"] == "agent"
    early.send({"type": "listening"})
    assert late_agent.next("peer-joined") == {"type": "peer-joined", "role": "consumer"}
    late_agent.send({"type": "listening"})  # meaningless from the agent: ignored, nothing relayed
    late_agent.send({"type": "ping"})
    assert late_agent.next("pong") == {"type": "pong"}
    assert [f for f in early.frames if f["type"] == "peer-joined"] == []
    # an invitation that ends while a consumer only listens: the listener learns it too
    s2 = conversation(app)
    i2 = calls.invite(BOB, s2.conv_id, "VOICE_CALL")
    listener = Peer(server.ws_url, calls.token_for(calls.get(i2["serviceId"]), "consumer"))
    listener.next("joined")
    calls.decline(s2.consumer_id, cobrowse_payload(i2))
    assert listener.next("closed")["reason"] == "declined"


def test_joined_is_the_first_frame_even_when_the_peer_is_faster(app: Any, live_server: Any) -> None:
    """A peer frame that reaches the bus while the server is still joining waits behind `joined`."""
    store = get_state(app).store
    real_subscribe = store.subscribe

    def subscribe_then_race(ch: str, callback: Any) -> Any:
        sub = real_subscribe(ch, callback)
        if ch.endswith(":consumer"):  # the agent's candidate lands right after the subscription
            store.publish(ch, {"type": "candidate", "candidate": None, "from": "agent"})
        return sub

    store.subscribe = subscribe_then_race  # type: ignore[method-assign]
    server = live_server(app)
    _, _, consumer_info = _invite_accept(app)
    consumer = Peer(server.ws_url, consumer_info["token"])
    first = json.loads(consumer.ws.recv(timeout=5))
    assert first["type"] == "joined", first
    assert consumer.next("candidate")["from"] == "agent"
    consumer.close()
