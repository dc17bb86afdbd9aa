"""What a tagged page downloads before a call invitation (issue 15), in Chromium.

Before an invitation the example home page fetches only what the chat needs: at most 5 of the
extension's static files after the tag's bus, at most 15 KB gzip, none of the call app (callapp.js,
engine, call UI, recovery, quality, handoff, resume). Every one comes from a versioned URL served
immutable. The call app loads when the page is idle once a chat is open, or with the invitation when
that never happened; either way the call then works (frames decoded on both sides).
(benchmarks/bench_pageweight.py measures the same with figures.)
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from support import wait_for

from flask_lpcall.web.assets import tree_version

#: modules of the call, not of the chat
CALL_MODULES = ("callapp.js", "engine.js", "callui.js", "recovery.js", "quality.js", "handoff.js", "resume.js", "call.css")
VERSIONED = re.compile(r"/lpcall/static/([0-9a-f]{16})/lpcall/[a-z_]+\.(js|css)$")


class Fetches:
    """The extension's static files a page requested, in order: [(path, gzip bytes, Cache-Control)]."""

    def __init__(self, page: Any, origin: str) -> None:
        self.origin = origin
        self.seen: list[tuple[str, int, str]] = []
        page.on("requestfinished", self._finished)

    def _finished(self, request: Any) -> None:
        path = request.url[len(self.origin):]
        if not path.startswith("/lpcall/static/"):
            return
        response = request.response()
        body = response.body() if response is not None else b""
        self.seen.append((path, len(gzip.compress(body, 6)), response.headers.get("cache-control", "") if response else ""))

    def modules(self) -> list[str]:
        """The static files after the tag's bus (lptag.js, which every tagged page loads)."""
        return [p for p, _, _ in self.seen if not p.split("?")[0].endswith("/lptag.js")]

    def call_modules(self) -> list[str]:
        return [p for p in self.modules() if p.rsplit("/", 1)[-1] in CALL_MODULES]


def _visitor(r: Any, init: str = "") -> tuple[Any, Fetches]:
    ctx = r.context()
    if init:
        ctx.add_init_script(init)
    page = r.consumer = ctx.new_page()
    page.set_default_timeout(20_000)
    fetches = Fetches(page, r.server.url)
    page.goto(r.server.url + "/")
    page.wait_for_selector(".lpcall-window[data-status=open]", state="attached")
    page.wait_for_load_state("networkidle")
    return page, fetches


def _chat(r: Any, page: Any) -> None:
    page.click(".lpcall-launcher")
    page.fill("#lpcall-visitor-name", "Vera")
    page.click(".lpcall-start [type=submit]")
    page.wait_for_selector(".lpcall-composer:not([hidden])")
    r.agent.click(".lpcall-mine .lpcall-conv-open")


def _call(r: Any, page: Any) -> None:
    r.agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    page.click(".lpcall-invitation .lpcall-accept")
    for p in (r.agent, page):
        r.wait_frames(p, video=True)


def test_before_an_invitation_only_the_chat_loads_then_the_call_app_while_idle(rig: Any) -> None:
    r = rig()
    r.open_agent()
    page, fetches = _visitor(r)
    modules = fetches.modules()
    assert fetches.call_modules() == []
    assert len(modules) <= 5, modules
    assert sum(gz for p, gz, _ in fetches.seen if p in modules) <= 15 * 1024
    version = tree_version()
    for path, _, cache in fetches.seen:
        if path in modules:
            m = VERSIONED.search(path)
            assert m and m[1] == version, path
            assert cache == "public, max-age=31536000, immutable", (path, cache)
    # a chat is open: the call app comes while the page is idle, before any invitation
    _chat(r, page)
    wait_for(lambda: any(p.endswith("/lpcall/callapp.js") for p in fetches.modules()), message="call app prefetched")
    wait_for(lambda: page.evaluate("Boolean(window.__lpcallCallApp)"), message="call app started")
    assert page.locator(".lpcall-invitation").count() == 0
    _call(r, page)
    assert all(VERSIONED.search(p) for p in fetches.modules())  # the call's modules too


def test_the_call_app_loads_with_the_invitation_when_the_page_was_never_idle(rig: Any) -> None:
    r = rig()
    r.open_agent()
    never_idle = "window.requestIdleCallback = () => 0;"  # the idle prefetch never runs
    page, fetches = _visitor(r, never_idle)
    _chat(r, page)
    page.wait_for_load_state("networkidle")
    assert fetches.call_modules() == []
    _call(r, page)  # the invitation's cobrowseOffered loads the call app; it replays the event
    assert any(p.endswith("/lpcall/callapp.js") for p in fetches.modules())
