"""The call sweep on Redis (issue 20): one worker of many sweeps at a time (a store lease), and a pass over
N calls costs a few MGETs, not one GET per call and per presence document, every second, on every worker.

Real redis-server; the Redis commands of a pass are counted with MONITOR (which adds no client traffic).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from servers import RedisServer
from support import wait_for

from flask_lpcall.config import Settings
from flask_lpcall.core.callmanager import SWEEP_CHUNK, CallManager
from flask_lpcall.core.tokens import TokenSigner
from flask_lpcall.store import store_from_url

CALLS = 60


def _manager(url: str, **settings: Any) -> CallManager:
    config = Settings.from_config({"LPCALL_RECONNECT_GRACE": 1, "LPCALL_HEARTBEAT_INTERVAL": 5, **settings})
    return CallManager(store_from_url(url), config, {}, TokenSigner("sweep-test"), lambda: None)


class CommandWatch:
    """The names of the commands Redis executes while it watches (MONITOR)."""

    END = "lpcall-command-watch-end"

    def __init__(self, redis_server: RedisServer) -> None:
        self.redis_server = redis_server
        self.commands: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"

    def _run(self) -> None:
        with self.redis_server.client().monitor() as monitor:
            self._ready.set()
            for cmd in monitor.listen():
                words = str(cmd["command"]).split()
                if words and words[0].upper() == "ECHO" and self.END in words[1:]:
                    return
                if words:
                    self.commands.append(words[0].upper())

    def stop(self) -> list[str]:
        self.redis_server.client().echo(self.END)
        self._thread.join(10)
        return self.commands


def test_a_sweep_pass_reads_calls_and_presence_in_a_few_mgets(redis_server: RedisServer) -> None:
    redis_server.client().flushdb()
    calls = _manager(redis_server.url)
    try:
        sids = []
        for i in range(CALLS):
            session = calls.open_call(conversation_id=f"conv-{i}", consumer_id=f"c-{i}", agent_id="bob",
                                      agent_name="Bob", visitor_name="Vera", mode="VIDEO_CALL")
            sids.append(session.service_id)
        calls.stop()  # no sweeper thread: only the pass below talks to Redis
        for sid in sids[: CALLS // 2]:  # half of them accepted, both sides present
            calls.participant_joined(sid, "agent", f"a-{sid}", "tab-a")
            calls.participant_joined(sid, "consumer", f"c-{sid}", "tab-c")
            calls.accept(calls.get(sid).consumer_id, {"serviceId": sid, "mode": "VIDEO_CALL"})
        watch = CommandWatch(redis_server)
        closed, seen = calls._sweep()
        commands = watch.stop()
        assert (closed, seen) == ([], CALLS)
        chunks = -(-CALLS // SWEEP_CHUNK)
        assert commands.count("GET") == 0, commands
        assert commands.count("MGET") == 2 * chunks  # the chunk's calls, then their presence/page documents
        # and it still judges: past the grace (no heartbeats since), the accepted calls close
        gone = time.time() + 30
        for sid in sids[: CALLS // 2]:
            calls.participant_left(sid, "consumer", f"c-{sid}")
        closed = calls.sweep(now=gone)
        assert sorted(c.service_id for c in closed) == sorted(sids[: CALLS // 2])
        assert {c.close_reason for c in closed} == {"agent_disconnected"}  # the agent's side is judged first
    finally:
        calls.stop()
        calls.store.close()


def test_one_worker_sweeps_and_another_takes_over_when_it_stops(redis_server: RedisServer) -> None:
    redis_server.client().flushdb()
    a, b = _manager(redis_server.url), _manager(redis_server.url)
    try:
        assert a.sweep_lead()
        assert not b.sweep_lead()  # a sweeps for both
        assert a.sweep_lead()
        a.stop()  # a worker shutting down gives the lease up
        assert b.sweep_lead()
        assert not a.sweep_lead()
        # a worker that dies keeps it only until it expires (a few sweep intervals)
        t0 = time.monotonic()
        wait_for(lambda: a.sweep_lead(), timeout=10, message="b's lease expired")
        assert time.monotonic() - t0 <= 3 * b.sweep_interval + 1
    finally:
        for m in (a, b):
            m.stop()
            m.store.close()


def test_workers_with_other_timers_do_not_sweep_for_each_other(redis_server: RedisServer) -> None:
    redis_server.client().flushdb()
    a, b = _manager(redis_server.url), _manager(redis_server.url, LPCALL_RECONNECT_GRACE=5)
    try:
        assert a.sweep_lead() and b.sweep_lead()
    finally:
        for m in (a, b):
            m.stop()
            m.store.close()
