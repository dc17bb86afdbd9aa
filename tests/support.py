"""Helpers shared by the tests: live servers, Chromium, waiting on conditions, WebRTC stats."""

from __future__ import annotations

import ast
import gc
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("LPCALL_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

T = TypeVar("T")


def require(component: str, present: bool, why: str) -> None:
    """Skip when a component is missing on a developer machine; fail under CI=true."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{component} is required under CI=true: {why}")
    pytest.skip(f"{component} missing: {why}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except AssertionError as exc:  # let conditions use assert
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}{detail}")
        time.sleep(interval)  # polling interval of a deadline wait, not synchronisation


@dataclass
class LiveServer:
    app: Any
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://localhost:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
        state = getattr(self.app, "extensions", {}).get("lpcall")
        if state is not None:  # the network checks' aiortc peers and loop go with the app
            state.netcheck.close()


def start_live_server(app: Any, host: str = "127.0.0.1") -> LiveServer:
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    return LiveServer(app=app, server=server, thread=thread)


def start_chat(page: Any, site_url: str, name: str = "Vera", path: str = "/") -> Any:
    """A visitor on a page of the example site (its home page unless ``path``) opens the chat window and
    starts a chat as ``name``, as a person does (launcher, name, Start chat); returns ``page`` once the
    message box shows."""
    page.goto(site_url + path)
    page.click(".lpcall-launcher")
    page.fill("#lpcall-visitor-name", name)
    page.click(".lpcall-start [type=submit]")
    page.wait_for_selector(".lpcall-composer:not([hidden])")
    return page


def start_demo_agent(site_url: str, app: Any, video_size: tuple[int, int] = (320, 240)) -> tuple[Any, Any, Any]:
    """The aiortc demo agent (flask_lpcall.peer.demo) signed in to the site at ``site_url`` serving ``app``, on
    a loop of its own: ``(agent, loop, runner)`` once the site counts it available. A small ``video_size``
    keeps the tests' CPU low."""
    from flask_lpcall.peer.aioloop import BackgroundLoop
    from flask_lpcall.peer.demo import DemoAgent, DemoSettings
    from flask_lpcall.state import get_state

    loop = BackgroundLoop("demo-agent")
    agent = DemoAgent(DemoSettings(url=site_url, texts=get_state(app).texts, video_size=video_size))
    loop.run(agent.connect(), timeout=15)
    runner = loop.submit(agent.run())
    conversations = get_state(app).conversations
    wait_for(lambda: "demo" in conversations.available_agents(), timeout=10, message="the demo agent is available")
    return agent, loop, runner


def launch_chromium(pw: Any, extra_args: list[str] | None = None) -> Any:
    return pw.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS + (extra_args or []),
    )


# JavaScript run in a page: inbound media stats of every RTCPeerConnection the page
# registered on window.__lpcallPeers (the call engine does this when
# window.__lpcallTest is set by a test's init script).
INBOUND_STATS_JS = """
async () => {
  const out = {framesDecoded: 0, audioBytes: 0, videoTracks: 0, pairs: []};
  for (const pc of (window.__lpcallPeers || [])) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    stats.forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') out.framesDecoded += r.framesDecoded || 0;
      if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audioBytes += r.bytesReceived || 0;
      if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
        const l = stats.get(r.localCandidateId), rm = stats.get(r.remoteCandidateId);
        out.pairs.push([l && l.candidateType, rm && rm.candidateType]);
      }
    });
    out.videoTracks += pc.getReceivers().filter(r => r.track && r.track.kind === 'video' && r.track.readyState === 'live').length;
  }
  return out;
}
"""


def parse_python(source: str, filename: str = "<unknown>") -> Any:
    """``ast.parse`` with the garbage collector held off.

    Playwright's sync API runs on greenlets in this process. A collection during CPython 3.11's AST
    conversion may finalize a greenlet, whose switch changes the thread's recursion depth under the
    converter: ``SystemError: AST constructor recursion depth mismatch`` (seen in CI, 1 run in ~3). The
    mismatch is the interpreter's, not the source's: a second parse is tried before it counts."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            return ast.parse(source, filename)
        except SystemError:
            return ast.parse(source, filename)
    finally:
        if enabled:
            gc.enable()
