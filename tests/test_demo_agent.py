"""The demo agent end to end: a Chromium visitor on the example site asks for a call.

The demo agent logs in through the workspace login form and the agent socket, greets
the visitor, and on "call me" invites them to a video call; Chromium accepts in the
engagement window and decodes the test pattern (colour bars checked pixel by pixel),
hears the echo, and the agent's peer receives the visitor's camera (the inset).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import INBOUND_STATS_JS, start_chat, wait_for
from test_peer import SAMPLE_BARS_JS, bars_match

from example_site.app import create_app
from flask_lpcall.peer.demo import DemoAgentError, DemoSettings, login, wants_call
from flask_lpcall.state import get_state
from flask_lpcall.texts import build_texts


def test_trigger_phrase_in_both_locales() -> None:
    en, de = build_texts("en", {}), build_texts("de", {})
    assert wants_call("Call me, please!", en)
    assert wants_call("could you CALL ME?", en)
    assert wants_call("Bitte ruf mich an", de)
    assert wants_call("call me", de)  # the English phrase always works
    assert not wants_call("don't call", en)
    assert not wants_call("recall meetings", en)


def test_wrong_password_is_a_typed_error(live_server) -> None:
    server = live_server(create_app(LPCALL_REPORT_DB=":memory:"))
    with pytest.raises(DemoAgentError) as info:
        login(DemoSettings(url=server.url, password="wrong"))
    assert info.value.code == "BAD_LOGIN"


def test_cli_group_has_demo_agent_and_reports_a_bad_login(live_server) -> None:
    from flask_lpcall.cli import lpcall_cli

    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    runner = app.test_cli_runner()
    assert "demo-agent" in runner.invoke(lpcall_cli, ["--help"]).output
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # asyncio.run needs a thread without a running loop (Playwright's)
        result = pool.submit(
            runner.invoke, lpcall_cli, ["demo-agent", "--url", server.url, "--password", "nope", "--wait", "2"]
        ).result(timeout=60)
    assert result.exit_code == 1
    assert "BAD_LOGIN" in result.output


RUN_CLI = (
    "import sys\n"
    "from example_site.app import create_app\n"
    "from flask_lpcall.cli import lpcall_cli\n"
    "app = create_app(LPCALL_REPORT_DB=':memory:')\n"
    "with app.app_context():\n"
    "    lpcall_cli.main(sys.argv[1:], prog_name='flask lpcall')\n"
)


def test_cli_demo_agent_serves_until_the_watched_site_process_exits(live_server) -> None:
    """What ./dev.sh run does: the agent comes up with the site and stops when the site's process is gone."""
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    # stands in for the site's process: alive until killed (it waits on its stdin)
    site = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    root = Path(__file__).resolve().parent.parent
    agent = subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "demo-agent", "--url", server.url, "--watch-pid", str(site.pid)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        conversations = get_state(app).conversations
        wait_for(lambda: "demo" in conversations.available_agents(), timeout=30, message="the CLI demo agent is available")
        site.kill()
        site.wait(timeout=10)
        assert agent.wait(timeout=20) == 0
        wait_for(lambda: "demo" not in conversations.available_agents(), timeout=10, message="the agent went away")
    finally:
        for proc in (site, agent):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_visitor_asks_for_a_call_and_sees_the_test_pattern(browser, demo_site) -> None:
    server, agent = demo_site
    ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    ctx.add_init_script("window.__lpcallTest = true;")
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    try:
        start_chat(page, server.url)
        transcript = page.locator(".lpcall-transcript")
        transcript.get_by_text('Hi, I\'m Demo agent, a demo. Type "call me"').wait_for()

        page.fill("#lpcall-message", "Hello! Call me please")
        page.click(".lpcall-composer [type=submit]")
        transcript.get_by_text("Calling you now").wait_for()
        page.click(".lpcall-invitation .lpcall-accept")

        remote = ".lpcall-call video.lpcall-remote"
        page.wait_for_selector(remote)
        inbound = wait_for(
            lambda: (s := page.evaluate(INBOUND_STATS_JS)) and s["framesDecoded"] > 10 and s["audioBytes"] > 0 and s,
            timeout=30,
            message="the visitor decodes the demo agent's video and receives its audio",
        )
        assert inbound["videoTracks"] >= 1
        samples = wait_for(lambda: (s := page.evaluate(SAMPLE_BARS_JS, remote)) and bars_match(s) and s,
                           timeout=20, message="the visitor sees the colour bars")
        assert len(samples) == 8

        # the echo: the agent's peer receives the visitor's camera and microphone
        peer = wait_for(lambda: next(iter(agent.calls.values()), None), timeout=5, message="the demo call")
        wait_for(lambda: peer.video_frames > 5 and peer.audio_frames > 5, timeout=20, message="the agent receives the visitor")
        # …and shows the camera as an inset in the bottom-right corner instead of the dark band
        corner = wait_for(
            lambda: (c := page.evaluate(CORNER_JS, remote)) and max(abs(v - 40) for v in c) > 30 and c,
            timeout=20,
            message="the visitor's own picture in the corner",
        )
        assert corner

        page.click(".lpcall-call .lpcall-hangup")
        wait_for(lambda: not agent.calls, timeout=15, message="the demo agent leaves the ended call")
    finally:
        ctx.close()


CORNER_JS = """
(selector) => {
  const v = document.querySelector(selector);
  if (!v || v.videoWidth === 0) return null;
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(v, 0, 0);
  return Array.from(ctx.getImageData(Math.floor(c.width * 0.88), Math.floor(c.height * 0.9), 1, 1).data.slice(0, 3));
}
"""
