"""Issue 14 "Hardening": each finding of the fuzzing report, over a real server and real sockets.

The three sockets (consumer ``/ws/consumer``, agent ``/ws/agent``, call ``/ws/call``) share one decode
path (``framesocket.decode_json``) and one Origin check; the JSON APIs read bodies through the same
decode path and answer every malformed request with a JSON 4xx naming the field; the error codes come
from one registry (``protocol.ERROR_CODES``) that docs/PROTOCOL.md carries; the sockets decline
permessage-deflate.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from callkit import BOB, cobrowse_payload, consumer_token, conversation, make_app, services
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from wsclients import Agent

from flask_lpcall import protocol
from flask_lpcall.sockets.transport import origin_allowed
from flask_lpcall.state import get_state

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
SOCKETS = ("consumer", "agent", "call")


# -- a live call with both participants, and one socket of each kind ----------------------------------
class Live:
    """A served app with a call between Bob and a consumer (both joined) and one socket of each kind."""

    def __init__(self, live_server: Any, **config: Any) -> None:
        self.app = make_app(LPCALL_INVITE_TTL=60, LPCALL_RECONNECT_GRACE=30, **config)
        self.server = live_server(self.app)
        self.origin = f"http://127.0.0.1:{self.server.port}"
        self.ws_base = f"ws://127.0.0.1:{self.server.port}/lpcall"
        calls, _ = services(self.app)
        self.setup = conversation(self.app)
        self.agent_info = calls.invite(BOB, self.setup.conv_id, "VIDEO_CALL")
        self.consumer_info = calls.accept(self.setup.consumer_id, cobrowse_payload(self.agent_info))
        self.agent_login = Agent(f"http://127.0.0.1:{self.server.port}")

    def call(self, role: str) -> ClientConnection:
        info = self.agent_info if role == "agent" else self.consumer_info
        ws = connect(f"{self.ws_base}/ws/call?token={quote(info['token'])}", origin=self.origin, open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "joined"
        return ws

    def frame_socket(self, kind: str) -> ClientConnection:
        cookie = {"Cookie": self.agent_login.cookie()} if kind == "agent" else None
        return connect(f"{self.ws_base}/ws/{kind}", origin=self.origin, additional_headers=cookie, open_timeout=10)

    def open(self, kind: str) -> ClientConnection:
        return self.call("agent") if kind == "call" else self.frame_socket(kind)


def answer(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    """The next answer of a socket, as ``{code, field, message, status?, reqId?}`` or the success frame."""
    frame = json.loads(ws.recv(timeout=timeout))
    if frame.get("type") == "error":  # call socket
        return frame  # type: ignore[no-any-return]
    if frame.get("type") == "GenericResponse":
        return {**frame["body"]["error"], "status": frame["code"], "reqId": frame["reqId"]}
    return frame  # type: ignore[no-any-return]


def ping(ws: ClientConnection, kind: str) -> None:
    """The socket still answers: a ping gets its pong."""
    ws.send(json.dumps({"type": "ping"} if kind == "call" else {"id": "p", "type": "ping"}))
    got = answer(ws)
    assert got["type"] == "pong", got


def no_frame(ws: ClientConnection, timeout: float = 0.5) -> None:
    """Nothing relayed; a ``peer-joined`` of the agent may still come (it is published after its ``joined``,
    so a consumer that joins right after can get it too)."""
    while True:
        try:
            frame = json.loads(ws.recv(timeout=timeout))
        except TimeoutError:
            return
        assert frame == {"type": "peer-joined", "role": "agent"}, f"unexpected frame {frame!r}"


def relayed(ws: ClientConnection) -> dict[str, Any]:
    """The next frame relayed from the peer (a late ``peer-joined``, see :func:`no_frame`, skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
        if frame.get("type") != "peer-joined":
            return frame


@pytest.fixture
def live(live_server: Any) -> Live:
    return Live(live_server)


# -- finding 1: deep nesting on the call socket ----------------------------------------------------------
def test_deep_nesting_on_the_call_socket_is_a_bad_frame_and_the_peer_stays(live: Live) -> None:
    agent, consumer = live.call("agent"), live.call("consumer")
    assert json.loads(agent.recv(timeout=10))["type"] == "peer-joined"
    agent.send("[" * 20000 + "]" * 20000)
    got = answer(agent)
    assert (got["type"], got["code"], got["field"]) == ("error", "BAD_FRAME", "(frame)"), got
    assert "nested" in got["message"]
    no_frame(consumer)  # no peer-left: the agent's socket is still up
    candidate = {"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
                                                    "sdpMid": "0", "sdpMLineIndex": 0}}
    agent.send(json.dumps(candidate))
    assert relayed(consumer) == {**candidate, "from": "agent"}
    ping(agent, "call")


