"""The eager tag in real Chromium: example pages tagged, the lpTag bus, hostile pages, lazy loader.

One browser for the module, a fresh context per test. The lazily loaded consumer app
(``static/lpcall/consumer.js``) belongs to another area; where a test is about the bus
alone, the request is answered by a small stub module (``CONSUMER_STUB``) so the test
sees exactly when it is loaded and what the bus replays to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g, render_template_string
from support import LiveServer, start_live_server, wait_for

from example_site.app import create_app
from flask_lpcall import LPCall, exempt
from flask_lpcall.web.assets import tree_version

pytestmark = pytest.mark.browser

SEED_PAYLOAD = {
    "serviceId": "cc05f2b9-916b-496e-89fe-66a46d975ae2#7904fffd-fc68-4d93-b611-4dc06ab26bf4",
    "agentId": "le83624296.356285412",
    "visitorName": "Jane",
    "mode": "VIDEO_CALL",
    "ssid": "s1",
    "svid": "v1",
}
SEED_ERROR = re.compile(r"^\d\d:\d\d:\d\d Events : Error executing (\w+) eventId: evId_[0-9a-z]+=(\w+) is (.+) LEVEL: ERROR$")
CONSUMER_STUB = """
window.__consumerLoads = (window.__consumerLoads || 0) + 1;
window.__replayed = [];
lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", replay: true,
                   func: (data, info) => window.__replayed.push([info.eventName, data && data.serviceId])});
"""
PAGE = """<!doctype html><html><head><title>{{ title }}</title>{{ head|safe }}</head>
<body><h1>{{ title }}</h1><button id="b" onclick="this.textContent='clicked'">click me</button>{{ body|safe }}</body></html>"""

PREEXISTING_LPTAG = """<script>
window.__siteBus = [];
window.lpTag = {site: "brand-42", section: ["shop"], sdes: {send: function () { return "sdes"; }},
                taglets: {rendererStub: {ok: true}},
                events: {siteFlag: "kept", publish: function (a, e, d) { window.__siteBus.push(a + "/" + e); }, bind: function () {}}};
</script>"""
# Run right after the tag, before the bus has arrived (the stub queues), and again on a page whose bus is
# there: both must log the same. Publish-before-bind without replay is not delivered; a listener's own
# publish is delivered inside the outer one; unbind with the id bind returned; a replaying bind sees history.
EARLY_CALLS = """
window.__log = [];
const ev = lpTag.events, log = (x) => window.__log.push(x);
ev.publish("cobrowse", "early", {n: 0});
const a = ev.bind("cobrowse", "*", (d, i) => log("a:" + i.eventName + ":" + d.n));
ev.publish("cobrowse", "one", {n: 1});
const b = ev.bind({appName: "cobrowse", eventName: "two", func: (d) => { log("b:" + d.n); ev.publish("cobrowse", "nested", {n: 3}); }});
ev.trigger("cobrowse", "two", {n: 2});
ev.unbind(b);
ev.publish("cobrowse", "two", {n: 4});
ev.bind({appName: "cobrowse", eventName: "*", replay: true, func: (d, i) => log("r:" + i.eventName)});
ev.publish("lpCoBrowse", "cobrowseOffered", {mode: "SCREEN"});
ev.publish("cobrowse", "last", {n: 5});
window.__early = {a, b, publish: ev.publish("cobrowse", "x", {n: 6}) === undefined, fired: ev.hasFired("cobrowse").length,
                  logged: window.__log.length, queued: !!ev._lpq};
