"""Debian's Firefox ESR driven over WebDriver BiDi, behind the small part of Playwright's page API the tests use.

Why this and not Playwright or Node: Playwright's Firefox is a patched build that cannot be downloaded
here, and geckodriver is not packaged. Stock Firefox speaks WebDriver BiDi itself
(``--remote-debugging-port``), so a ~250-line client over the ``websockets`` package (already a test
dependency) drives it from pytest with no second toolchain. One Firefox process per participant: two
tabs of one headless Firefox throttle the background tab.

The facade (``FirefoxBrowser.new_context().new_page()``) offers ``goto``, ``reload``, ``evaluate``,
``click`` (a real pointer click through ``input.performActions``: a user gesture), ``fill``,
``wait_for_selector``, ``add_init_script``, ``set_default_timeout`` and ``console`` (log entries), so
the same rigs drive Chromium and Firefox.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

FIREFOX = os.environ.get("LPCALL_FIREFOX") or shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"

# Fake camera/microphone without a prompt, loopback ICE candidates, and no background traffic.
PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.update.enabled": False,
    "extensions.update.enabled": False,
    "app.normandy.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "dom.min_background_timeout_value": 0,
}

# A visitor who refuses the camera and microphone: no fake-device bypass, permission blocked.
DENY_MEDIA: dict[str, Any] = {
    "media.navigator.permission.disabled": False,
    "permissions.default.camera": 2,
    "permissions.default.microphone": 2,
}

_LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class BiDiError(RuntimeError):
    """A WebDriver BiDi command answered with an error."""


class BiDi:
    """One WebDriver BiDi session: commands by id, events to callbacks, answered from a reader thread."""

    def __init__(self, url: str) -> None:
        self.ws: ClientConnection = connect(url + "/session", max_size=None, open_timeout=20)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._reader = threading.Thread(target=self._read, name="bidi-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        fut = self._pending.pop(msg["id"], None)
                    if fut is None:
                        continue
                    if msg.get("type") == "error":
                        fut.set_exception(BiDiError(f"{msg.get('error')}: {msg.get('message')}"))
                    else:
                        fut.set_result(msg.get("result"))
                elif msg.get("type") == "event":
                    for listener in list(self.listeners):
                        listener(msg["method"], msg.get("params", {}))
        except Exception:  # noqa: BLE001, S110 - the browser went away; pending commands fail below
            pass
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(BiDiError("the browser closed the WebDriver BiDi connection"))

    def send(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> Any:
        cid = next(self._ids)
        fut: Future[Any] = Future()
        with self._lock:
            self._pending[cid] = fut
        self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001, S110 - closing at teardown
            pass


class FirefoxBrowser:
    """Launches one Firefox per context (``new_context``), as Playwright's ``browser`` would hand out contexts."""

    def __init__(self) -> None:
        self.contexts: list[FirefoxContext] = []

    def new_context(self, viewport: dict[str, int] | None = None, permissions: list[str] | None = None, **_: Any) -> FirefoxContext:
        """Like Playwright's: ``permissions`` without camera/microphone blocks them (NotAllowedError)."""
        prefs = {} if permissions is None or {"camera", "microphone"} <= set(permissions) else DENY_MEDIA
        ctx = FirefoxContext(viewport, prefs)
        self.contexts.append(ctx)
        return ctx

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()
        self.contexts.clear()


class FirefoxContext:
    """One headless Firefox process with a fresh profile."""

    def __init__(self, viewport: dict[str, int] | None = None, prefs: dict[str, Any] | None = None) -> None:
        self.viewport = viewport
        self.profile = Path(tempfile.mkdtemp(prefix="lpcall-firefox-"))
        prefs = {**PREFS, **(prefs or {})}
        (self.profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()))
        self.proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", str(self.profile), "--remote-debugging-port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MOZ_HEADLESS": "1"},
        )
        self.log: list[str] = []
        url = self._wait_listening()
        self.bidi = BiDi(url)
        self.bidi.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.init_scripts: list[str] = []
        self.pages: list[FirefoxPage] = []

    def _wait_listening(self, timeout: float = 60.0) -> str:
        assert self.proc.stderr is not None
        found: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                m = _LISTENING.search(line)
                if m and not found:
                    found.append(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name="firefox-stderr", daemon=True).start()
        if not ready.wait(timeout) or not found:
            self.proc.kill()
            raise RuntimeError("Firefox did not start WebDriver BiDi:\n" + "\n".join(self.log[-30:]))
        return found[0]

    def add_init_script(self, script: str) -> None:
        self.init_scripts.append(script)
        self.bidi.send("script.addPreloadScript", {"functionDeclaration": "() => {\n" + script + "\n}"})

    def new_page(self) -> FirefoxPage:
        tree = self.bidi.send("browsingContext.getTree", {})
        used = {p.context for p in self.pages}
        free = [c["context"] for c in tree["contexts"] if c["context"] not in used]
        context = free[0] if free else self.bidi.send("browsingContext.create", {"type": "tab"})["context"]
        page = FirefoxPage(self, context)
        if self.viewport:
            self.bidi.send("browsingContext.setViewport", {"context": context, "viewport": self.viewport})
        self.pages.append(page)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.bidi.send("browser.close", {}, timeout=10)
            except Exception:  # noqa: BLE001, S110 - already going away
                pass
        self.bidi.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


