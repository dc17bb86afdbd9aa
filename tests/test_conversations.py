"""ConversationService on the memory store: opening, routing, transcript, bus, COBROWSE dialog, permissions."""

from __future__ import annotations

from typing import Any

import pytest

from flask_lpcall.config import Settings
from flask_lpcall.core.agents import PERM_VIDEO, PERM_VOICE, Agent, call_buttons, check_can_invite
from flask_lpcall.core.conversations import ConversationService
from flask_lpcall.errors import InvalidStateError, NotAllowedError, NotFoundError
from flask_lpcall.store import MemoryStore
from flask_lpcall.texts import EN


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def svc(store: MemoryStore) -> ConversationService:
    return ConversationService(store, EN)


def collect(store: MemoryStore, channel: str) -> list[Any]:
    got: list[Any] = []
    store.subscribe(channel, got.append)
    return got


def test_open_returns_the_consumers_open_conversation(svc: ConversationService) -> None:
    doc, created = svc.open("c1", visitor_name="Vera", features=["CO_BROWSE"])
    assert created and doc["state"] == "OPEN" and doc["agentId"] is None and doc["features"] == ["CO_BROWSE"]
    again, created2 = svc.open("c1", visitor_name="Other", features=["CO_BROWSE"])
    assert not created2 and again["convId"] == doc["convId"]
    other, created3 = svc.open("c2")
    assert created3 and other["convId"] != doc["convId"]
    assert [d["convId"] for d in svc.for_consumer("c1")] == [doc["convId"]]


def test_transcript_sequences_system_messages_and_bus(svc: ConversationService, store: MemoryStore) -> None:
    doc, _ = svc.open("c1", visitor_name="Vera")
    conv_bus = collect(store, f"conv:{doc['convId']}")
    agents_bus = collect(store, "agents")
    e0 = svc.post(doc["convId"], "CONSUMER", "c1", "hello")
    svc.take(doc["convId"], "bob", "Bob")
    e2 = svc.post(doc["convId"], "AGENT", "bob", "hi <b>there</b>")
    events = svc.events(doc["convId"])
    assert [e["sequence"] for e in events] == [0, 1, 2]
    assert events[1]["role"] == "SYSTEM" and events[1]["systemKey"] == "system.agent_joined"
    assert events[1]["event"]["message"] == "Bob joined the conversation"
    assert e0["sequence"] == 0 and e2["event"]["message"] == "hi <b>there</b>"  # stored as given, escaped on output
    assert [m["event"]["sequence"] for m in conv_bus if m["type"] == "event"] == [0, 1, 2]
    assert agents_bus[-1] == {"type": "last", "conversationId": doc["convId"], "agentId": "bob",
                              "lastMessage": {"text": "hi <b>there</b>", "role": "AGENT", "ts": e2["serverTimestamp"],
                                              "sequence": 2}}
    assert svc.row(svc.get(doc["convId"]))["lastMessage"]["text"] == "hi <b>there</b>"
    assert svc.events(doc["convId"], 2)[0]["sequence"] == 2


def test_routing_to_available_agent_and_take_rules(svc: ConversationService) -> None:
    waiting, _ = svc.open("c1")
    assert waiting["agentId"] is None
    svc.set_available("alice", "Alice", "sock-a", True)  # the queue goes to the agent that becomes available
    assert svc.get(waiting["convId"])["agentId"] == "alice"
    routed, _ = svc.open("c2")
    assert routed["agentId"] == "alice"
    svc.set_available("bob", "Bob", "sock-b", True)
    third, _ = svc.open("c3")
    assert third["agentId"] == "bob"  # least loaded
    with pytest.raises(NotAllowedError) as exc:
        svc.take(third["convId"], "alice", "Alice")
    assert exc.value.code == "NOT_ASSIGNED"
    svc.set_available("alice", "Alice", "sock-a", False)
    svc.set_available("bob", "Bob", "sock-b", False)
    fourth, _ = svc.open("c4")
    assert fourth["agentId"] is None
    assert {d["convId"] for d in svc.for_agent("bob")} == {third["convId"], fourth["convId"]}
    with pytest.raises(NotFoundError):
        svc.take("nope", "bob", "Bob")


def test_close_and_post_after_close(svc: ConversationService) -> None:
    doc, _ = svc.open("c1")
    svc.close(doc["convId"])
    assert svc.get(doc["convId"])["state"] == "CLOSE"
    with pytest.raises(InvalidStateError):
        svc.post(doc["convId"], "CONSUMER", "c1", "still there?")
    assert svc.open("c1")[1] is True  # a new conversation after the old one closed


