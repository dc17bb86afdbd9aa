"""Debian's WebKitGTK (``MiniBrowser --automation``) driven by its ``WebKitWebDriver`` over classic
WebDriver (HTTP + JSON), under ``xvfb-run``: a real engine without WebRTC (Debian builds WebKitGTK
without ``RTCPeerConnection``), for the ``BROWSER_NOT_SUPPORTED`` path.

A ~100-line client over urllib: the few endpoints the test needs (new session, navigate, execute,
find element, click, send keys), with the same method names as the Playwright page API the other
rigs use. Classic WebDriver has no console access, so ``watch_console`` wraps ``console.error`` /
``console.warn`` and ``onerror`` in the page once it has loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from firefoxkit import as_function
from support import free_port

WEBKIT_DRIVER = shutil.which("WebKitWebDriver") or "/usr/bin/WebKitWebDriver"
XVFB_RUN = shutil.which("xvfb-run") or "/usr/bin/xvfb-run"
MINIBROWSER = next(
    (p for p in (os.environ.get("LPCALL_MINIBROWSER", ""), "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser",
                 "/usr/lib/aarch64-linux-gnu/webkit2gtk-4.1/MiniBrowser") if p and os.path.exists(p)),
    "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser",
)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier

WATCH_CONSOLE_JS = """() => {
if (!window.__console) {
  window.__console = [];
  for (const level of ['error', 'warn']) {
    const orig = console[level].bind(console);
    console[level] = (...args) => { window.__console.push(level + ': ' + args.map(String).join(' ')); orig(...args); };
  }
  window.addEventListener('error', (e) => window.__console.push('error: ' + e.message));
  window.addEventListener('unhandledrejection', (e) => window.__console.push('unhandled: ' + e.reason));
}
}"""


class WebDriverError(RuntimeError):
    """A WebDriver command answered with an error."""


class WebKitPage:
    """One WebKitGTK session (one MiniBrowser window) behind a Playwright-like page API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [XVFB_RUN, "-a", "-s", "-nolisten tcp -screen 0 1280x900x24", WEBKIT_DRIVER, f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.timeout = 30.0
        self._wait_driver()
        caps = {"capabilities": {"alwaysMatch": {"webkitgtk:browserOptions": {"binary": MINIBROWSER, "args": ["--automation"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _wait_driver(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/status", session=False)
                return
            except (OSError, WebDriverError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("WebKitWebDriver did not start") from None
                time.sleep(0.1)  # polling interval of a deadline wait

    def _call(self, method: str, path: str, body: Any = None, session: bool = True) -> Any:
        url = self.base + (f"/session/{self.session}" if session and path != "/session" else "") + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + 10) as resp:
                return json.loads(resp.read() or b"null").get("value")
        except urllib.error.HTTPError as exc:
            raise WebDriverError(exc.read().decode(errors="replace")) from None

    def set_default_timeout(self, ms: float) -> None:
        self.timeout = ms / 1000

    def goto(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})
        self.evaluate(WATCH_CONSOLE_JS)

    def evaluate(self, js: str, arg: Any = None) -> Any:
        """An expression's value (or a function's, called with ``arg``), awaited, JSON round-tripped."""
        fn = as_function(js)
        script = (
            "const done = arguments[arguments.length - 1];"
            f"Promise.resolve().then(() => ({fn})(JSON.parse(arguments[0])))"
            ".then(v => done(v === undefined ? null : JSON.stringify(v)), e => done({__error: String(e)}));"
        )
        out = self._call("POST", "/execute/async", {"script": script, "args": [json.dumps(arg)]})
        if isinstance(out, dict) and "__error" in out:
            raise WebDriverError(out["__error"])
        return None if out is None else json.loads(out)

    def _find(self, selector: str) -> str | None:
        """The first visible, enabled element matching ``selector`` (scrolled into view), or None."""
        visible = self.evaluate(
            """(sel) => { const el = document.querySelector(sel);
              if (!el || el.disabled || !el.getClientRects().length) return false;
              const st = getComputedStyle(el); if (st.visibility === 'hidden' || st.display === 'none') return false;
              el.scrollIntoView({block: 'center'}); return true; }""",
            selector,
        )
        if not visible:
            return None
        found = self._call("POST", "/element", {"using": "css selector", "value": selector})
        return str(found[ELEMENT]) if isinstance(found, dict) and ELEMENT in found else None

    def wait_for_selector(self, selector: str, timeout: float | None = None) -> str:
        deadline = time.monotonic() + (timeout / 1000 if timeout is not None else self.timeout)
        while True:
            eid = self._find(selector)
            if eid:
                return eid
            if time.monotonic() > deadline:
                raise AssertionError(f"WebKit: no visible element {selector!r}")
            time.sleep(0.05)  # polling interval of a deadline wait

    def click(self, selector: str) -> None:
        self._call("POST", f"/element/{self.wait_for_selector(selector)}/click", {})

    def fill(self, selector: str, value: str) -> None:
        eid = self.wait_for_selector(selector)
        self._call("POST", f"/element/{eid}/clear", {})
        self._call("POST", f"/element/{eid}/value", {"text": value})

    def console(self) -> list[str]:
        return list(self.evaluate("window.__console || []"))

    def close(self) -> None:
        try:
            self._call("DELETE", "", session=True)
        except (OSError, WebDriverError):
            pass
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
