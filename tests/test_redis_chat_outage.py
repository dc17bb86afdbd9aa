"""Chat while Redis goes away (issue 20, the hardening guarantee): no message a sender was told is stored is
lost to the other side, none arrives twice.

Pub/sub delivers only to connections that are there: a worker whose bus connection to Redis broke misses
what the other workers publish meanwhile. The transcript in Redis is the truth, so a worker reads what it
missed from there as soon as its bus connection is back (the store's resync), not at the next message,
which may never come. Real redis-server; two gunicorn gevent servers ("hosts"), the visitor's socket on
the first, the agent's on the second.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from servers import GunicornServer, RedisServer, TcpProxy, start_gunicorn, start_persistent_redis
from support import require, wait_for
from test_redis_chat_order import Side, _conversation, _verdict


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require("redis-server", bool(shutil.which("redis-server")), "apt-get install redis-server")
    server = start_persistent_redis()
    yield server
    server.stop()


def _hosts(url_a: str, url_b: str) -> tuple[GunicornServer, GunicornServer]:
    secret = "shared-" + uuid.uuid4().hex
    a = start_gunicorn({"FLASK_SECRET_KEY": secret, "FLASK_LPCALL_STORE": url_a}, workers=1)
    try:
        return a, start_gunicorn({"FLASK_SECRET_KEY": secret, "FLASK_LPCALL_STORE": url_b}, workers=1)
    except Exception:
        a.stop()
        raise


def test_messages_published_while_a_worker_is_cut_from_redis_reach_it_when_it_is_back(redis_server: RedisServer) -> None:
    """The agent's worker reaches Redis through a proxy that goes away; the visitor's worker stores and
    publishes 5 messages meanwhile (the visitor gets 200 for each). When the link is back, the agent gets
    all 5, once each, in order, without anyone posting again."""
    proxy = TcpProxy([redis_server.port])
    a, b = _hosts(redis_server.url, f"redis://127.0.0.1:{proxy.port}/0")
    consumer, agent, conv_id = _conversation(a, b)
    assert agent.client is not None
    workspace = Side(agent.client, conv_id, "a")
    try:
        assert consumer.say(conv_id, "v-0")["code"] == 200
        wait_for(lambda: workspace.received_from("v") == [0], timeout=10, message="the first message")
        port = proxy.port
        proxy.stop()  # the agent's worker loses Redis (its pub/sub connection with it)
        for i in range(1, 6):
            answer = consumer.say(conv_id, f"v-{i}")
            assert answer["code"] == 200, answer
        assert workspace.received_from("v") == [0]
        proxy = TcpProxy([redis_server.port], port=port)
        wait_for(lambda: len(workspace.received_from("v")) >= 6, timeout=20, message="the 5 messages of the outage")
        assert _verdict(workspace.received_from("v"), 6) == {"missing": 0, "duplicated": 0, "out_of_order": 0}
        seqs = workspace.sequences()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        consumer.close()
        agent.close()
        a.stop()
        b.stop()
        proxy.stop()


def test_no_acknowledged_message_is_lost_or_doubled_when_redis_stops_and_restarts(redis_server: RedisServer) -> None:
    """Both sides post without pause while redis-server is stopped and started again (its data kept, as in
    production): every message its sender got a 200 for reaches the other side exactly once, in order;
    the ones posted during the outage get an error answer (the sender knows), and the sockets stay up."""
    a, b = _hosts(redis_server.url, redis_server.url)
    consumer, agent, conv_id = _conversation(a, b)
    assert consumer.client is not None and agent.client is not None
    visitor, workspace = Side(consumer.client, conv_id, "v"), Side(agent.client, conv_id, "a")
    stop = threading.Event()

    def post(side: Side) -> None:
        i = 0
        while not stop.is_set():
            side.burst(threading.Barrier(1), 1, first=i)
            i += 1
            time.sleep(0.01)  # a pace, not a synchronisation: ~100 messages/s per side

    senders = [threading.Thread(target=post, args=(s,), daemon=True) for s in (visitor, workspace)]
    try:
        for t in senders:
            t.start()
        wait_for(lambda: len(visitor.answers) >= 30 and len(workspace.answers) >= 30, timeout=20, message="traffic")
        redis_server.stop()
        wait_for(lambda: any(r["code"] != 200 for r in visitor.answers + workspace.answers), timeout=20,
                 message="a message refused during the outage")
        redis_server.start()
        before = len(visitor.answers), len(workspace.answers)
        wait_for(lambda: (any(r["code"] == 200 for r in visitor.answers[before[0]:])
                          and any(r["code"] == 200 for r in workspace.answers[before[1]:])),
                 timeout=30, message="both sides posting again after the restart")
        stop.set()
        for t in senders:
            t.join(10)
        sent = {side.tag: len(side.answers) for side in (visitor, workspace)}
        wait_for(lambda: len(visitor.answers) == sent["v"] and len(workspace.answers) == sent["a"], timeout=20,
                 message="every answer")

        def acked(side: Side) -> set[int]:
            return {int(r["reqId"].split("-")[1]) for r in side.answers if r["code"] == 200}

        for sender, receiver in ((visitor, workspace), (workspace, visitor)):
            wanted = acked(sender)
            wait_for(lambda r=receiver, s=sender, w=wanted: w <= set(r.received_from(s.tag)), timeout=30,
                     message=f"every acknowledged message of {sender.tag}")
            got = receiver.received_from(sender.tag)
            assert len(got) == len(set(got)), f"a message of {sender.tag} arrived twice"
            assert got == sorted(got), f"the messages of {sender.tag} arrived out of order"
        assert any(r["code"] != 200 for r in visitor.answers + workspace.answers)
    finally:
        stop.set()
        consumer.close()
        agent.close()
        a.stop()
        b.stop()
