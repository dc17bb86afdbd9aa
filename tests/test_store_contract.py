"""One contract for every store backend: MemoryStore and RedisStore (real redis-server) pass the same tests."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from servers import REDIS_SERVER, RedisServer, start_redis
from support import require, wait_for

from flask_lpcall.store import MemoryStore, Store, store_from_url
from flask_lpcall.store.redis import RedisStore


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require("redis-server", bool(shutil.which("redis-server")) or bool(REDIS_SERVER), "apt-get install redis-server")
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore()
    else:
        server = request.getfixturevalue("redis_server")
        server.client().flushdb()
        s = store_from_url(server.url)
        assert isinstance(s, RedisStore)
    yield s
    s.close()


def _k() -> str:
    return f"t:{uuid.uuid4().hex}"


# -- documents -------------------------------------------------------------------
def test_set_get_roundtrips_json(store: Store) -> None:
    key = _k()
    doc = {"a": 1, "b": [1, 2, {"c": None}], "ü": "ñ", "f": 1.5, "t": True}
    store.set(key, doc)
    assert store.get(key) == doc
    assert store.get(_k()) is None


def test_values_are_copies(store: Store) -> None:
    key = _k()
    doc = {"list": [1]}
    store.set(key, doc)
    doc["list"].append(2)
    got = store.get(key)
    assert got == {"list": [1]}
    got["list"].append(3)
    assert store.get(key) == {"list": [1]}


def test_non_json_values_are_refused(store: Store) -> None:
    with pytest.raises(TypeError):
        store.set(_k(), {"x": object()})
    with pytest.raises(TypeError):
        store.append(_k(), {1, 2})


def test_delete_many_and_missing(store: Store) -> None:
    a, b = _k(), _k()
    store.set(a, 1)
    store.set(b, 2)
    store.delete(a, b, _k())
    store.delete()
    assert store.get(a) is None and store.get(b) is None


def test_ttl_expires_and_expire_extends(store: Store) -> None:
    short, extended = _k(), _k()
    store.set(short, "x", ttl=0.3)
    store.set(extended, "y", ttl=0.3)
    store.expire(extended, 60)
    assert store.get(short) == "x"
    wait_for(lambda: store.get(short) is None, timeout=5, message="key expired")
    assert short not in store.keys("t:")
    assert store.get(extended) == "y"
    store.expire(_k(), 10)  # a missing key stays missing
    assert store.keys("t:") == [extended]


def test_set_without_ttl_clears_an_old_ttl(store: Store) -> None:
    key = _k()
    store.set(key, 1, ttl=0.3)
    store.set(key, 2)
    marker = _k()
    store.set(marker, 0, ttl=0.4)
    wait_for(lambda: store.get(marker) is None, timeout=5, message="marker expired")
    assert store.get(key) == 2


def test_update_creates_changes_and_deletes(store: Store) -> None:
    key = _k()
    assert store.update(key, lambda old: {"n": 1} if old is None else None) == {"n": 1}
    assert store.update(key, lambda old: {**old, "n": old["n"] + 1}) == {"n": 2}
    assert store.get(key) == {"n": 2}
    assert store.update(key, lambda old: None) is None
    assert store.get(key) is None


def test_update_keeps_remaining_ttl_unless_given(store: Store) -> None:
    kept, renewed = _k(), _k()
    store.set(kept, 1, ttl=0.4)
    store.set(renewed, 1, ttl=0.4)
    store.update(kept, lambda v: v + 1)
    store.update(renewed, lambda v: v + 1, ttl=60)
    wait_for(lambda: store.get(kept) is None, timeout=5, message="updated key kept its TTL")
    assert store.get(renewed) == 2


def test_touch_owned_changes_only_the_owners_document(store: Store) -> None:
    mine, theirs, gone = _k(), _k(), _k()
    doc = {"conn": "c1", "tab": None, "ts": 1764150000.125, "seen": 1764150000.125, "name": "Zoë"}
    store.set(mine, doc, ttl=0.4)
    store.set(theirs, {**doc, "conn": "c2"}, ttl=0.4)
    assert store.touch_owned(mine, "conn", "c1", {"seen": 1764150009.5}, ttl=60) == "ok"
    assert store.get(mine) == {**doc, "seen": 1764150009.5}  # every other field as it was, null and UTF-8 too
    assert store.touch_owned(theirs, "conn", "c1", {"seen": 1.0}, ttl=60) == "other"
    assert store.get(theirs) == {**doc, "conn": "c2"}
    assert store.touch_owned(gone, "conn", "c1", {"seen": 1.0}, ttl=60) == "missing"
    assert store.get(gone) is None  # no document is made
    marker = _k()
    store.set(marker, 0, ttl=0.6)  # the touched document outlives its first TTL (0.4 s): it got 60 s
    wait_for(lambda: store.get(marker) is None, timeout=5, message="marker expired")
    assert store.get(mine) is not None
    assert store.get(theirs) is None  # another owner's document kept its own TTL


def test_update_exception_aborts(store: Store) -> None:
    key = _k()
    store.set(key, {"v": 1})

    def boom(old: Any) -> Any:
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.update(key, boom)
    assert store.get(key) == {"v": 1}
    store.set(key, {"v": 2})  # the store still works after the aborted update
    assert store.get(key) == {"v": 2}


def test_update_is_atomic_under_concurrency(store: Store) -> None:
    key = _k()
    store.set(key, {"n": 0, "who": []})
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(15):
                store.update(key, lambda d, tag=f"{i}.{j}": {"n": d["n"] + 1, "who": d["who"] + [tag]})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    doc = store.get(key)
    assert doc["n"] == 90 and len(set(doc["who"])) == 90


def test_get_many_reads_in_order_with_none_for_missing(store: Store) -> None:
    keys = [_k() for _ in range(1203)]  # more than one MGET chunk on Redis
    for i, key in enumerate(keys):
        if i % 3:
            store.set(key, {"i": i})
    got = store.get_many(keys)
    assert got == [{"i": i} if i % 3 else None for i in range(len(keys))]
    assert store.get_many([]) == []


def test_lease_is_held_by_one_owner_until_released_or_expired(store: Store) -> None:
    name = _k()
    assert store.lease(name, "a", 5)
    assert store.lease(name, "a", 5)  # renewed by its holder
    if isinstance(store, MemoryStore):
        return  # one process: nobody else to exclude
    assert not store.lease(name, "b", 5)
    store.release(name, "b")  # not b's: no effect
    assert not store.lease(name, "b", 5)
    store.release(name, "a")
    assert store.lease(name, "b", 0.2)
    assert not store.lease(name, "a", 5)
    wait_for(lambda: store.lease(name, "a", 5), timeout=5, message="b's lease expired")


# -- lists -------------------------------------------------------------------------
def test_append_and_range_like_lrange(store: Store) -> None:
    key = _k()
    for i in range(5):
        assert store.append(key, {"i": i}) == i + 1
    items = [{"i": i} for i in range(5)]
    assert store.range(key) == items
    assert store.range(key, 1, 2) == items[1:3]
    assert store.range(key, -2) == items[-2:]
    assert store.range(key, -3, -2) == items[-3:-1]
    assert store.range(key, 3, 100) == items[3:]
    assert store.range(key, 10) == []
    assert store.range(_k()) == []


def test_append_ttl(store: Store) -> None:
    key = _k()
    store.append(key, "a", ttl=0.3)
    store.append(key, "b")
    assert store.range(key) == ["a", "b"]
    wait_for(lambda: store.range(key) == [], timeout=5, message="list expired")


def test_append_sequenced_stores_and_publishes_with_the_items_index(store: Store) -> None:
    """One chat message (issue 20): the entry, the preview, the TTLs and both pushes in one step, each push
    with the entry's index, to this process's subscribers and (Redis) to another process's."""
    from flask_lpcall.store.base import SEQUENCE

    lst, last, idle, ch1, ch2 = _k(), _k(), _k(), _k(), _k()
    control = _k()
    store.set(idle, 1, ttl=1)
    store.set(control, 1, ttl=1)  # untouched: it shows when the first TTL has passed
    peer = store_from_url(store.url) if isinstance(store, RedisStore) else store
    here: list[Any] = []
    there: list[Any] = []
    subs = [store.subscribe(ch1, here.append), peer.subscribe(ch1, there.append), peer.subscribe(ch2, there.append)]
    try:
        text = '"sequence":-7317'  # a message's text is never taken for the placeholder
        for i in range(3):
            item = {"message": text, "i": i}
            length = store.append_sequenced(
                lst, item, 60, put=[(last, {"text": text, "sequence": SEQUENCE})], touch=[idle],
                publish=[(ch1, {"event": {**item, "sequence": SEQUENCE}}), (ch2, {"last": {"sequence": SEQUENCE}})])
            assert length == i + 1
        assert store.range(lst) == [{"message": text, "i": i} for i in range(3)]
        assert store.get(last) == {"text": text, "sequence": 2}
        assert here == [{"event": {"message": text, "i": i, "sequence": i}} for i in range(3)]
        wait_for(lambda: len(there) == 6, timeout=5, message="both pushes of 3 entries")
        assert [m for m in there if "event" in m] == here
        assert [m for m in there if "last" in m] == [{"last": {"sequence": i}} for i in range(3)]
        wait_for(lambda: store.get(control) is None, timeout=10, message="the first TTL passed")
        assert store.get(idle) == 1  # refreshed to 60 s by every append
    finally:
        for sub in subs:
            sub.close()
        if peer is not store:
            peer.close()


