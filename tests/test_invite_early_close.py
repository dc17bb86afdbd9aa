"""An invitation closes early when the visitor's page is gone (issue 13), and WebSocket routes leave
nothing on the connection after their close frame under Werkzeug.

The page is the consumer's messaging socket (``/ws/consumer``): presence.py keeps ``page:<cid>``.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from typing import Any

import pytest
from callkit import BOB, call_keys, conversation, make_app, services, system_keys
from support import start_live_server, wait_for
from wsclients import Consumer

from flask_lpcall.state import get_state

GRACE = 2.0


@pytest.fixture
def app() -> Any:
    return make_app(LPCALL_RECONNECT_GRACE=GRACE, LPCALL_INVITE_TTL=120)


def test_no_page_for_the_grace_period_closes_the_invitation(app: Any) -> None:
    calls, convs = services(app)
    setup = conversation(app)
    calls.consumer_page_opened(setup.consumer_id, "sock-1")
    info = calls.invite(BOB, setup.conv_id, "VIDEO_CALL")
    sid = info["serviceId"]
    t0 = time.time()
    assert calls.sweep(now=t0 + 60) == []  # the page is there: the invitation waits (up to its TTL)
    calls.consumer_page_closed(setup.consumer_id, "sock-1")
    gone = calls.presence.page_gone_since(setup.consumer_id)
    assert gone is not None
    assert calls.sweep(now=gone + GRACE - 0.1) == []  # within the grace: maybe a reload
    closed = calls.sweep(now=gone + GRACE + 0.1)
    assert [(c.service_id, c.close_reason, c.ended_by) for c in closed] == [(sid, "consumer_disconnected", "system")]
    assert call_keys(app) == []
    assert system_keys(app, setup.conv_id)[-1] == "system.visitor_left"
    last = convs.events(setup.conv_id)[-1]["event"]["message"]
    assert last == "Vera left the page: the video call invitation was closed"
    dialog = convs.get(setup.conv_id)["cobrowse"]
    assert dialog["metaData"] == {"sessionState": "CLOSED"}


def test_a_reload_a_second_tab_or_an_unknown_page_keep_the_invitation(app: Any) -> None:
    calls, _ = services(app)
    reload_, tabs, unknown = conversation(app), conversation(app), conversation(app)
    calls.consumer_page_opened(reload_.consumer_id, "a")
    calls.consumer_page_opened(tabs.consumer_id, "tab-1")
    calls.consumer_page_opened(tabs.consumer_id, "tab-2")
    invited = [calls.invite(BOB, s.conv_id, "VOICE_CALL")["serviceId"] for s in (reload_, tabs, unknown)]
    calls.consumer_page_closed(reload_.consumer_id, "a")
    calls.consumer_page_opened(reload_.consumer_id, "b")  # the reloaded page's socket
    calls.consumer_page_closed(tabs.consumer_id, "tab-1")  # one tab of two closes
    assert calls.sweep(now=time.time() + 60) == []
    assert all(calls.get(sid) is not None for sid in invited)
    # an accepted call is judged by its signaling presence, not by the page
    calls.consumer_page_closed(tabs.consumer_id, "tab-2")
    assert calls.presence.page_gone_since(tabs.consumer_id) is not None


def test_the_consumer_socket_marks_the_page_open_and_gone(app: Any) -> None:
    server = start_live_server(app)
    try:
        consumer = Consumer(server.url)
        consumer.connect()
        conv_id = consumer.open_conversation("Vera")
        calls, convs = services(app)
        convs.take(conv_id, BOB.id, BOB.name)
        info = calls.invite(BOB, conv_id, "VOICE_CALL")
        doc = get_state(app).store.get(f"page:{consumer.consumer_id}")
        assert len(doc["conns"]) == 1 and doc["gone"] is None
        assert consumer.client is not None
        consumer.client.close()
        # the sweeper thread closes it once the grace period has passed, long before the TTL
        wait_for(lambda: calls.get(info["serviceId"]) is None, timeout=GRACE + 5, message="invitation closed")
        assert "system.visitor_left" in system_keys(app, conv_id)
    finally:
        server.stop()


def _handshake(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:{port}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _masked_close(code: int = 1000) -> bytes:
    payload = struct.pack("!H", code)
    mask = os.urandom(4)
    return bytes([0x88, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    ("path", "client_closes"),
    [("/lpcall/ws/consumer", True), ("/lpcall/ws/agent", False), ("/lpcall/ws/call?token=nope", False)],
    ids=["consumer-client-closes", "agent-refused", "call-refused"],
)
def test_nothing_follows_the_close_frame_on_the_development_server(app: Any, path: str, client_closes: bool) -> None:
    """Werkzeug writes flask-sock's HTTP response after a socket handler ends; those bytes after the
    close frame were Chromium's "Invalid frame header". Every route ends the connection first."""
    server = start_live_server(app)
    try:
        sock = _handshake(server.port, path)
        if client_closes:
            sock.sendall(_masked_close())  # the client closes (as a browser does after a hang-up)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        # skip the frames before the close frame (a refused socket sends an error frame first)
        while data and data[0] & 0x0F != 0x8:
            length = data[1] & 0x7F
            start = 2 if length < 126 else 4
            if length == 126:
                length = struct.unpack("!H", data[2:4])[0]
            data = data[start + length:]
        assert data[:1] == b"\x88", data
        length = data[1] & 0x7F
        assert data[2 + length:] == b"", f"bytes after the close frame: {data[2 + length:]!r}"
    finally:
        server.stop()
