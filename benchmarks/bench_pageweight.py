"""What a tagged page downloads from the extension before any call invitation, and the first call.

* weight: the example shop's home page (the engagement window on) in a fresh Chromium context, as a
  first-time visitor. Every request the page makes to the extension (``<prefix>/…``, WebSockets left
  out) is recorded until the window's socket is open and the network has been quiet for 500 ms
  (Playwright's ``networkidle``): "before an invitation, no chat". Then the visitor starts a chat and
  an agent takes it; the requests until the network is quiet again are "a chat is open, before an
  invitation" (the call app, prefetched while the page is idle). Bytes are the gzip size (level 6,
  what a web server in front of the app sends to a browser that accepts gzip) of each response body;
  the werkzeug/gunicorn app itself sends them uncompressed, the "served" column. The bus
  ``static/…/lptag.js`` is listed apart: every tagged page loads it (from its versioned URL, cached
  for a year), whether a chat is used or not.
* first call: in each of those fresh pages, once the chat is open, the agent invites to a video call
  and the visitor accepts (t0: the ``cobrowseAccepted`` publish) once the window listens on the call
  (as in bench_call_setup); t1: the later of the two pages' first decoded remote video frame. Beside
  it, interleaved in the same consumer pages, the in-page floor of bench_call_setup (getUserMedia, two
  RTCPeerConnections handed over directly), and every other visit the eager baseline: the same page
  with an init script that imports and starts the call app at page load, as every page did before.

    python -m benchmarks pageweight [-- --runs 8 --no-write]
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import FIRST_FRAME_POLLER_JS, enter_netns, floor_js, percentile, wait

ISSUE = 15
NAME = "pageweight"

INIT = """
window.__acceptedAt = [];
window.lpTag = window.lpTag || {};
window.lpTag.events = {publish: function (app, ev) {
  if (app === 'lpCoBrowse' && ev === 'cobrowseAccepted') window.__acceptedAt.push(performance.timeOrigin + performance.now());
}};
""" + FIRST_FRAME_POLLER_JS

#: the eager baseline (how every page loaded before issue 15): the call app imported and started the
#: moment consumer.js has started, at page load, not when a chat opens and the page is idle
EAGER_INIT = """
(function () {
  const t = setInterval(async () => {
    if (!window.__lpcallConsumer) return;
    clearInterval(t);
    const {config} = await window.__lpcallConsumer;
    const m = await import(window.lpTag.lpcall.assets + 'lpcall/consumer.js');
    m.loadCallApp(config);
  }, 1);
})();
"""

OFFER_KEPT_JS = """() => (window.__lpcallEngines || []).some((e) => e._waiting && e.pc && e.pc.signalingState === 'have-remote-offer')"""


@dataclass
class Fetch:
    path: str
    served: int
    gzipped: int
    cache: str


@dataclass
class Recorder:
    """The extension's HTTP requests of one page, in the order they finished."""

    origin: str
    seen: list[Fetch] = field(default_factory=list)

    def __call__(self, request: Any) -> None:
        if not request.url.startswith(self.origin + "/lpcall/") or request.resource_type == "websocket":
            return
        response = request.response()
        body = response.body() if response is not None else b""
        cache = response.headers.get("cache-control", "") if response is not None else ""
        self.seen.append(Fetch(request.url[len(self.origin):], len(body), len(gzip.compress(body, 6)), cache))

    def take(self) -> list[Fetch]:
        out, self.seen = self.seen, []
        return out


def is_bus(f: Fetch) -> bool:
    return f.path.split("?")[0].endswith("/lptag.js")


def is_static(f: Fetch) -> bool:
    return f.path.startswith("/lpcall/static/")


def _agent(browser: Any, url: str) -> Any:
    page = browser.new_context().new_page()
    page.add_init_script(INIT)
    page.goto(f"{url}/lpcall/agent/login")
    page.fill("#lpcall-username", "bob")
    page.fill("#lpcall-password", "bob")
    page.click(".lpcall-login-form [type=submit]")
    page.wait_for_selector("#lpcall-agent")
    return page