# -- sets --------------------------------------------------------------------------
def test_sets(store: Store) -> None:
    key = _k()
    store.add(key, "a")
    store.add(key, "b")
    store.add(key, "a")
    assert store.members(key) == {"a", "b"}
    store.remove(key, "a")
    store.remove(key, "zzz")
    assert store.members(key) == {"b"}
    store.remove(key, "b")
    assert store.members(key) == set()
    assert key not in store.keys("t:"), "an empty set leaves no key behind"
    store.remove(_k(), "x")
    assert store.members(_k()) == set()


def test_set_ttl(store: Store) -> None:
    key = _k()
    store.add(key, "a", ttl=0.3)
    wait_for(lambda: store.members(key) == set(), timeout=5, message="set expired")


# -- keys ---------------------------------------------------------------------------
def test_keys_by_prefix_including_glob_characters(store: Store) -> None:
    base = _k()
    names = [f"{base}:a", f"{base}:b", f"{base}*x", f"{base}[1]"]
    store.set(names[0], 1)
    store.append(names[1], 1)
    store.add(names[2], "m")
    store.set(names[3], 1)
    assert sorted(store.keys(base)) == sorted(names)
    assert store.keys(f"{base}*") == [f"{base}*x"]
    assert store.keys(f"{base}[") == [f"{base}[1]"]
    assert store.keys(_k()) == []


