"""Records under production serving: two gunicorn + gevent servers (2 workers each) sharing one real
redis-server and one report file. Consumers on one server, the agent on the other; invitations are
declined over HTTP or expire (every worker runs a sweeper): each call leaves exactly one record."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from servers import GunicornServer, RedisServer, start_gunicorn
from support import wait_for
from wsclients import Agent, Consumer


@pytest.mark.redis
def test_each_call_has_one_record_across_workers_and_servers(redis_server: RedisServer, tmp_path: Path) -> None:
    db = tmp_path / "shared-reports.sqlite3"
    env = {"FLASK_SECRET_KEY": "shared-" + uuid.uuid4().hex, "FLASK_LPCALL_STORE": redis_server.url,
           "FLASK_LPCALL_REPORT_DB": str(db), "FLASK_LPCALL_INVITE_TTL": "2"}
    servers: list[GunicornServer] = []
    clients: list[Any] = []
    try:
        servers.append(start_gunicorn(env, workers=2))
        servers.append(start_gunicorn(env, workers=2))
        a, b = servers
        agent = Agent(b.url)
        clients.append(agent)
        assert agent.connect()["code"] == 200
        invited: dict[str, str] = {}
        for i in range(4):
            consumer = Consumer(a.url)
            clients.append(consumer)
            assert consumer.connect()["code"] == 200
            conv_id = consumer.open_conversation(f"Visitor {i}")
            agent.take_and_open(conv_id)
            assert agent.client is not None
            resp = agent.client.request("call.Invite", {"conversationId": conv_id, "mode": ("VOICE_CALL", "VIDEO_CALL")[i % 2]})
            assert resp["code"] == 200, resp
            sid = resp["body"]["serviceId"]
            if i < 2:  # declined over the HTTP API of the other server
                payload = {"serviceId": sid, "agentId": "bob", "visitorName": f"Visitor {i}", "mode": resp["body"]["mode"],
                           "ssid": "s", "svid": "v"}
                r = requests.post(f"{a.url}/lpcall/api/call/decline", json=payload, timeout=10,
                                  headers={"Authorization": f"Bearer {consumer.token}"})
                assert r.status_code == 200, r.text
                invited[sid] = "declined"
            else:
                invited[sid] = "expired"

        def rows() -> list[tuple[str, str, str]]:
            if not db.exists():
                return []
            conn = sqlite3.connect(db, timeout=10)
            try:
                return conn.execute("SELECT service_id, outcome, ended_by FROM collaboration_sessions").fetchall()
            finally:
                conn.close()

        got = wait_for(lambda: len(rows()) >= 4 and rows(), timeout=30, message="four records")
        assert {sid: outcome for sid, outcome, _ in got} == invited
        assert sorted(by for _, _, by in got) == ["consumer", "consumer", "system", "system"]
        assert len(got) == 4
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
