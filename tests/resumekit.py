"""Helpers of the resume tests and benchmark: the example site, an agent tab and a visitor tab in one call.

Runs in the pytest session's private network namespace (or the benchmark's own); Chromium is the
session's (fake camera/microphone, permission prompts auto-accepted).
"""

from __future__ import annotations

import time
from typing import Any

from support import INBOUND_STATS_JS, start_chat, wait_for

from example_site.app import create_app
from flask_lpcall.state import get_state

# Runs before the page's scripts: the engine's test hook and a recorder of every lpTag publish
# (lptag.js keeps a pre-existing lpTag.events and forwards publishes to it).
INIT = """
window.__lpcallTest = true;
window.__events = [];
window.lpTag = window.lpTag || {};
window.lpTag.events = {publish: function (app, ev, data) {
  window.__events.push({app: app, ev: ev, data: JSON.parse(JSON.stringify(data || null)), t: performance.now()});
}};
"""

# inbound stats of the NEWEST open peer connection only (a resumed call has a new one)
NEWEST_STATS_JS = """
async () => {
  const pcs = (window.__lpcallPeers || []).filter(pc => pc.connectionState !== 'closed');
  const pc = pcs.at(-1);
  const out = {framesDecoded: 0, audioBytes: 0, index: (window.__lpcallPeers || []).indexOf(pc), state: pc ? pc.connectionState : null};
  if (!pc) return out;
  (await pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.framesDecoded += r.framesDecoded || 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audioBytes += r.bytesReceived || 0;
  });
  return out;
}
"""

ENGINE_JS = """() => {
  const c = window.__lpcallCallApp && window.__lpcallCallApp.current;
  const e = c ? c.engine : (window.__lpcallEngines || []).at(-1);
  if (!e) return null;
  return {serviceId: e.serviceId, status: e.status, muted: e.muted, cameraOff: e.cameraOff,
          peerPresent: e.peerPresent, closed: e.closedInfo, iceRestarts: e.recovery ? e.recovery.iceRestarts : null,
          peers: (window.__lpcallPeers || []).length};
}"""


def call_keys(app: Any) -> list[str]:
    store = get_state(app).store
    return sorted(k for k in store.keys("") if k.startswith(("call:", "presence:")) or k.endswith(":call"))


class Rig:
    """A live example site, an agent page and a consumer page (each in its own browser context)."""

    def __init__(self, browser: Any, live_server: Any, **config: Any) -> None:
        config.setdefault("LPCALL_REPORT_DB", ":memory:")
        self.app = create_app(**config)
        self.server = live_server(self.app)
        self.browser = browser
        self.contexts: list[Any] = []
        self.agent: Any = None
        self.consumer: Any = None
        self.consumer_ctx: Any = None
        #: more scripts every page of the rig runs first (probes of a test or benchmark)
        self.init_scripts: list[str] = []

    def context(self) -> Any:
        ctx = self.browser.new_context(viewport={"width": 1000, "height": 800})
        ctx.add_init_script(INIT)
        for script in self.init_scripts:
            ctx.add_init_script(script)
        self.contexts.append(ctx)
        return ctx

    def open_agent(self) -> Any:
        page = self.agent = self.context().new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{self.server.url}/lpcall/agent/login")
        page.fill("#lpcall-username", "bob")
        page.fill("#lpcall-password", "bob")
        page.click(".lpcall-login-form [type=submit]")
        page.wait_for_selector("#lpcall-agent")
        return page

    def open_consumer(self, path: str = "/") -> Any:
        self.consumer_ctx = self.context()
        page = self.consumer = self.consumer_ctx.new_page()
        page.set_default_timeout(20_000)
        return start_chat(page, self.server.url, path=path)

    def start(self, mode: str = "VIDEO_CALL") -> str:
        """Agent and visitor in a connected call with media both ways; returns the serviceId."""
        self.open_agent()
        self.open_consumer()
        self.agent.click(".lpcall-mine .lpcall-conv-open")
        self.agent.click(f"button.lpcall-call-btn[data-mode={mode}]")
        self.agent.wait_for_selector(".lpcall-agent-call .lpcall-call")
        self.consumer.click(".lpcall-invitation .lpcall-accept")
        for page in (self.agent, self.consumer):
            self.wait_frames(page, video=mode == "VIDEO_CALL")
        return str(self.engine(self.consumer)["serviceId"])

    # -- observations ---------------------------------------------------------------
    def stats(self, page: Any) -> dict[str, Any]:
        return page.evaluate(INBOUND_STATS_JS)  # type: ignore[no-any-return]

    def newest(self, page: Any) -> dict[str, Any]:
        return page.evaluate(NEWEST_STATS_JS)  # type: ignore[no-any-return]

    def engine(self, page: Any) -> dict[str, Any]:
        return page.evaluate(ENGINE_JS)  # type: ignore[no-any-return]

    def peer_count(self, page: Any) -> int:
        return int(page.evaluate("(window.__lpcallPeers || []).length"))

    def wait_frames(self, page: Any, *, video: bool = True, above: int = 0, min_index: int = 0, timeout: float = 30) -> dict[str, Any]:
        """Remote media decoded on the newest peer connection, one created at ``min_index`` or later."""

        def ok() -> dict[str, Any] | None:
            s = self.newest(page)
            if s["index"] < min_index:
                return None
            good = s["framesDecoded"] > above if video else s["audioBytes"] > above
            return s if good else None

        return wait_for(ok, timeout=timeout, message=f"remote media decoded ({'video' if video else 'audio'} > {above})")

    def events(self, page: Any, app: str | None = None, ev: str | None = None) -> list[dict[str, Any]]:
        out = page.evaluate("window.__events || []")
        return [e for e in out if (app is None or e["app"] == app) and (ev is None or e["ev"] == ev)]

    def stored_call(self, page: Any) -> Any:
        return page.evaluate("JSON.parse(sessionStorage.getItem('lpcall.call') || 'null')")

    def reload_consumer(self) -> float:
        """Reload the visitor's page; seconds until remote frames are decoded on its NEW peer connection."""
        t0 = time.monotonic()
        self.consumer.reload()
        wait_for(lambda: self.events(self.consumer, "cobrowse", "sessionResume"), timeout=10, message="sessionResume")
        self.wait_frames(self.consumer)
        return time.monotonic() - t0

    def close(self) -> None:
        for ctx in self.contexts:
            try:
                ctx.close()
            except Exception as exc:  # noqa: BLE001 - closing at teardown
                print(f"context close failed: {exc}")


DIAG_JS = """() => (window.__lpcallEngines || []).map(e => ({role: e.role, status: e.status, peerPresent: e.peerPresent,
  closed: e.closedInfo, destroyed: e._destroyed, pc: e.pc && e.pc.connectionState, sig: e.pc && e.pc.signalingState,
  restarts: e.recovery && e.recovery.iceRestarts, trace: (e.trace || []).slice(-40)}))"""


def diagnose(r: Rig) -> str:
    """What each page's call engines went through (for failure messages)."""
    out = []
    for name, page in (("agent", r.agent), ("consumer", r.consumer)):
        try:
            out.append(f"{name}: {page.evaluate(DIAG_JS)}")
        except Exception as exc:  # noqa: BLE001 - a closed page
            out.append(f"{name}: {exc}")
    return "\n".join(out)
