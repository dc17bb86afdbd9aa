"""The agent workspace's conversation list keeps its rows across updates (static/lpcall/agent.js).

The list used to be rebuilt on every update: a visitor's message (the row's preview) or a new visitor
replaced every row, so an agent moving through the list with the keyboard lost the focus (it fell to the
page body) and a click whose press and release straddled an update was lost (it flaked a Firefox agent
test in CI: "element is not displayed" between finding the button and clicking it).
"""

from __future__ import annotations

from typing import Any

import pytest
from support import start_chat, wait_for

OPEN = ".lpcall-mine .lpcall-conv-item:first-child .lpcall-conv-open"
#: what has the focus: the marked row's button (the same node), or what else
FOCUS_JS = """() => { const a = document.activeElement;
  return a && a.__lpcallMarked ? 'marked:' + a.closest('li').dataset.convId : (a ? a.tagName + '.' + a.className : ''); }"""


@pytest.mark.browser
def test_updates_keep_the_agents_place_in_the_list(rig: Any) -> None:
    r = rig()
    agent = r.open_agent()
    r.open_consumer()  # Vera
    agent.wait_for_selector(OPEN)
    conv_id = agent.get_attribute(".lpcall-mine .lpcall-conv-item:first-child", "data-conv-id")
    agent.focus(OPEN)  # the agent tabbed to Vera's row
    agent.evaluate("document.activeElement.__lpcallMarked = true")
    assert agent.evaluate(FOCUS_JS) == f"marked:{conv_id}"

    r.consumer.fill("#lpcall-message", "hello there")
    r.consumer.click(".lpcall-composer [type=submit]")
    agent.wait_for_selector(".lpcall-mine .lpcall-conv-last:has-text('hello there')")
    assert agent.evaluate(FOCUS_JS) == f"marked:{conv_id}", "a visitor's message took the focus"

    start_chat(r.context().new_page(), r.server.url, "Sam")  # a second visitor: a second row
    wait_for(lambda: agent.locator(".lpcall-conv-item").count() == 2, timeout=10, message="Sam's row")
    assert agent.evaluate(FOCUS_JS) == f"marked:{conv_id}", "a new visitor took the focus"

    agent.keyboard.press("Enter")  # the agent goes on from where they were
    wait_for(lambda: agent.text_content(".lpcall-chat-title") == "Vera", timeout=10, message="Vera's chat open")
    assert agent.get_attribute(OPEN, "aria-current") == "true"
    names = agent.locator(".lpcall-conv-name").all_text_contents()
    assert sorted(names) == ["Sam", "Vera"], names