def _visit(browser: Any, url: str, agent: Any, n: int, eager: bool = False) -> tuple[Any, list[Fetch], list[Fetch]]:
    """A fresh visitor: the home page, then a chat the agent takes; the requests of both stages."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.add_init_script(INIT + (EAGER_INIT if eager else ""))
    rec = Recorder(url)
    page.on("requestfinished", rec)
    page.goto(url + "/")
    page.wait_for_selector(".lpcall-window[data-status=open]", state="attached")
    page.wait_for_load_state("networkidle")
    before = rec.take()
    page.click(".lpcall-launcher")
    page.fill("#lpcall-visitor-name", f"Visitor {n}")
    page.click(".lpcall-start [type=submit]")
    page.wait_for_selector(".lpcall-composer:not([hidden])")
    agent.click(f".lpcall-mine .lpcall-conv-open:has-text('Visitor {n}')", timeout=20_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(600)  # networkidle once more: an idle callback may start after the first
    page.wait_for_load_state("networkidle")
    chat = rec.take()
    return page, before, chat


def _first_call(agent: Any, consumer: Any) -> float:
    from callkit import call_keys  # noqa: F401  (the tests' helpers are on the path)

    agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
    consumer.wait_for_selector(".lpcall-invitation .lpcall-accept", timeout=20_000)
    consumer.wait_for_function(OFFER_KEPT_JS, timeout=20_000)
    n_agent = agent.evaluate("(window.__lpcallPeers || []).length") - 1
    consumer.click(".lpcall-invitation .lpcall-accept")
    t0 = wait(lambda: consumer.evaluate("window.__acceptedAt.at(-1)"), 10, "accept")
    firsts = [
        wait(lambda: agent.evaluate(f"window.__ff.slice({max(n_agent, 0)}).find((t) => t !== undefined)"), 30, "agent frame"),
        wait(lambda: consumer.evaluate("window.__ff.find((t) => t !== undefined)"), 30, "consumer frame"),
    ]
    elapsed = max(firsts) - t0
    consumer.click(".lpcall-call .lpcall-hangup")
    agent.wait_for_selector(".lpcall-agent-call .lpcall-call[data-status=closed]")
    wait(lambda: agent.evaluate("[...document.querySelectorAll('button.lpcall-call-btn')].every((b) => !b.disabled)"), 10, "buttons")
    return float(elapsed)


def measure(runs: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright
    from support import launch_chromium, start_live_server

    from example_site.app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = start_live_server(app)
    out: dict[str, Any] = {"before": [], "chat": [], "call": [], "eager": [], "eager_before": [], "floor": []}
    try:
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            agent = _agent(browser, server.url)
            floor = floor_js()
            for i in range(2 * runs + 2):  # visits 0 and 1 warm the browser (codecs, devices) and are left out
                eager = i % 2 == 1  # interleaved: a page as shipped, a page with the eager baseline
                page, before, chat = _visit(browser, server.url, agent, i, eager)
                if i % 4 < 2:
                    f = page.evaluate(floor)
                    c = _first_call(agent, page)
                else:
                    c = _first_call(agent, page)
                    f = page.evaluate(floor)
                agent.click(".lpcall-close-conv")  # the agent's capacity: one open conversation at a time here
                agent.wait_for_selector(f".lpcall-mine .lpcall-conv-open:has-text('Visitor {i}')", state="detached")
                page.context.close()
                if i < 2:
                    continue
                out["floor"].append(f)
                if eager:
                    out["eager"].append(c)
                    out["eager_before"].append(before)
                else:
                    out["before"].append(before)
                    out["chat"].append(chat)
                    out["call"].append(c)
                print(f"visit {i} ({'eager baseline' if eager else 'as shipped'}): {len(before)} requests before a chat, "
                      f"{len(chat)} with a chat; first call {c:.0f} ms, floor {f:.0f} ms", flush=True)
            browser.close()
    finally:
        server.stop()
    return out


def _sum(fetches: list[Fetch], pick: Any) -> tuple[int, int, int]:
    chosen = [f for f in fetches if pick(f)]
    return len(chosen), sum(f.gzipped for f in chosen), sum(f.served for f in chosen)


def _table(fetches: list[Fetch]) -> str:
    rows = [f"| `{f.path}` | {f.served} | {f.gzipped} | {f.cache} |" for f in fetches]
    return "| request | served bytes | gzip bytes | Cache-Control |\n|---|---|---|---|\n" + "\n".join(rows)


def render(results: dict[str, Any], runs: int, load: float) -> str:
    before, chat = results["before"][0], results["chat"][0]
    n_mod, gz_mod, raw_mod = _sum(before, lambda f: is_static(f) and not is_bus(f))
    n_bus, gz_bus, _ = _sum(before, is_bus)
    n_api, gz_api, _ = _sum(before, lambda f: not is_static(f))
    n_pre, gz_pre, _ = _sum(chat, is_static)
    stable = all(len(b) == len(before) for b in results["before"])
    c50, c95 = statistics.median(results["call"]), percentile(results["call"], 0.95)
    f50, f95 = statistics.median(results["floor"]), percentile(results["floor"], 0.95)
    e_mod, e_gz, _ = _sum(results["eager_before"][0], lambda f: is_static(f) and not is_bus(f))
    e50, e95 = statistics.median(results["eager"]), percentile(results["eager"], 0.95)
    ok_n = "✅" if n_mod <= 5 else "❌"
    ok_b = "✅" if gz_mod <= 15 * 1024 else "❌"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def listing(kind: str) -> str:
        return ", ".join(f"{v:.0f}" for v in results[kind])

    return f"""Measured {when} on {os.cpu_count()} shared cores ({platform.machine()}, load average {load:.1f}),