# -- bus ------------------------------------------------------------------------------
def test_publish_reaches_every_subscriber_of_the_channel(store: Store) -> None:
    channel, other = _k(), _k()
    got_a: list[Any] = []
    got_b: list[Any] = []
    got_other: list[Any] = []
    sub_a = store.subscribe(channel, got_a.append)
    sub_b = store.subscribe(channel, got_b.append)
    sub_o = store.subscribe(other, got_other.append)
    for i in range(20):
        store.publish(channel, {"i": i, "type": "candidate"})
    wait_for(lambda: len(got_a) == 20 and len(got_b) == 20, timeout=5, message="20 messages each")
    assert got_a == [{"i": i, "type": "candidate"} for i in range(20)], "in order"
    assert got_b == got_a
    got_a[0]["i"] = "changed"
    assert got_b[0]["i"] == 0, "each subscriber gets its own copy"
    assert got_other == []
    for s in (sub_a, sub_b, sub_o):
        s.close()


def test_closed_subscription_gets_nothing_more(store: Store) -> None:
    channel = _k()
    first: list[Any] = []
    second: list[Any] = []
    sub1 = store.subscribe(channel, first.append)
    sub2 = store.subscribe(channel, second.append)
    store.publish(channel, 1)
    wait_for(lambda: first == [1] and second == [1], timeout=5, message="first message")
    sub1.close()
    sub1.close()  # idempotent
    store.publish(channel, 2)
    wait_for(lambda: second == [1, 2], timeout=5, message="second message")
    sub2.close()
    store.publish(channel, 3)
    # Re-subscribing after every callback went: the new one gets new messages only.
    third: list[Any] = []
    sub3 = store.subscribe(channel, third.append)
    store.publish(channel, 4)
    wait_for(lambda: third == [4], timeout=5, message="message after re-subscribe")
    assert first == [1] and second == [1, 2]
    sub3.close()


def test_failing_callback_does_not_break_others(store: Store) -> None:
    channel = _k()
    got: list[Any] = []

    def broken(msg: Any) -> None:
        raise RuntimeError("subscriber bug")

    subs = [store.subscribe(channel, broken), store.subscribe(channel, got.append)]
    store.publish(channel, "a")
    store.publish(channel, "b")
    wait_for(lambda: got == ["a", "b"], timeout=5, message="messages despite a broken subscriber")
    for s in subs:
        s.close()


def test_callback_may_use_the_store(store: Store) -> None:
    channel, key = _k(), _k()

    def on_message(msg: Any) -> None:
        store.append(key, msg)
        store.publish(channel + ":echo", msg)

    echoes: list[Any] = []
    subs = [store.subscribe(channel, on_message), store.subscribe(channel + ":echo", echoes.append)]
    store.publish(channel, {"hello": 1})
    wait_for(lambda: echoes == [{"hello": 1}], timeout=5, message="echo through the store")
    assert store.range(key) == [{"hello": 1}]
    for s in subs:
        s.close()


def test_ping(store: Store) -> None:
    store.ping()