# -- one decode path: the same rule, the same answer, on all three sockets -----------------------------------
DECODE_CASES = {
    # finding 1: nesting
    "deep": ("[" * 20000 + "]" * 20000, "BAD_FRAME", "(frame)", "nested"),
    # finding 4: a 5,000-digit integer names its field, never INTERNAL
    "bigint": ('{"type":"ping","id":"b","n":' + "9" * 5000 + "}", "BAD_FRAME", "n", "integer"),
    "bigint-nested": ('{"type":"state","id":"b","body":{"x":[1,' + "7" * 5000 + "]}}", "BAD_FRAME", "body.x.1", "integer"),
    "unsafe-int": ('{"type":"ping","id":"b","n":9007199254740993}', "BAD_FRAME", "n", "integer"),
    "nan": ('{"type":"ping","id":"b","n":NaN}', "BAD_FRAME", "n", "NaN"),
    "inf": ('{"type":"ping","id":"b","n":1e999}', "BAD_FRAME", "n", "range"),
    # UTF-8 validity: a lone surrogate, escaped
    "surrogate": ('{"type":"ping","id":"b","who":"\\udfff"}', "BAD_FRAME", "who", "surrogate"),
    "surrogate-key": ('{"type":"ping","id":"b","body":{"\\ud800":1}}', "BAD_FRAME", "body", "surrogate"),
    # finding 5: the size limit counts UTF-8 bytes (40,000 characters, 80,000+ bytes > 65,536)
    "multibyte": (json.dumps({"type": "ping", "id": "b", "pad": "\u00e9" * 40_000}, ensure_ascii=False),
                  "TOO_LARGE", "(frame)", "bytes"),
    "not-json": ("{not json", "BAD_FRAME", "(frame)", "JSON"),
    "binary": (b"\x00\x01", "BAD_FRAME", "(frame)", "binary"),
}


@pytest.mark.parametrize("kind", SOCKETS)
def test_one_decode_path_answers_each_rule_with_one_code_naming_the_field(live: Live, kind: str) -> None:
    ws = live.open(kind)
    for name, (raw, code, field, words) in DECODE_CASES.items():
        ws.send(raw)
        got = answer(ws)
        assert (got.get("code"), got.get("field")) == (code, field), (name, got)
        assert words in got["message"], (name, got)
        if kind != "call":
            assert got["status"] == protocol.ERROR_CODES[code].status
            assert got["reqId"] == ("b" if name not in ("deep", "multibyte", "not-json", "binary") else None), got
    ping(ws, kind)  # the connection stays up
    ws.close()


def test_the_frame_limit_counts_utf8_bytes_and_has_one_code(live: Live) -> None:
    """Finding 5: a frame of multi-byte characters under the limit in characters but over it in bytes is
    refused on the call socket too (it was relayed), with the consumer socket's code ``TOO_LARGE``."""
    agent, consumer = live.call("agent"), live.call("consumer")
    assert json.loads(agent.recv(timeout=10))["type"] == "peer-joined"
    sdp = "v=0\r\n" + "a=x:" + "\u20ac" * 40_000  # 40,005 characters, 120,005 bytes
    agent.send(json.dumps({"type": "description", "description": {"type": "offer", "sdp": sdp}}, ensure_ascii=False))
    got = answer(agent)
    assert (got["code"], got["field"]) == ("TOO_LARGE", "(frame)"), got
    no_frame(consumer)  # not relayed
    assert "FRAME_TOO_LARGE" not in {e.code for e in protocol.ERROR_CODES.values()}


# -- finding 8: loose frames ------------------------------------------------------------------------------
@pytest.mark.parametrize(("frame", "field"), [
    ({"type": "state", "muted": False, "cameraOff": 0}, "cameraOff"),
    ({"type": "state", "muted": 1, "cameraOff": False}, "muted"),
    ({"type": "description", "description": {"type": "offer"}}, "description.sdp"),
    ({"type": "description", "description": {"type": "answer", "sdp": ""}}, "description.sdp"),
])
def test_loose_frames_are_refused_naming_the_field_and_not_relayed(live: Live, frame: dict[str, Any], field: str) -> None:
    agent, consumer = live.call("agent"), live.call("consumer")
    assert json.loads(agent.recv(timeout=10))["type"] == "peer-joined"
    agent.send(json.dumps(frame))
    got = answer(agent)
    assert (got["code"], got["field"]) == ("BAD_FRAME", field), got
    no_frame(consumer)
    agent.send(json.dumps({"type": "state", "muted": True, "cameraOff": False}))  # a real one goes through
    assert relayed(consumer) == {"type": "state", "muted": True, "cameraOff": False, "from": "agent"}


