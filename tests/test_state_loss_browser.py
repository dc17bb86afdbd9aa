"""State loss is told, in Chromium (issue 14, finding 9): the example site on a real redis-server, a
visitor and an agent in a voice call, then FLUSHALL. The visitor's page gets `cobrowse` `sessionError`
UNABLE_TO_CONNECT and `lpCall` `callEnded` with reason `state_lost`; the agent's call closes too."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from resumekit import Rig
from servers import RedisServer, start_redis
from support import require, wait_for


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    require("redis-server", bool(shutil.which("redis-server")), "apt-get install redis-server")
    server = start_redis()
    yield server
    server.stop()


def test_the_visitor_gets_session_error_when_redis_loses_the_call(browser: Any, live_server: Any,
                                                                  redis_server: RedisServer) -> None:
    r = Rig(browser, live_server, LPCALL_STORE=redis_server.url, LPCALL_HEARTBEAT_INTERVAL=1)
    try:
        service_id = r.start("VOICE_CALL")
        assert r.events(r.consumer, "cobrowse", "sessionError") == []
        redis_server.client().flushall()
        errors = wait_for(lambda: r.events(r.consumer, "cobrowse", "sessionError"), timeout=20, message="sessionError")
        assert [e["data"]["id"] for e in errors] == ["UNABLE_TO_CONNECT"]
        assert errors[0]["data"]["msg"]
        ended = wait_for(lambda: r.events(r.consumer, "lpCall", "callEnded"), timeout=10, message="callEnded")
        assert ended[0]["data"]["serviceId"] == service_id and ended[0]["data"]["reason"] == "state_lost"
        r.consumer.wait_for_selector(f".lpcall-call-error:has-text('{errors[0]['data']['msg'][:20]}')")
        agent_closed = wait_for(lambda: (r.engine(r.agent) or {}).get("closed"), timeout=20, message="the agent's call closed")
        assert agent_closed["reason"] == "state_lost"
    finally:
        r.close()