Chromium headless, example shop (werkzeug in-process), a fresh browser context per visit
(`python -m benchmarks pageweight`, {runs} visits; the request lists were {"the same" if stable else "NOT the same"} in every visit).
Bytes: gzip level 6 of each response body (what a compressing proxy sends a browser that accepts gzip;
the app itself serves them uncompressed: "served bytes").

**Before an invitation, no chat** (home page until the window's socket is open and the network is quiet):

| | requests | gzip | target |
|---|---|---|---|
| the extension's static files after the tag's bus | {n_mod} | {gz_mod / 1024:.1f} KB ({raw_mod / 1024:.1f} KB served) | ≤ 5 {ok_n}, ≤ 15 KB {ok_b} |
| the tag's bus `lptag.js` (every tagged page, cached a year) | {n_bus} | {gz_bus / 1024:.1f} KB | |
| baseline, same run: the call app imported at page load (the old eager loading) | {e_mod} | {e_gz / 1024:.1f} KB | |
| API (client config, visitor identity) | {n_api} | {gz_api / 1024:.1f} KB | |

{_table(before)}

**A chat is open, still no invitation** (what the page prefetches while idle: the call app), {n_pre} requests, {gz_pre / 1024:.1f} KB gzip:

{_table(chat)}

Before this change (commit 8a41f7e, this benchmark without the baseline rows, 4 visits): **13** static
files after the bus, **50.9 KB** gzip (the whole call app: callapp, engine, call UI, recovery, quality,
handoff, resume, texts, support, besides the chat's), first call p50 357 ms against a floor of 224 ms (1.59×).

**First call of a fresh page: Accept → first remote video frame decoded on both sides** (the agent's
invitation comes after the chat opened and the page was idle; Accept once the window listens on the call).
Visits alternate between the page as shipped and the same page with the eager baseline (an init script
imports and starts the call app at page load, as before this change); the floor runs in every visit:

| | p50 | p95 | ratio p50 |
|---|---|---|---|
| first call of the page as shipped (call app prefetched while idle once the chat opened) | {c50:.0f} ms | {c95:.0f} ms | **{c50 / f50:.2f}×** |
| baseline: first call with the call app loaded at page load | {e50:.0f} ms | {e95:.0f} ms | {e50 / f50:.2f}× |
| floor: in-page RTCPeerConnection loopback (same pages, interleaved) | {f50:.0f} ms | {f95:.0f} ms | 1.00× |

As shipped / baseline, p50: **{c50 / e50:.2f}×**.

All runs (ms) — first call as shipped: {listing("call")}; baseline: {listing("eager")}; floor: {listing("floor")}.
"""


def main() -> str | None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args, _ = parser.parse_known_args()
    enter_netns(__file__)
    load0 = os.getloadavg()[0]
    results = measure(args.runs)
    text = render(results, args.runs, (load0 + os.getloadavg()[0]) / 2)
    if args.no_write:
        print(text)
        return None
    if __name__ == "__main__":
        from benchmarks import write_section

        print(text)
        write_section(NAME, text, ISSUE)
        return None
    return text  # python -m benchmarks pageweight writes it


if __name__ == "__main__":
    main()