# -- finding 6: Origin compares scheme, host and port ----------------------------------------------------------
def _refused(live: Live, kind: str, origin: str) -> bool:
    cookie = {"Cookie": live.agent_login.cookie()} if kind == "agent" else None
    url = f"{live.ws_base}/ws/{kind}"
    if kind == "call":
        url += f"?token={quote(live.agent_info['token'])}"
    with connect(url, origin=origin, additional_headers=cookie, open_timeout=10) as ws:  # type: ignore[arg-type]
        try:
            if kind != "call":
                ws.send(json.dumps({"id": 1, "type": "ping"}))
            frame = json.loads(ws.recv(timeout=10))
        except ConnectionClosed as exc:
            return exc.rcvd is not None and exc.rcvd.code == 1008
        assert frame.get("type") in ("joined", "pong"), frame
        return False


@pytest.mark.parametrize("kind", SOCKETS)
def test_origin_must_match_scheme_host_and_port(live: Live, kind: str) -> None:
    port = live.server.port
    for foreign in (f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", "http://127.0.0.1", "null",
                    f"ws://127.0.0.1:{port + 1}", "https://evil.example"):
        assert _refused(live, kind, foreign), foreign
    assert not _refused(live, kind, f"http://127.0.0.1:{port}")
    assert not _refused(live, kind, f"HTTP://127.0.0.1:{port}/")


def test_origin_rule() -> None:
    assert origin_allowed("http://shop.example", "shop.example", [])
    assert origin_allowed("http://shop.example:80", "shop.example", [])
    assert origin_allowed("https://shop.example", "shop.example", [], "https")
    assert origin_allowed("https://shop.example:443", "shop.example:443", [], "https")
    assert not origin_allowed("https://shop.example", "shop.example", [])
    assert not origin_allowed("http://shop.example", "shop.example", [], "https")
    assert not origin_allowed("http://shop.example:8080", "shop.example", [])
    assert origin_allowed("https://cdn.example", "shop.example", ["https://cdn.example"])
    assert origin_allowed("https://cdn.example:443", "shop.example", ["https://cdn.example"])
    assert not origin_allowed("http://cdn.example", "shop.example", ["https://cdn.example"])
    assert not origin_allowed("https://cdn.example:8443", "shop.example", ["https://cdn.example"])
    assert not origin_allowed("http://shop.example:99999", "shop.example", [])
    assert origin_allowed(None, "shop.example", [])  # not a browser


# -- finding 3: JSON APIs answer malformed requests with a JSON 4xx naming the field ---------------------------
BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "deep": (b"[" * 5000, "(body)"),
    "deep-closed": (b"[" * 5000 + b"]" * 5000, "(body)"),
    "not-json": (b"vid=1", "(body)"),
    "not-utf8": (b'{"vid": "\xff\xfe"}', "(body)"),
    "array": (b"[1, 2]", "(body)"),
    "string": (b'"x"', "(body)"),
    "surrogate": (b'{"vid": "\\udfff", "serviceId": "\\udfff", "checkId": "\\udfff"}', "*"),
    "bigint": (b'{"vid": ' + b"1" * 5000 + b', "serviceId": 1, "checkId": 1}', "*"),
    "nan": (b'{"vid": NaN, "serviceId": NaN, "checkId": NaN}', "*"),
    "types": (b'{"vid": 5, "serviceId": 5, "checkId": 5, "connected": 0}', "*"),
    "huge": (b'{"vid": "' + b"x" * 70_000 + b'"}', "(body)"),
}
JSON_ENDPOINTS = ("consumer/session", "call/prepare", "call/accept", "call/decline", "call/resume",
                  "netcheck/result", "netcheck/offer")


@pytest.mark.parametrize("endpoint", JSON_ENDPOINTS)
def test_json_apis_answer_malformed_bodies_with_a_json_4xx_naming_the_field(endpoint: str) -> None:
    app = make_app()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {consumer_token(app, 'c-1')}"}
    for name, (body, field) in BAD_BODIES.items():
        resp = client.post(f"/lpcall/api/{endpoint}", data=body, headers=auth, content_type="application/json")
        assert 400 <= resp.status_code < 500, (name, resp.status_code, resp.data[:200])
        assert resp.is_json, (name, resp.data[:200])
        err = resp.get_json()["error"]
        assert err["code"] in protocol.ERROR_CODES and protocol.ERROR_CODES[err["code"]].status == resp.status_code
        assert err.get("field"), (name, err)
        if field != "*":
            assert err["field"] == field, (name, err)
        else:
            assert err["field"] not in ("(body)", "(frame)"), (name, err)
        assert err["code"] != "INTERNAL"


