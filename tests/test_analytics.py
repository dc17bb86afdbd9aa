"""Analytics adapters in Chromium: each library's own global receives the call lifecycle events.

The page is a real tagged page of an app with ``LPCALL_ANALYTICS=<provider>``; the tag's lazy
loader imports ``consumer.js``, which reads ``/api/client-config`` and installs
``analytics.js``; the test then publishes the lifecycle events on the real ``lpTag.events``
bus exactly as the engagement window / a custom integration (``lpCoBrowse``) and the call app
(``lpCall``, ``cobrowse``) do, and reads what the library's global received. The globals are
defined by an init script, the way a site's snippet defines them before our tag runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support import wait_for

from flask_lpcall import LPCall

PAGE = "<!doctype html><html><head><title>Shop</title></head><body><h1>Shop</h1></body></html>"

PAYLOAD = {
    "serviceId": "c-1#0b7f0b5e-0000-4000-8000-000000000001", "agentId": "bob", "visitorName": "Vera",
    "mode": "VIDEO_CALL", "ssid": "s-1", "svid": "v-1",
}

# What the test publishes, in order (appName, eventName, data).
LIFECYCLE = [
    ("lpCoBrowse", "cobrowseOffered", PAYLOAD),
    ("lpCoBrowse", "cobrowseAccepted", PAYLOAD),
    ("lpCall", "callConnected", {"serviceId": PAYLOAD["serviceId"], "mode": "VIDEO_CALL"}),
    ("lpCall", "callEnded", {"serviceId": PAYLOAD["serviceId"], "mode": "VIDEO_CALL", "reason": "hangup_consumer",
                             "errorId": None, "durationSeconds": 42.4}),
    ("lpCoBrowse", "cobrowseDeclined", PAYLOAD),
    ("cobrowse", "sessionError", {"msg": "We cannot access your camera", "id": "NO_CAMERA_ACCESS"}),
]
EXPECTED = ["invitation_shown", "invitation_accepted", "call_connected", "call_ended", "invitation_declined", "call_error"]

# Init scripts: the libraries' standard globals, recording what they receive.
GLOBALS = {
    "gtag": "window.__got = []; window.gtag = function () { window.__got.push(Array.from(arguments)); };",
    "dataLayer": "window.dataLayer = []; window.__got = window.dataLayer;",
    "ga": "window.__got = []; window.ga = function () { window.__got.push(Array.from(arguments)); };",
    "_paq": "window._paq = [['trackPageView']]; window.__got = window._paq;",
    "wts": "window.wts = []; window.__got = window.wts;",
    "wt": "window.__got = []; window.wt = {sendinfo: function (o) { window.__got.push(o); }};",
    "utag": "window.__got = []; window.utag = {link: function (o) { window.__got.push(o); }, view: function () {}};",
}


def make_app(tmp_path: Path, provider: str) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / provider))
    app.config.update(SECRET_KEY="analytics", LPCALL_ANALYTICS=provider, LPCALL_REPORT_DB=str(tmp_path / "r.sqlite3"))
    LPCall(app)
    app.add_url_rule("/", "home", lambda: PAGE)
    return app


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from support import start_live_server

    tmp = tmp_path_factory.mktemp("analytics")
    started = {p: start_live_server(make_app(tmp, p)) for p in ("none", "google", "piwik", "webtrekk", "tealium")}
    yield started
    for server in started.values():
        server.stop()


def open_page(browser: Any, server: Any, init: str | None) -> tuple[Any, Any, list[str]]:
    context = browser.new_context()
    errors: list[str] = []
    if init:
        context.add_init_script(init)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.wait_for_function("() => window.lpTag && window.lpTag.events && window.lpTag.lpcall")
    return context, page, errors


def install(page: Any) -> str | None:
    """Load the consumer app like the tag does and wait until consumer.js installed analytics."""
    page.evaluate("() => window.lpTag.lpcall.load()")
    # the module instance consumer.js imported: the same versioned URL (flask_lpcall/assets.py)
    assets = page.evaluate("() => window.lpTag.lpcall.assets")
    page.evaluate(f"async () => {{ window.__an = await import('{assets}lpcall/analytics.js'); }}")
    page.evaluate("() => window.__lpcallConsumer")  # the consumer entry finished its start-up
    return page.evaluate("() => window.__an.installed()")


def publish_lifecycle(page: Any) -> None:
    ids = page.evaluate(
        "(events) => events.map(([a, e, d]) => window.lpTag.events.publish(a, e, d))",
        [list(e) for e in LIFECYCLE],
    )
    assert all(ids), f"the bus refused an event: {ids}"


def tracked(page: Any) -> list[Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.__got))")


def names(got: list[Any], pick: Any) -> list[str]:
    return [n for n in (pick(x) for x in got) if n]


@pytest.mark.browser
@pytest.mark.parametrize(
    ("provider", "global_name"),
    [("google", "gtag"), ("google", "dataLayer"), ("google", "ga"), ("piwik", "_paq"), ("webtrekk", "wts"),
     ("webtrekk", "wt"), ("tealium", "utag")],
)
def test_adapter_receives_the_lifecycle_events(browser: Any, servers: dict[str, Any], provider: str, global_name: str) -> None:
    context, page, errors = open_page(browser, servers[provider], GLOBALS[global_name])
    try:
        wait_for(lambda: install(page) == provider, timeout=15, message=f"consumer.js installing {provider} analytics")
        publish_lifecycle(page)
        got = wait_for(lambda: len(tracked(page)) >= 6 and tracked(page), timeout=5, message="six tracked events")
        if global_name == "gtag":
            assert names(got, lambda c: c[0] == "event" and c[1])[:6] == [f"lpcall_{n}" for n in EXPECTED]
            ended = next(c for c in got if c[1] == "lpcall_call_ended")[2]
            assert ended == {"event_category": "lpcall", "event_label": "video", "call_mode": "VIDEO_CALL",
                             "close_reason": "hangup_consumer", "value": 42}
            error = next(c for c in got if c[1] == "lpcall_call_error")[2]
            assert error["event_label"] == "NO_CAMERA_ACCESS" and error["error_id"] == "NO_CAMERA_ACCESS"
        elif global_name == "dataLayer":
            assert names(got, lambda d: d.get("event")) == [f"lpcall_{n}" for n in EXPECTED]
            assert got[0] == {"event": "lpcall_invitation_shown", "event_category": "lpcall", "event_label": "video",
                              "call_mode": "VIDEO_CALL"}
        elif global_name == "ga":
            assert [c[:4] for c in got] == [["send", "event", "lpcall", n] for n in EXPECTED]
            assert got[3] == ["send", "event", "lpcall", "call_ended", "video", 42]
        elif global_name == "_paq":
            assert got[0] == ["trackPageView"], "the site's own commands are left alone"
            assert [c[:3] for c in got[1:]] == [["trackEvent", "lpcall", n] for n in EXPECTED]
            assert got[4] == ["trackEvent", "lpcall", "call_ended", "video", 42]
            assert got[6] == ["trackEvent", "lpcall", "call_error", "NO_CAMERA_ACCESS"]
        elif global_name == "wts":
            assert [c[:2] for c in got] == [["send", "click"]] * 6
            assert [c[2]["linkId"] for c in got] == [f"lpcall.{n}" for n in EXPECTED]
            assert got[3][2]["customClickParameter"] == {"1": "VIDEO_CALL", "2": "hangup_consumer", "3": "42"}
        elif global_name == "wt":
            assert [c["linkId"] for c in got] == [f"lpcall.{n}" for n in EXPECTED]
            assert got[5]["customClickParameter"] == {"2": "NO_CAMERA_ACCESS"}
        elif global_name == "utag":
            assert [c["event_name"] for c in got] == [f"lpcall_{n}" for n in EXPECTED]
            assert got[3] == {"event_name": "lpcall_call_ended", "event_category": "lpcall", "event_action": "call_ended",
                              "event_label": "video", "call_mode": "VIDEO_CALL", "close_reason": "hangup_consumer",
                              "call_duration": 42}
        flat = repr(got)
        for private in ("Vera", "bob", PAYLOAD["serviceId"], "s-1", "v-1"):
            assert private not in flat, f"{private!r} leaked to the analytics library"
        assert errors == []
    finally:
        context.close()


@pytest.mark.browser
def test_events_published_before_analytics_loaded_are_tracked_once(browser: Any, servers: dict[str, Any]) -> None:
    context, page, errors = open_page(browser, servers["piwik"], GLOBALS["_paq"])
    try:
        # the invitation arrives before the consumer app is loaded (publishing it triggers the load)
        assert page.evaluate("(p) => window.lpTag.events.publish('lpCoBrowse', 'cobrowseOffered', p)", PAYLOAD)
        wait_for(lambda: install(page) == "piwik", timeout=15, message="analytics installed")
        page.evaluate("() => window.__an.installAnalytics('piwik')")  # a second install is a no-op
        wait_for(lambda: len(tracked(page)) >= 2, timeout=5, message="the replayed invitation")
        assert tracked(page) == [["trackPageView"], ["trackEvent", "lpcall", "invitation_shown", "video"]]
        assert errors == []
    finally:
        context.close()


@pytest.mark.browser
def test_no_global_and_provider_none_break_nothing(browser: Any, servers: dict[str, Any]) -> None:
    # a provider configured but its library missing from the page
    for provider in ("google", "piwik", "webtrekk", "tealium"):
        context, page, errors = open_page(browser, servers[provider], None)
        try:
            wait_for(lambda page=page, provider=provider: install(page) == provider, timeout=15, message="installed")
            # another listener on the same bus still gets every event
            page.evaluate("""() => { window.__bus = [];
                for (const a of ['lpCoBrowse', 'lpCall', 'cobrowse'])
                  window.lpTag.events.bind({appName: a, eventName: '*', func: (d, i) => window.__bus.push(i.eventName)}); }""")
            publish_lifecycle(page)
            assert page.evaluate("() => window.__bus") == [e for _, e, _ in LIFECYCLE]
            assert page.evaluate("() => window.__an.track('call_connected', {mode: 'VOICE_CALL'})") is False
            assert errors == []
        finally:
            context.close()
    # LPCALL_ANALYTICS = none: a present library receives nothing
    context, page, errors = open_page(browser, servers["none"], GLOBALS["gtag"])
    try:
        page.evaluate("() => window.lpTag.lpcall.load()")
        page.evaluate("() => window.__lpcallConsumer")
        publish_lifecycle(page)
        assets = page.evaluate("() => window.lpTag.lpcall.assets")
        assert page.evaluate(f"async () => (await import('{assets}lpcall/analytics.js')).installed()") is None
        assert tracked(page) == [] and errors == []
    finally:
        context.close()


@pytest.mark.browser
def test_a_throwing_library_does_not_reach_the_bus(browser: Any, servers: dict[str, Any]) -> None:
    init = "window.__got = []; window.utag = {link: function (o) { window.__got.push(o); throw new Error('utag down'); }};"
    context, page, errors = open_page(browser, servers["tealium"], init)
    try:
        wait_for(lambda: install(page) == "tealium", timeout=15, message="installed")
        publish_lifecycle(page)
        assert len(tracked(page)) == 6 and errors == []
    finally:
        context.close()


@pytest.mark.browser
def test_a_resumed_call_is_counted_once_per_tab(browser: Any, servers: dict[str, Any]) -> None:
    """A reload during a call makes the call app publish callConnected again: tracked once per call."""
    context, page, errors = open_page(browser, servers["piwik"], "window._paq = []; window.__got = window._paq;")
    try:
        connected = {"serviceId": PAYLOAD["serviceId"], "mode": "VOICE_CALL"}
        wait_for(lambda: install(page) == "piwik", timeout=15, message="installed")
        page.evaluate("(d) => window.lpTag.events.publish('lpCall', 'callConnected', d)", connected)
        assert tracked(page) == [["trackEvent", "lpcall", "call_connected", "voice"]]
        page.reload()
        page.wait_for_function("() => window.lpTag && window.lpTag.lpcall")
        wait_for(lambda: install(page) == "piwik", timeout=15, message="installed after the reload")
        page.evaluate("(d) => window.lpTag.events.publish('lpCall', 'callConnected', d)", connected)
        other = {**connected, "serviceId": "c-1#another-call"}
        page.evaluate("(d) => window.lpTag.events.publish('lpCall', 'callConnected', d)", other)
        assert tracked(page) == [["trackEvent", "lpcall", "call_connected", "voice"]], "only the new call is tracked"
        assert errors == []
    finally:
        context.close()