def test_cobrowse_dialog_in_change_notification(svc: ConversationService, store: MemoryStore) -> None:
    doc, _ = svc.open("c1", visitor_name="Vera", features=["CO_BROWSE"])
    svc.take(doc["convId"], "bob", "Bob")
    consumer_bus = collect(store, "consumer:c1")
    dialog = {
        "dialogId": "d1", "participants": ["c1", "bob"], "dialogType": "OTHER", "channelType": "COBROWSE",
        "metaData": {"serviceId": "c1#x", "mode": "VIDEO_CALL", "expires": 1.5e9, "sessionState": "INVITED", "dialogId": "d1"},
        "state": "OPEN", "creationTs": 1, "metaDataLastUpdateTs": 1,
    }
    svc.set_cobrowse_dialog(doc["convId"], dialog)
    change = svc.change(consumer_bus[-1]["conversation"])
    details = change["result"]["conversationDetails"]
    assert change["type"] == "UPSERT" and change["result"]["convId"] == doc["convId"]
    assert [d["channelType"] for d in details["dialogs"]] == ["MESSAGING", "COBROWSE"]
    assert details["dialogs"][1] == dialog
    assert details["dialogs"][0]["participants"] == ["c1", "bob"]
    assert svc.summary(svc.get(doc["convId"]))["call"] == {"serviceId": "c1#x", "mode": "VIDEO_CALL", "sessionState": "INVITED"}
    assert svc.add_system_message(doc["convId"], "system.invited", agent="Bob", mode="video call")["event"]["message"] == (
        "Bob sent a video call invitation"
    )
    assert svc.add_system_message("unknown", "system.invited") is None


ALICE = Agent(id="alice", name="Alice", permissions=frozenset({PERM_VOICE}))
BOB = Agent(id="bob", name="Bob", permissions=frozenset({PERM_VOICE, PERM_VIDEO}))


@pytest.mark.parametrize("agent", [ALICE, BOB], ids=["voice-only", "voice+video"])
@pytest.mark.parametrize("switch", [True, False], ids=["switch-on", "switch-off"])
@pytest.mark.parametrize("mode", ["VOICE_CALL", "VIDEO_CALL"])
def test_permission_matrix_pure(agent: Agent, switch: bool, mode: str) -> None:
    key = "LPCALL_VOICE_ENABLED" if mode == "VOICE_CALL" else "LPCALL_VIDEO_ENABLED"
    settings = Settings.from_config({key: switch})
    conv = {"convId": "x", "state": "OPEN", "agentId": agent.id, "features": ["CO_BROWSE"], "consumerId": "c"}
    has_perm = (PERM_VOICE if mode == "VOICE_CALL" else PERM_VIDEO) in agent.permissions
    assert call_buttons(agent, settings)[mode] is (switch and has_perm)
    if switch and has_perm:
        check_can_invite(agent, conv, mode, settings)
    else:
        with pytest.raises(NotAllowedError) as exc:
            check_can_invite(agent, conv, mode, settings)
        assert exc.value.code == ("MODE_DISABLED" if not switch else "NO_PERMISSION")


def test_check_can_invite_assignment_and_cobrowse() -> None:
    settings = Settings.from_config({})
    conv = {"convId": "x", "state": "OPEN", "agentId": "alice", "features": ["CO_BROWSE"], "consumerId": "c"}
    with pytest.raises(NotAllowedError) as exc:
        check_can_invite(BOB, conv, "VOICE_CALL", settings)
    assert exc.value.code == "NOT_ASSIGNED"
    with pytest.raises(NotAllowedError) as exc:
        check_can_invite(BOB, {**conv, "agentId": "bob", "features": []}, "VOICE_CALL", settings)
    assert exc.value.code == "NO_COBROWSE" and "CO_BROWSE" in str(exc.value)
    with pytest.raises(InvalidStateError):
        check_can_invite(BOB, {**conv, "agentId": "bob", "state": "CLOSE"}, "VOICE_CALL", settings)
    with pytest.raises(NotFoundError):
        check_can_invite(BOB, None, "VOICE_CALL", settings)


def test_messages_keep_the_conversation_alive(store: MemoryStore) -> None:
    svc = ConversationService(store, EN, ttl=60)
    doc, _ = svc.open("c1")
    store._expiry[f"conv:{doc['convId']}"] -= 59.5  # nearly idle for its whole TTL
    svc.post(doc["convId"], "CONSUMER", "c1", "still here")
    assert store._remaining(f"conv:{doc['convId']}") > 59
    assert svc.for_consumer("c1")[0]["convId"] == doc["convId"]


def test_agents_fanout_shares_one_store_subscription(store: MemoryStore, svc: ConversationService) -> None:
    a: list[Any] = []
    b: list[Any] = []
    ha = svc.agents_fanout.subscribe(a.append)
    hb = svc.agents_fanout.subscribe(b.append)
    assert len(store._subs["agents"]) == 1
    svc.open("c1")
    assert a and a == b
    ha.close()
    hb.close()
    assert "agents" not in store._subs
