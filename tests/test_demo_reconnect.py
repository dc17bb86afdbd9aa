"""The demo agent picks its own conversations back up when it (re)connects: a conversation already
assigned to it is in the first ``agent.ConversationList``, which may arrive before the demo agent has
read its own id from the ``agent.Subscribe`` response (it used to ignore those conversations)."""

from __future__ import annotations

from typing import Any

from support import start_demo_agent, wait_for
from wsclients import Consumer, message_from

from example_site.app import create_app
from flask_lpcall.peer.aioloop import BackgroundLoop
from flask_lpcall.peer.demo import DemoAgent
from flask_lpcall.state import get_state
from flask_lpcall.texts import render


def _stop(agent: DemoAgent, loop: BackgroundLoop, runner: Any) -> None:
    loop.run(agent.close(), timeout=10)
    runner.cancel()
    loop.stop()


def _start(server: Any, app: Any) -> tuple[DemoAgent, BackgroundLoop, Any]:
    return start_demo_agent(server.url, app, video_size=(160, 120))


def test_a_reconnected_demo_agent_answers_its_conversations(live_server: Any) -> None:
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    texts = get_state(app).texts
    conversations = get_state(app).conversations
    first, loop, runner = _start(server, app)
    second = first
    consumer = Consumer(server.url)
    try:
        consumer.connect()
        conv_id = consumer.open_conversation("Vera")
        assert consumer.client is not None
        consumer.client.wait_notification(message_from(render(texts, "demo.greeting", agent="Demo agent")), timeout=15)
        _stop(first, loop, runner)  # the demo agent goes away (site restart, lost socket) …
        wait_for(lambda: "demo" not in conversations.available_agents(), timeout=15, message="the first agent left")
        assert conversations.get(conv_id)["agentId"] == "demo"  # … its conversation stays assigned to it

        for attempt in range(3):  # the old code lost the race most of the time, not always: try a few times
            second, loop, runner = _start(server, app)
            wait_for(lambda a=second: conv_id in a.opened, timeout=10,
                     message=f"the reconnected demo agent opens its conversation (attempt {attempt + 1})")
            _stop(second, loop, runner)
            wait_for(lambda: "demo" not in conversations.available_agents(), timeout=15, message="the agent left")
        second, loop, runner = _start(server, app)
        consumer.say(conv_id, "call me")
        consumer.client.wait_notification(message_from(texts["demo.calling"]), timeout=15)
    finally:
        consumer.close()
        _stop(second, loop, runner)
