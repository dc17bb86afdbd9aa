"""State loss is told, in Chromium (issue 14, finding 9): the example site on a real redis-server, a
visitor and an agent in a voice call, then FLUSHALL. The visitor's page gets `cobrowse` `sessionError`
UNABLE_TO_CONNECT and `lpCall` `callEnded` with reason `state_lost`; the agent's call closes too."""

from __future__ import annotations

from typing import Any

from resumekit import Rig
from servers import RedisServer
from support import wait_for


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
