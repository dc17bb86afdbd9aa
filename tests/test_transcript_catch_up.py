"""ConversationService.catch_up (issue 14, finding 2): a live subscriber delivers a bus event with every
event it missed before it, from the transcript, and never one it already has."""

from __future__ import annotations

from flask_lpcall.core.conversations import ConversationService
from flask_lpcall.store import MemoryStore
from flask_lpcall.texts import EN


def test_an_event_published_ahead_of_earlier_ones_brings_them_along_and_they_are_not_repeated() -> None:
    svc = ConversationService(MemoryStore(), EN)
    doc, _ = svc.open("c1")
    posted = [svc.post(doc["convId"], "CONSUMER", "c1", f"m{i}") for i in range(4)]
    # the subscriber has 0 and the bus brings 3 first (two workers published out of order)
    got = svc.catch_up(doc["convId"], 1, posted[3])
    assert [(e["sequence"], e["event"]["message"]) for e in got] == [(1, "m1"), (2, "m2"), (3, "m3")]
    # 1 and 2 arrive late on the bus: the subscriber already has them
    assert svc.catch_up(doc["convId"], 4, posted[1]) == []
    assert svc.catch_up(doc["convId"], 4, posted[2]) == []
    # in order: just the event
    assert svc.catch_up(doc["convId"], 3, posted[3]) == [posted[3]]
    assert svc.catch_up(doc["convId"], 0, {"sequence": "x"}) == []
