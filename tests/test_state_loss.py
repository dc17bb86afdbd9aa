"""State loss on the memory store (issue 14, finding 9): the pieces the Redis test drives end to end."""

from __future__ import annotations

from typing import Any

from flask_lpcall.core.conversations import STATE_LOST, ConversationService
from flask_lpcall.core.presence import BEAT_MISSING, BEAT_OK, BEAT_REPLACED, Presence
from flask_lpcall.store import MemoryStore
from flask_lpcall.texts import EN


def _wipe(store: MemoryStore) -> None:
    store.delete(*store.keys(""))  # what a Redis restarted empty or FLUSHALL leaves


def test_a_watched_conversation_that_vanishes_is_closed_with_state_lost_and_pushed_once() -> None:
    store = MemoryStore()
    svc = ConversationService(store, EN)
    doc, _ = svc.open("c1", visitor_name="Vera", features=["CO_BROWSE"])
    svc.take(doc["convId"], "bob", "Bob")
    svc.set_cobrowse_dialog(doc["convId"], {"dialogId": "d1", "dialogType": "OTHER", "channelType": "COBROWSE",
                                            "metaData": {"sessionState": "ACCEPTED"}})
    handle = svc.watch(doc["convId"])
    pushed: list[Any] = []
    store.subscribe("consumer:c1", pushed.append)
    assert svc.check_lost() == []  # nothing lost: nothing pushed
    assert pushed == []
    _wipe(store)
    assert svc.check_lost() == [doc["convId"]]
    assert svc.check_lost() == []  # told once
    [message] = pushed
    details = svc.conversation_details(message["conversation"])
    assert details["state"] == "CLOSE" and details["closeReason"] == STATE_LOST
    assert details["dialogs"][1]["metaData"] == {"sessionState": "CLOSED"}  # the invitation / call is over
    assert svc.summary(message["conversation"])["closeReason"] == STATE_LOST
    assert svc.require(doc["convId"])["state"] == "CLOSE"  # a late request gets "closed", not "unknown"
    handle.close()


def test_a_closed_conversation_is_not_reported_lost() -> None:
    store = MemoryStore()
    svc = ConversationService(store, EN)
    doc, _ = svc.open("c1")
    svc.close(doc["convId"])
    svc.watch(doc["convId"]).close()
    handle = svc.watch(doc["convId"])
    _wipe(store)
    assert svc.check_lost() == []
    handle.close()


def test_presence_beat_tells_missing_from_replaced() -> None:
    store = MemoryStore()
    p = Presence(store, heartbeat=1.0, grace=5.0)
    p.claim("s", "consumer", "c1", "tab1")
    assert p.beat_status("s", "consumer", "c1") == BEAT_OK
    assert p.beat_status("s", "consumer", "other") == BEAT_REPLACED
    _wipe(store)
    assert p.beat_status("s", "consumer", "c1") == BEAT_MISSING
    assert p.beat("s", "consumer", "c1")  # missing is not "replaced"
