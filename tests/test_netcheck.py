"""Pre-call network check: verdict rules, API validation, and a real Chromium ↔ aiortc check.

The Chromium tests run in the session's private network namespace: the only path is
loopback (host candidates). "No direct path" is produced by really dropping UDP with an
iptables rule inside the namespace; the rule's packet counter proves that ICE traffic
was dropped.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from support import require, wait_for

from example_site.app import create_app
from flask_lpcall.core.netcheck import NEEDS_KBPS, describe, verdict
from flask_lpcall.texts import build_texts


# -- pure rules -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("connected", "kbps", "expected"),
    [
        (False, 50_000, "no_path"),
        (True, None, "insufficient"),
        (True, 599, "insufficient"),
        (True, NEEDS_KBPS["voice"], "voice"),
        (True, 1099, "voice"),
        (True, NEEDS_KBPS["degraded"], "degraded"),
        (True, 2599, "degraded"),
        (True, NEEDS_KBPS["video"], "video"),
        (True, 8000, "video"),
    ],
)
def test_verdict_thresholds(connected: bool, kbps: float | None, expected: str) -> None:
    assert verdict(connected, kbps) == expected


def test_needs_are_the_documented_ones() -> None:
    assert NEEDS_KBPS == {"video": 2600, "degraded": 1100, "voice": 600}


def test_describe_warns_about_high_latency_in_the_locale() -> None:
    de = build_texts("de", {})
    text = describe(de, {"verdict": "video", "rttMs": 450.4})
    assert text.startswith("Ihre Verbindung ist bereit für Videoanrufe.")
    assert "450 ms" in text
    assert "ms" not in describe(de, {"verdict": "video", "rttMs": 20})


# -- HTTP API: bad input gets an error naming the field -------------------------------
@pytest.fixture
def client():
    app = create_app(TESTING=True)
    yield app.test_client()
    app.extensions["lpcall"].netcheck.close()  # the checks' peers and their loop go with the app


def test_config_has_needs_ice_and_texts(client) -> None:
    data = client.get("/lpcall/api/netcheck/config").get_json()
    assert data["needs"] == NEEDS_KBPS
    assert data["iceTransportPolicy"] == "all"
    assert data["texts"]["netcheck.verdict.no_path"].startswith("Calls cannot connect")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "(body)"),
        ({}, "offer"),
        ({"offer": {"type": "bogus", "sdp": "x"}}, "offer.type"),
        ({"offer": {"type": "answer", "sdp": "v=0"}}, "offer.type"),
        ({"offer": {"type": "offer", "sdp": "not sdp"}, "extra": 1}, "extra"),
        ({"offer": {"type": "offer", "sdp": 5}}, "offer.sdp"),
    ],
)
def test_offer_validation_names_the_field(client, body, field) -> None:
    resp = client.post("/lpcall/api/netcheck/offer", json=body)
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == "BAD_FRAME"
    assert err["field"] == field, err


def test_garbage_sdp_is_rejected_cleanly(client) -> None:
    resp = client.post("/lpcall/api/netcheck/offer", json={"offer": {"type": "offer", "sdp": "v=0\r\nm=nonsense\r\n"}})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["field"] == "offer.sdp"


def test_result_for_unknown_check_is_404(client) -> None:
    resp = client.post("/lpcall/api/netcheck/result", json={"checkId": "nope", "connected": True})
    assert resp.status_code == 404
    assert resp.get_json()["error"] == {"code": "NOT_FOUND", "message": "unknown or expired check", "field": "checkId"}
    resp = client.post("/lpcall/api/netcheck/result", json={"checkId": "x", "connected": "yes"})
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == "connected"


# -- Chromium ↔ server aiortc peer ------------------------------------------------------
def _run_page_check(browser, server, timeout: float = 45) -> tuple[dict, object]:
    page = browser.new_page()
    page.goto(server.url + "/lpcall/netcheck")
    page.get_by_role("button", name="Start the check").click()
    page.wait_for_selector(".lpcall-netcheck[data-verdict]", timeout=timeout * 1000)
    shown = {
        "verdict": page.get_attribute(".lpcall-netcheck", "data-verdict"),
        "path": page.inner_text("[data-field=path]"),
        "rtt": page.inner_text("[data-field=rtt]"),
        "bitrate": page.inner_text("[data-field=bitrate]"),
        "message": page.inner_text(".lpcall-netcheck-verdict"),
        "status": page.inner_text(".lpcall-netcheck-status"),
    }
    return shown, page


def test_network_check_reports_host_path_rtt_and_bitrate(browser, live_server) -> None:
    server = live_server(create_app())
    shown, page = _run_page_check(browser, server)
    assert shown["path"] == "Direct (same network)"
    assert shown["rtt"].endswith(" ms") and int(shown["rtt"].split()[0]) >= 0
    kbps = int(shown["bitrate"].split()[0])
    assert kbps > 0, shown
    # the verdict follows the documented needs (loopback usually reaches "video"; a loaded
    # machine may measure less, and the verdict must then say so)
    assert shown["verdict"] == verdict(True, kbps), shown
    texts = build_texts("en", {})
    assert shown["message"].startswith(texts[f"netcheck.verdict.{shown['verdict']}"])
    # the server's own view: its aiortc peer was closed after the result
    assert wait_for(lambda: server.app.extensions["lpcall"].netcheck.active() == 0, timeout=10)
    page.close()


@pytest.fixture
def udp_blocked() -> Iterator[callable]:
    """Drop every UDP packet inside this private namespace while the test runs."""
    import os

    require("iptables", shutil.which("iptables") is not None, "apt-get install iptables")
    if os.environ.get("LPCALL_IN_NETNS") != "1":
        pytest.skip("only inside the private test namespace (never touch the host firewall)")
    rule = ["INPUT", "-p", "udp", "-j", "DROP", "-m", "comment", "--comment", "lpcall-netcheck-test"]
    subprocess.run(["iptables", "-I", *rule], check=True)

    def dropped() -> int:
        out = subprocess.run(["iptables", "-L", "INPUT", "-v", "-n", "-x"], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            if "lpcall-netcheck-test" in line:
                return int(line.split()[0])
        return 0

    try:
        yield dropped
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)


def test_network_check_reports_no_direct_path_when_udp_is_blocked(browser, live_server, udp_blocked) -> None:
    import socket

    # the block is real: a plain UDP datagram over loopback does not arrive
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.2", 0))
    rx.settimeout(0.3)
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"probe", rx.getsockname())
    with pytest.raises(TimeoutError):
        rx.recv(16)
    rx.close()
    before = udp_blocked()

    server = live_server(create_app())
    shown, page = _run_page_check(browser, server)
    assert shown["verdict"] == "no_path", shown
    assert shown["path"] == "No direct path"
    assert shown["rtt"] == "–" and shown["bitrate"] == "–"
    assert shown["message"].startswith("Calls cannot connect from this network: there is no direct path")
    # ICE connectivity checks were sent and dropped by the rule
    assert udp_blocked() > before
    page.close()


def test_result_reaches_the_visitors_conversation_for_the_agent(browser, live_server) -> None:
    """A visitor in a chat runs the check: the verdict lands in the transcript as a system message."""
    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    ctx = browser.new_context()
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(server.url + "/")
        page.click(".lpcall-launcher")
        page.fill("#lpcall-visitor-name", "Vera")
        page.click(".lpcall-start [type=submit]")
        conversations = app.extensions["lpcall"].conversations
        conv = wait_for(lambda: conversations.open_conversations(), timeout=10, message="the visitor's conversation")[0]

        page.goto(server.url + "/lpcall/netcheck")  # e.g. a link the agent sent in the chat
        page.get_by_role("button", name="Start the check").click()
        page.wait_for_selector(".lpcall-netcheck[data-verdict]", timeout=45_000)
        assert page.inner_text(".lpcall-netcheck-verdict").endswith("Your agent can see this result.")

        events = [e for e in conversations.events(conv["convId"]) if e.get("systemKey") == "system.netcheck"]
        assert len(events) == 1
        text = events[0]["event"]["message"]
        assert text.startswith("Network check: ") and "(Direct (same network), " in text
        assert text.endswith(" kbit/s)")
    finally:
        ctx.close()


def test_too_many_checks_at_once_get_busy_and_finished_checks_free_their_peer(client) -> None:
    from aiortc import RTCPeerConnection

    from flask_lpcall.core.netcheck import MAX_CONCURRENT

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.createDataChannel("netcheck")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    from flask_lpcall.peer.aioloop import BackgroundLoop

    loop = BackgroundLoop("test-netcheck-offer")  # the sync Playwright API may own this thread's loop
    sdp = loop.run(offer(), timeout=20)
    loop.stop()
    ids = []
    for _ in range(MAX_CONCURRENT):
        resp = client.post("/lpcall/api/netcheck/offer", json={"offer": {"type": "offer", "sdp": sdp}})
        assert resp.status_code == 200, resp.get_json()
        assert "a=setup:active" in resp.get_json()["answer"]["sdp"] or "a=setup:passive" in resp.get_json()["answer"]["sdp"]
        ids.append(resp.get_json()["checkId"])
    busy = client.post("/lpcall/api/netcheck/offer", json={"offer": {"type": "offer", "sdp": sdp}})
    assert busy.status_code == 503 and busy.get_json()["error"]["code"] == "BUSY"
    for check_id in ids:
        result = client.post("/lpcall/api/netcheck/result", json={"checkId": check_id, "connected": False}).get_json()
        assert result["verdict"] == "no_path" and result["path"] == "none"
    assert client.application.extensions["lpcall"].netcheck.active() == 0
    again = client.post("/lpcall/api/netcheck/offer", json={"offer": {"type": "offer", "sdp": sdp}})
    assert again.status_code == 200


def test_page_and_texts_follow_the_locale() -> None:
    client = create_app(TESTING=True, LPCALL_LOCALE="de", LPCALL_REPORT_DB=":memory:").test_client()
    html = client.get("/lpcall/netcheck").get_data(as_text=True)
    assert '<html lang="de">' in html
    assert "<title>Verbindung für Anrufe prüfen</title>" in html
    texts = client.get("/lpcall/api/netcheck/config").get_json()["texts"]
    assert texts["netcheck.start"] == "Prüfung starten"
    assert texts["netcheck.verdict.no_path"].startswith("Aus diesem Netz kann kein Anruf verbunden werden")