def test_a_lone_surrogate_vid_is_a_400_not_a_500() -> None:
    client = make_app().test_client()
    resp = client.post("/lpcall/api/consumer/session", data=b'{"vid": "\\udfff"}', content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == "vid", resp.data
    assert client.post("/lpcall/api/consumer/session", json={"vid": "v-1"}).status_code == 200
    assert client.post("/lpcall/api/consumer/session").status_code == 200  # no body: a fresh identity


def test_json_apis_answer_http_errors_and_server_faults_as_json() -> None:
    app = make_app()
    client = app.test_client()
    resp = client.get("/lpcall/api/consumer/session")  # POST only
    assert resp.status_code == 405 and resp.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    # a real fault of the server (here: the signer breaks) is still JSON, code INTERNAL
    state = get_state(app)

    class Broken:
        def sign(self, *args: Any) -> str:
            raise RuntimeError("the signer broke")

    state.signer = Broken()  # type: ignore[assignment]
    app.testing = False  # as in production: the exception is handled, not propagated to the test
    resp = client.post("/lpcall/api/consumer/session", json={})
    assert resp.status_code == 500 and resp.is_json and resp.get_json()["error"]["code"] == "INTERNAL"
    page = client.get("/lpcall/agent/login")  # pages keep Flask's own answers
    assert page.status_code == 200 and page.mimetype == "text/html"


# -- finding 11: the sockets decline permessage-deflate ----------------------------------------------------------
CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"


def handshake_answer(port: int, path: str, cookie: str = "") -> str:
    """The server's raw answer to a handshake sent exactly as Chromium sends it."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nPragma: no-cache\r\n"
               f"Cache-Control: no-cache\r\nUpgrade: websocket\r\nOrigin: http://127.0.0.1:{port}\r\n"
               "Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n"
               f"{'Cookie: ' + cookie + chr(13) + chr(10) if cookie else ''}"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Sec-WebSocket-Extensions: {CHROMIUM_OFFER}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1")


@pytest.mark.parametrize("kind", SOCKETS)
def test_a_chromium_like_deflate_offer_is_declined(live: Live, kind: str) -> None:
    path = f"/lpcall/ws/{kind}" + (f"?token={quote(live.agent_info['token'])}" if kind == "call" else "")
    head = handshake_answer(live.server.port, path, live.agent_login.cookie() if kind == "agent" else "")
    assert head.startswith("HTTP/1.1 101"), head
    assert "sec-websocket-extensions" not in head.lower(), head
    # and a client that offers it (websockets does, like a browser) talks uncompressed
    ws = live.open(kind)
    assert ws.protocol.extensions == []
    ping(ws, kind)


# -- one registry of error codes, documented ---------------------------------------------------------------------
def test_protocol_md_carries_the_error_registry() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    match = re.search(r"<!-- error-codes:begin -->\n(.*?)\n<!-- error-codes:end -->", text, re.DOTALL)
    assert match, "docs/PROTOCOL.md lacks the error-codes block"
    assert match.group(1) == protocol.error_table(), (
        "docs/PROTOCOL.md's error table differs from protocol.ERROR_CODES; paste protocol.error_table() there")


def test_every_code_the_server_answers_with_is_registered() -> None:
    client_side = {"participant.py", "demo.py", "aioloop.py"}  # the Python peer's and demo agent's own errors
    used: set[str] = set()
    for path in (ROOT / "flask_lpcall").rglob("*.py"):
        if path.parent.name == "peer" and path.name in client_side:
            continue
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'code\s*=\s*"([A-Z_]+)"', text))
        used |= set(re.findall(r'self\.error\("([A-Z_]+)"', text))
    used -= {"CONFIG_ERROR", "LPCALL_ERROR"}  # init_app's and the base class's, never on the wire
    used |= {"CALL_IN_OTHER_TAB", "TIMEOUT"}
    assert used <= set(protocol.ERROR_CODES), used - set(protocol.ERROR_CODES)
    assert not set(protocol.SESSION_ERROR_IDS) & set(protocol.ERROR_CODES)  # the seed's own vocabulary


def test_protocol_md_carries_the_client_side_codes_and_every_code_in_use_is_registered() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    match = re.search(r"<!-- client-error-codes:begin -->\n(.*?)\n<!-- client-error-codes:end -->", text, re.DOTALL)
    assert match and match.group(1) == protocol.client_error_table(), "paste protocol.client_error_table() there"
    known = set(protocol.ERROR_CODES) | set(protocol.CLIENT_ERROR_CODES) | set(protocol.SESSION_ERROR_IDS)
    used: set[str] = set()
    for path in (ROOT / "flask_lpcall").rglob("*.py"):
        used |= set(re.findall(r'code\s*=\s*"([A-Z_]+)"', path.read_text(encoding="utf-8")))
    for path in (ROOT / "static").rglob("*.js"):
        js = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"CallError\('([A-Z_]+)'", js)) | set(re.findall(r"\.code = [^;]*'([A-Z_]+)'", js))
    assert {"PEER_ERROR", "SIGNALING_FAILED"} <= used, "the search finds the codes in use"
    assert used <= known, sorted(used - known)