_FUNCTION = re.compile(r"^\s*(async\s+)?(function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)")


def as_function(js: str) -> str:
    """Playwright's rule for ``evaluate``: a function stays one; anything else is an expression."""
    body = js.strip()
    return body if _FUNCTION.match(body) else f"() => ({body})"


class FirefoxPage:
    """The subset of Playwright's ``Page`` the rigs use, over one BiDi browsing context."""

    def __init__(self, ctx: FirefoxContext, context: str) -> None:
        self.ctx = ctx
        self.context = context
        self.timeout = 30.0
        self.console: list[dict[str, Any]] = []
        ctx.bidi.listeners.append(self._on_event)
        ctx.bidi.send("session.subscribe", {"events": ["log.entryAdded"], "contexts": [context]})

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "log.entryAdded" and params.get("source", {}).get("context") == self.context:
            self.console.append({"level": params.get("level"), "text": params.get("text"), "type": params.get("type")})

    # -- navigation -------------------------------------------------------------------
    def set_default_timeout(self, ms: float) -> None:
        self.timeout = ms / 1000

    def goto(self, url: str) -> None:
        self.ctx.bidi.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}, self.timeout)

    def reload(self) -> None:
        self.ctx.bidi.send("browsingContext.reload", {"context": self.context, "wait": "complete"}, self.timeout)

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    # -- script -----------------------------------------------------------------------
    def evaluate(self, js: str, arg: Any = None) -> Any:
        """Playwright's rules: a function is called with ``arg``, anything else is an expression."""
        fn = as_function(js)
        declaration = f"async (argJson) => {{ const v = await ({fn})(JSON.parse(argJson)); return v === undefined ? undefined : JSON.stringify(v); }}"
        res = self.ctx.bidi.send(
            "script.callFunction",
            {
                "functionDeclaration": declaration,
                "awaitPromise": True,
                "target": {"context": self.context},
                "arguments": [{"type": "string", "value": json.dumps(arg)}],
            },
            self.timeout,
        )
        if res.get("type") == "exception":
            details = res.get("exceptionDetails", {})
            raise BiDiError(f"evaluate failed: {details.get('text')}")
        value = res["result"]
        return json.loads(value["value"]) if value.get("type") == "string" else None

    # -- elements ---------------------------------------------------------------------
    def _element(self, selector: str) -> str | None:
        """sharedId of the first visible, enabled element matching ``selector`` (scrolled into view)."""
        res = self.ctx.bidi.send(
            "script.callFunction",
            {
                "functionDeclaration": """(sel) => {
                  const el = document.querySelector(sel);
                  if (!el || el.disabled || !el.getClientRects().length) return null;
                  const st = getComputedStyle(el);
                  if (st.visibility === 'hidden' || st.display === 'none') return null;
                  el.scrollIntoView({block: 'center', inline: 'center'});
                  return el;
                }""",
                "awaitPromise": False,
                "target": {"context": self.context},
                "arguments": [{"type": "string", "value": selector}],
            },
        )
        value = res.get("result", {})
        return value.get("sharedId") if value.get("type") == "node" else None

    def wait_for_selector(self, selector: str, timeout: float | None = None) -> str:
        deadline = time.monotonic() + (timeout / 1000 if timeout is not None else self.timeout)
        while True:
            shared = self._element(selector)
            if shared:
                return shared
            if time.monotonic() >= deadline:
                raise AssertionError(f"Firefox: no visible element {selector!r}")
            time.sleep(0.05)  # polling interval of a deadline wait

    def wait_for_function(self, js: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout / 1000 if timeout is not None else self.timeout)
        while True:
            value = self.evaluate(js)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"Firefox: timed out waiting for {js[:80]!r}")
            time.sleep(0.02)  # polling interval of a deadline wait

    def click(self, selector: str, timeout: float | None = None) -> None:
        shared = self.wait_for_selector(selector, timeout)
        origin = {"type": "element", "element": {"sharedId": shared}}
        actions = [
            {"type": "pointerMove", "x": 0, "y": 0, "origin": origin},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0},
        ]
        self.ctx.bidi.send(
            "input.performActions",
            {"context": self.context, "actions": [{"type": "pointer", "id": "mouse", "actions": actions}]},
            self.timeout,
        )

    def fill(self, selector: str, value: str) -> None:
        self.wait_for_selector(selector)
        self.evaluate(
            """([sel, value]) => { const el = document.querySelector(sel); el.focus(); el.value = value;
                 el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); }""",
            [selector, value],
        )

    def errors(self) -> list[str]:
        return [str(e["text"]) for e in self.console if e.get("level") == "error"]