"""
BROKEN_ADD_EVENT_LISTENER = """<script>
window.addEventListener = function () { throw new Error("this site replaced addEventListener"); };
window.__siteListenerCalls = 0;
</script>"""


def _test_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="browser-tests", **config)
    LPCall(app)

    def page(title: str, head: str = "", body: str = "") -> str:
        return render_template_string(PAGE, title=title, head=head, body=body)

    @app.get("/plain")
    def plain() -> str:
        return page("plain")

    @app.get("/preexisting")
    def preexisting() -> str:
        return page("preexisting", PREEXISTING_LPTAG)

    @app.get("/broken-listener")
    def broken_listener() -> str:
        return page("broken", BROKEN_ADD_EVENT_LISTENER)

    def csp_page(nonce: str, policy: str, heading: str) -> Any:
        g.csp_nonce = nonce
        html = f"<!doctype html><html><head><title>csp</title></head><body><h1>{heading}</h1></body></html>"
        resp = app.make_response(html)
        resp.headers["Content-Security-Policy"] = policy
        return resp

    @app.get("/csp")
    def csp() -> Any:
        return csp_page("n0nce4lpcall", "script-src 'nonce-n0nce4lpcall' 'strict-dynamic'", "strict CSP")

    @app.get("/early")
    def early() -> str:
        # a site's inline script right after the tag: it runs before the asynchronously loaded bus
        return render_template_string(
            "<!doctype html><html><head><title>early</title>{{ lpcall_tag() }}<script>{{ calls|safe }}</script>"
            "</head><body><h1>early</h1></body></html>", calls=EARLY_CALLS)

    @app.get("/csp-nonce-only")
    def csp_nonce_only() -> Any:
        return csp_page("n0nce-only", "script-src 'nonce-n0nce-only'; object-src 'none'", "nonce-only CSP")

    @app.get("/host")
    def host() -> str:
        return page("host", body='<iframe id="f1" src="/plain"></iframe><iframe id="f2" src="/framed-manual"></iframe>')

    @app.get("/framed-manual")
    @exempt
    def framed_manual() -> str:
        # a page that places the tag by hand even though it is shown in a frame: the JS must stay inert
        return render_template_string("<!doctype html><html><head>{{ lpcall_tag() }}</head><body>framed</body></html>")

    return app


@pytest.fixture(scope="module")
def shop() -> Iterator[LiveServer]:
    server = start_live_server(create_app())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site() -> Iterator[LiveServer]:
    server = start_live_server(_test_app())
    yield server
    server.stop()


class Watch:
    """Console messages, page errors and consumer.js requests of one browser context."""

    def __init__(self, context: Any, stub: bool | int = True) -> None:
        self.console: list[tuple[str, str]] = []
        self.page_errors: list[str] = []
        self.consumer_requests: list[str] = []
        if stub is True:
            context.route("**/lpcall/consumer.js", self._stub)
        elif stub:
            context.route("**/lpcall/consumer.js", lambda route: route.fulfill(status=int(stub), body="missing"))
        context.on("request", lambda r: self.consumer_requests.append(r.url) if "consumer.js" in r.url else None)
        context.on("page", self.attach)

    def _stub(self, route: Any) -> None:
        route.fulfill(status=200, content_type="text/javascript", body=CONSUMER_STUB)

    def attach(self, page: Any) -> None:
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def until(self, page: Any, condition: Any, message: str) -> Any:
        """wait_for(condition), letting Playwright deliver pending events between polls."""

        def pump() -> Any:
            page.evaluate("0")  # sync Playwright dispatches console/page events only inside calls
            return condition()

        return wait_for(pump, message=message)

    def errors(self) -> list[re.Match[str]]:
        return [m for t, text in self.console if t == "error" and (m := SEED_ERROR.match(text))]


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


# -- the example site --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/products/aurora-espresso", "/support"])
def test_each_example_page_is_tagged_and_lptag_works(context: Any, shop: LiveServer, path: str) -> None:
    watch = Watch(context, stub=True)
    page = context.new_page()
    page.goto(shop.url + path)
    assert page.locator("head script[data-lpcall-tag]").count() == 1
    assert page.locator("script[data-lpcall-tag]").count() == 1
    # the shop renders as a shop: header, navigation, its own stylesheet applied
    assert page.get_by_role("navigation", name="Main").is_visible()
    assert page.locator("h1").first.is_visible()
    assert page.evaluate("getComputedStyle(document.querySelector('.site-header')).backgroundColor") == "rgb(43, 33, 24)"
    info = page.evaluate(
        """() => ({
        bus: ['publish', 'bind', 'unbind'].every(f => typeof lpTag.events[f] === 'function'),
        sid: lpTag.taglets.lp_monitoringSDK.getSid(), vid: lpTag.taglets.lp_monitoringSDK.getVid(),
        config: window.lpCallConfig})"""
    )
    assert info["bus"] and info["sid"] and info["vid"]
    # default config except the engagement window, which the example site turns on: consumer app loads eagerly
    assert info["config"] == {"base": "/lpcall", "win": True, "dbg": False, "v": tree_version()}
    wait_for(lambda: page.evaluate("window.__consumerLoads") == 1, message="consumer.js imported at load")
    assert watch.page_errors == []


def test_example_page_survives_a_missing_consumer_app(context: Any, shop: LiveServer) -> None:
    """If static/lpcall/consumer.js cannot be loaded, the page notices nothing (debug log only)."""
    watch = Watch(context, stub=404)
    page = context.new_page()
    page.goto(shop.url + "/products/fjord-filter?lpDebug=2")
    watch.until(page, lambda: any("could not load" in text for _, text in watch.console), "debug log of the failed import")
    page.get_by_role("button", name="Add to basket").click()
    assert page.locator("output").text_content() == "Added to your basket."
    assert watch.page_errors == []
    assert page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')").startswith("evId_")


# -- the bus -------------------------------------------------------------------------------------
def test_valid_publish_reaches_bound_listeners_and_unbind_stops_them(context: Any, site: LiveServer) -> None:
    Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain")
    got = page.evaluate(
        """(payload) => {
        const log = [];
        const objSpec = {appName: "lpCoBrowse", eventName: "cobrowseOffered", func: (d, i) => log.push(["obj", d, i])};
        const idObj = lpTag.events.bind(objSpec);
        const idPos = lpTag.events.bind("lpCoBrowse", "cobrowseOffered", (d) => log.push(["pos", d.serviceId]));
        const idAll = lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", func: (d, i) => log.push(["all", i.eventName])});
        lpTag.events.bind("cobrowse", "sessionError", (d) => log.push(["err", d.id]));
        const first = lpTag.events.publish("lpCoBrowse", "cobrowseOffered", payload);
        lpTag.events.publish("cobrowse", "sessionError", {msg: "x", id: "UNABLE_TO_CONNECT"});
        const u1 = lpTag.events.unbind(idPos), u2 = lpTag.events.unbind(objSpec), u3 = lpTag.events.unbind("lsId_nope");
        lpTag.events.publish("lpCoBrowse", "cobrowseOffered", payload);
        lpTag.events.unbind(idAll);
        lpTag.events.publish("lpCoBrowse", "cobrowseAccepted", payload);
        return {log, first, ids: [idObj, idPos, idAll], unbound: [u1, u2, u3]};
    }""",
        SEED_PAYLOAD,
    )
    log = got["log"]
    assert log[0] == ["obj", SEED_PAYLOAD, {"appName": "lpCoBrowse", "eventName": "cobrowseOffered", "eventId": got["first"]}]
    assert log[1:] == [
        ["pos", SEED_PAYLOAD["serviceId"]],
        ["all", "cobrowseOffered"],
        ["err", "UNABLE_TO_CONNECT"],
        ["all", "cobrowseOffered"],  # only the "*" listener is left for the second publish
    ]
    assert len(set(got["ids"])) == 3 and all(i.startswith("lsId_") for i in got["ids"])
    assert got["unbound"] == [True, True, False]


def test_replay_delivers_the_recent_history_to_a_late_listener(context: Any, site: LiveServer) -> None:
    Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain")
    got = page.evaluate(
        """(payload) => {
        for (let i = 0; i < 25; i++) lpTag.events.publish("lpCoBrowse", "sliderOpened");
        lpTag.events.publish("lpCoBrowse", "cobrowseOffered", payload);
        lpTag.events.publish("cobrowse", "sessionResume", {});
        const all = [], offered = [], plain = [];
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", replay: true, func: (d, i) => all.push(i.eventName)});
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "cobrowseOffered", replay: true, func: (d) => offered.push(d.serviceId)});
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", func: (d, i) => plain.push(i.eventName)});
        const viaTrigger = lpTag.events.trigger("cobrowse", "sessionResume", {n: 2});
        return {all, offered, plain, bad: [lpTag.events.bind({appName: "x"}), lpTag.events.bind("x", "y", "not a function")],
                fired: lpTag.events.hasFired("lpCoBrowse", "cobrowseOffered"), resumes: lpTag.events.hasFired("cobrowse").length,
                viaTrigger, none: lpTag.events.hasFired("nobody", "*")};
    }""",
        SEED_PAYLOAD,
    )
    assert len(got["all"]) == 20 and got["all"][-1] == "cobrowseOffered"  # the last 20 events of the app
    assert got["offered"] == [SEED_PAYLOAD["serviceId"]]
    assert got["plain"] == []  # without replay, only what comes next
    assert got["bad"] == [None, None]
    # LivePerson's other lpTag.events names: trigger (= publish) and hasFired
    assert got["viaTrigger"].startswith("evId_") and got["resumes"] == 2 and got["none"] == []
    (fired,) = got["fired"]
    assert fired["appName"] == "lpCoBrowse" and fired["eventName"] == "cobrowseOffered" and fired["data"] == SEED_PAYLOAD


def test_invalid_publish_is_refused_with_the_seed_console_error_and_the_page_keeps_working(
    context: Any, site: LiveServer
) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain?lpDebug=2")
    missing_svid = {k: v for k, v in SEED_PAYLOAD.items() if k != "svid"}
    result = page.evaluate(
        """(bad) => {
        const got = [];
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", func: (d, i) => got.push(i.eventName)});
        const r1 = lpTag.events.publish("lpCoBrowse", "cobrowseOffered", bad);
        const r2 = lpTag.events.publish("lpCoBrowse", "cobrowseAccepted", Object.assign({}, bad, {svid: "v", mode: "SCREEN"}));
        const r3 = lpTag.events.publish("lpCoBrowse", "cobrowseDeclined");
        return {r1, r2, r3, got};
    }""",
        missing_svid,
    )
    assert result == {"r1": False, "r2": False, "r3": False, "got": []}
    errors = watch.until(page, lambda: len(watch.errors()) == 3 and watch.errors(), "three console errors")
    assert [(m[1], m[2], m[3]) for m in errors] == [
        ("cobrowseOffered", "svid", "undefined"),
        ("cobrowseAccepted", "mode", "not VOICE_CALL or VIDEO_CALL"),
        ("cobrowseDeclined", "data", "not an object"),
    ]
    # nothing was thrown, nothing loaded, the page still works
    assert watch.page_errors == []
    assert watch.consumer_requests == []
    page.click("#b")
    assert page.text_content("#b") == "clicked"
    assert page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')").startswith("evId_")


def test_without_lpdebug_an_invalid_publish_is_silent(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain")
    assert page.evaluate("lpTag.events.publish('lpCoBrowse', 'cobrowseOffered', {mode: 'VOICE_CALL'})") is False
    page.click("#b")  # a round trip through the page after the publish
    assert page.text_content("#b") == "clicked"
    assert [m for m in watch.console if "Events" in m[1]] == []


def test_a_throwing_listener_never_breaks_other_listeners_or_the_page(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain?lpDebug=2")
    got = page.evaluate(
        """() => {
        const seen = [];
        lpTag.events.bind("cobrowse", "sessionResume", () => { throw new Error("listener bug"); });
        lpTag.events.bind("cobrowse", "sessionResume", () => seen.push("second"));
        lpTag.events.bind("cobrowse", "*", () => { null.x; });
        lpTag.events.bind("cobrowse", "*", () => seen.push("third"));
        const id = lpTag.events.publish("cobrowse", "sessionResume", {});
        return {seen, id};
    }"""
    )
    assert got["seen"] == ["second", "third"]
    assert got["id"].startswith("evId_")
    assert watch.page_errors == []
    watch.until(page, lambda: sum("Error in listener of cobrowse.sessionResume" in t for _, t in watch.console) == 2,
                "both listener errors logged under lpDebug=2")


def test_a_preexisting_lptag_object_is_merged_not_clobbered(context: Any, site: LiveServer) -> None:
    Watch(context)
    page = context.new_page()
    page.goto(site.url + "/preexisting")
    got = page.evaluate(
        """(payload) => {
        const seen = [];
        lpTag.events.bind("lpCoBrowse", "cobrowseOffered", (d) => seen.push(d.serviceId));
        const id = lpTag.events.publish("lpCoBrowse", "cobrowseOffered", payload);
        return {site: lpTag.site, section: lpTag.section, sdes: lpTag.sdes.send(), stub: lpTag.taglets.rendererStub.ok,
                flag: lpTag.events.siteFlag, sid: lpTag.taglets.lp_monitoringSDK.getSid(), seen, id, siteBus: window.__siteBus};
    }""",
        SEED_PAYLOAD,
    )
    assert got["site"] == "brand-42" and got["section"] == ["shop"] and got["sdes"] == "sdes" and got["stub"] is True
    assert got["flag"] == "kept"
    assert got["sid"] and got["id"].startswith("evId_")
    assert got["seen"] == [SEED_PAYLOAD["serviceId"]]
    assert got["siteBus"] == ["lpCoBrowse/cobrowseOffered"]  # the site's own bus still hears the events


def test_an_overwritten_addeventlistener_does_not_break_the_tag(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/broken-listener")
    got = page.evaluate(
        """(payload) => {
        const seen = [];
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", func: (d, i) => seen.push(i.eventName)});
        lpTag.events.publish("lpCoBrowse", "cobrowseAccepted", payload);
        let siteThrows = false;
        try { window.addEventListener("x", () => {}); } catch (e) { siteThrows = true; }
        let heard = 0;
        lpTag.lpcall.on(window, "lpcall-probe", () => heard++);   // the untouched one, for lazy modules
        window.dispatchEvent(new Event("lpcall-probe"));
        return {seen, siteThrows, heard, vid: lpTag.taglets.lp_monitoringSDK.getVid()};
    }""",
        SEED_PAYLOAD,
    )
    assert got["seen"] == ["cobrowseAccepted"] and got["siteThrows"] is True and got["heard"] == 1 and got["vid"]
    # the lpCoBrowse publish loaded the consumer app, which got the event by replay
    wait_for(lambda: page.evaluate("window.__replayed"), message="consumer stub loaded")
    assert page.evaluate("window.__replayed") == [["cobrowseAccepted", SEED_PAYLOAD["serviceId"]]]
    assert watch.page_errors == []


# -- monitoring ids ------------------------------------------------------------------------------
def test_sid_is_per_tab_and_vid_is_per_visitor(context: Any, site: LiveServer) -> None:
    Watch(context)
    ids = "() => [lpTag.taglets.lp_monitoringSDK.getSid(), lpTag.taglets.lp_monitoringSDK.getVid()]"
    a = context.new_page()
    a.goto(site.url + "/plain")
    sid_a, vid_a = a.evaluate(ids)
    a.reload()
    assert a.evaluate(ids) == [sid_a, vid_a]  # same tab: same session
    b = context.new_page()
    b.goto(site.url + "/plain")
    sid_b, vid_b = b.evaluate(ids)
    assert vid_b == vid_a and sid_b != sid_a
    assert re.fullmatch(r"[0-9a-f-]{32,36}", sid_a) and re.fullmatch(r"[0-9a-f-]{32,36}", vid_a)


def test_monitoring_ids_survive_storage_that_throws(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    context.add_init_script(
        """for (const name of ["localStorage", "sessionStorage"]) {
             Object.defineProperty(window, name, {get() { throw new DOMException("blocked", "SecurityError"); }});
           }"""
    )
    page = context.new_page()
    page.goto(site.url + "/plain")
    got = page.evaluate(
        "() => { const m = lpTag.taglets.lp_monitoringSDK; return [m.getSid(), m.getSid(), m.getVid(), m.getVid()]; }"
    )
    assert got[0] and got[0] == got[1] and got[2] and got[2] == got[3] and got[0] != got[2]
    assert watch.page_errors == []


# -- lazy loader, frames, CSP ---------------------------------------------------------------------
def test_consumer_app_loads_only_when_needed(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/plain")
    page.evaluate("lpTag.events.publish('cobrowse', 'sessionError', {msg: 'm', id: 'UNABLE_TO_CONNECT'})")
    page.evaluate("lpTag.events.publish('lpCoBrowse', 'cobrowseOffered', {})")  # refused: does not load it
    page.click("#b")
    assert watch.consumer_requests == []  # engagement window off, no stored call, no lpCoBrowse event
    # a stored call loads it at page start (resume after reload/navigation)
    page.evaluate("sessionStorage.setItem('lpcall.call', JSON.stringify({serviceId: 'x'}))")
    page.reload()
    wait_for(lambda: page.evaluate("window.__consumerLoads") == 1, message="loaded for a stored call")
    assert len(watch.consumer_requests) == 1
    page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')")
    page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')")
    assert page.evaluate("window.__consumerLoads") == 1  # imported once per page
    assert page.evaluate("window.__replayed") == [["sliderOpened", None], ["sliderOpened", None]]


def test_tag_stays_out_of_frames(context: Any, site: LiveServer) -> None:
    Watch(context)
    page = context.new_page()
    page.goto(site.url + "/host")
    frames = {f.url.rsplit("/", 1)[-1]: f for f in page.frames if f != page.main_frame}
    wait_for(lambda: all(f.evaluate("document.readyState") == "complete" for f in frames.values()), message="frames loaded")
    assert page.evaluate("typeof lpTag.events.publish") == "function"
    # the server does not inject into a frame request (Sec-Fetch-Dest: iframe)
    assert frames["plain"].locator("script[data-lpcall-tag]").count() == 0
    assert frames["plain"].evaluate("typeof window.lpTag") == "undefined"
    # a tag placed by hand into a framed page does nothing there
    assert frames["framed-manual"].locator("script[data-lpcall-tag]").count() == 1
    assert frames["framed-manual"].evaluate("typeof window.lpTag") == "undefined"


def test_csp_nonce_lets_the_tag_run_under_a_strict_policy(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/csp")
    assert page.get_attribute("script[data-lpcall-tag]", "nonce") is not None  # the browser hides the value
    assert page.evaluate("typeof lpTag.events.publish") == "function"
    assert page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')").startswith("evId_")
    wait_for(lambda: page.evaluate("window.__consumerLoads") == 1, message="consumer app imported under strict-dynamic")
    assert not [t for kind, t in watch.console if "Content Security Policy" in t]
    assert watch.page_errors == []


def test_a_missing_browser_fails_under_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    import support

    monkeypatch.setattr(support, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="chromium is required under CI=true"):
        support.require("chromium", False, "/usr/bin/chromium is not installed")
    monkeypatch.setattr(support, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="chromium missing"):
        support.require("chromium", False, "/usr/bin/chromium is not installed")
    support.require("chromium", True, "present")  # nothing happens


# -- the stub: queued calls before the bus arrives ----------------------------------------------
def _bus_requests(context: Any) -> list[str]:
    urls: list[str] = []
    context.on("request", lambda r: urls.append(r.url) if "/static/lptag.js" in r.url else None)
    return urls


def test_calls_before_the_bus_arrives_are_queued_and_replayed_in_order(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    held: list[Any] = []
    hold = lambda route: held.append(route)
    context.route("**/static/lptag.js?v=*", hold)
    page = context.new_page()
    page.goto(site.url + "/early?lpDebug=2", wait_until="domcontentloaded")
    watch.until(page, lambda: held, "the stub requested the bus")
    early = page.evaluate("window.__early")
    # the stub answered: bind an id at once, publish nothing; nothing delivered yet
    assert early["a"].startswith("lsId_") and early["b"].startswith("lsId_") and early["a"] != early["b"]
    assert early["publish"] is True and early["fired"] == 0 and early["logged"] == 0 and early["queued"] is True
    assert page.evaluate("window.__log") == [] and watch.consumer_requests == []
    (route,) = held
    route.continue_()
    watch.until(page, lambda: page.evaluate("lpTag.events._lpcall === true"), "the bus installed")
    queued_log = page.evaluate("window.__log")

    # the same calls on a page whose bus is there already
    context.unroute("**/static/lptag.js?v=*", hold)
    other = context.new_page()
    other.goto(site.url + "/plain")
    other.evaluate("() => { delete window.__log; }")
    other.evaluate("() => { " + EARLY_CALLS + " }")
    direct_log = other.evaluate("window.__log")
    assert direct_log == [
        "a:one:1", "a:two:2", "b:2", "a:nested:3", "a:two:4",
        "r:early", "r:one", "r:two", "r:nested", "r:two",
        "a:last:5", "r:last",
        "a:x:6", "r:x",
    ]
    assert queued_log == direct_log
    # history holds the replayed publishes; the id the stub returned is the listener's id in the bus
    assert [f["eventName"] for f in page.evaluate("lpTag.events.hasFired('cobrowse')")] == [
        "early", "one", "two", "nested", "two", "last", "x"]
    assert page.evaluate("(id) => lpTag.events.unbind(id)", early["a"]) is True
    assert page.evaluate("(id) => lpTag.events.unbind(id)", early["b"]) is False  # unbound by the queued unbind
    # the refused queued publish was checked when replayed: logged, not delivered, nothing loaded for it
    errors = watch.until(page, lambda: watch.errors(), "the refused queued publish logged")
    assert [(m[1], m[2]) for m in errors] == [("cobrowseOffered", "serviceId")]
    assert watch.consumer_requests == []
    assert watch.page_errors == []


def test_a_kept_reference_to_the_stub_reaches_the_bus_later(context: Any, site: LiveServer) -> None:
    watch = Watch(context)
    held: list[Any] = []
    context.route("**/static/lptag.js?v=*", lambda route: held.append(route))
    page = context.new_page()
    page.goto(site.url + "/plain", wait_until="domcontentloaded")
    watch.until(page, lambda: held, "the stub requested the bus")
    page.evaluate("() => { window.__kept = lpTag.events; window.__seen = []; "
                  "__kept.bind('site', 'ping', (d) => __seen.push(d.n)); __kept.publish('site', 'ping', {n: 1}); }")
    held[0].continue_()
    wait_for(lambda: page.evaluate("window.__seen.length") == 1, message="queued publish replayed")
    got = page.evaluate("() => [__kept.publish('site', 'ping', {n: 2}), __seen, __kept === lpTag.events]")
    assert got[0].startswith("evId_") and got[1] == [1, 2] and got[2] is False


def test_the_bus_is_loaded_once_from_a_versioned_long_cached_url(context: Any, site: LiveServer) -> None:
    Watch(context)
    bus = _bus_requests(context)
    page = context.new_page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if "/static/lptag.js" in r.url else None)
    page.goto(site.url + "/plain")
    assert page.evaluate("lpTag.events._lpcall") is True
    (url,) = bus
    assert re.search(r"/lpcall/static/lptag\.js\?v=[0-9a-f]{16}$", url)
    (resp,) = responses
    assert resp.headers["cache-control"] == "public, max-age=31536000, immutable"
    # every page of the site names the same URL (one cache entry), and its script carries no tag marker
    page.goto(site.url + "/preexisting")
    assert page.evaluate("lpTag.events._lpcall") is True
    script = page.locator("script[src*='/static/lptag.js']")
    assert site.url + script.get_attribute("src") == url and script.get_attribute("data-lpcall-tag") is None


def test_a_nonce_only_csp_still_loads_the_bus_and_the_lazy_modules(context: Any, site: LiveServer) -> None:
    """``script-src 'nonce-…'`` without 'strict-dynamic' or 'self': the stub gives the bus its own nonce."""
    watch = Watch(context)
    page = context.new_page()
    page.goto(site.url + "/csp-nonce-only")
    assert page.evaluate("lpTag.events._lpcall") is True
    assert page.evaluate("lpTag.events.publish('lpCoBrowse', 'sliderOpened')").startswith("evId_")
    wait_for(lambda: page.evaluate("window.__consumerLoads") == 1, message="consumer app imported under a nonce-only CSP")
    assert not [t for kind, t in watch.console if "Content Security Policy" in t]
    assert watch.page_errors == []
