"""A bounded fuzzer of the three sockets and the JSON APIs, with a live canary chat and call beside it.

The example site runs on ONE gunicorn gevent worker (memory store). Beside the fuzzing, a canary keeps a
real conversation (a consumer and agent Bob exchanging chat messages) and a real call (its two signaling
sockets relaying ``candidate`` frames both ways) going, and checks every message and frame arrives.

Fuzzed, each from its own thread, with malformed inputs mutated from valid ones (``mutate``: deep nesting,
huge or unsafe integers, NaN/Infinity, lone surrogates, multi-byte text over the byte limit, wrong types,
missing/unknown/duplicate keys, truncated or corrupted JSON, binary frames, non-objects):

* a consumer socket (after InitConnection) and an agent socket (Alice), request frames of PROTOCOL §3/§4;
* the agent's side of a call (Alice's own call, its consumer joined), signaling frames of PROTOCOL §5;
* every JSON endpoint of the blueprint (bodies, methods, headers).

Counted (every count must be 0):

* ``crashes``: a fuzzed socket that dies, an ``INTERNAL`` answer, a traceback in the server's log;
* ``5xx``: an HTTP status >= 500, or a non-JSON error answer of a JSON endpoint;
* ``unanswered``: a frame with no answer before the next ping's pong (consumer/agent: every request gets
  a response; call socket: every frame the library's own decoder and schema refuse gets an ``error``);
* ``no_field``: a ``BAD_FRAME`` or ``TOO_LARGE`` answer without ``field``;
* ``canary_drops``: a canary chat message or relayed call frame that did not arrive (or a canary socket that died).

    python benchmarks/bench_fuzz.py [--inputs 100000] [--seed 14] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from flask_lpcall.core.schemas import load_signal_frame
from flask_lpcall.errors import LPCallError
from flask_lpcall.protocol import ERROR_CODES
from flask_lpcall.sockets.transport import decode_json

ISSUE = 14
PREFIX = "/lpcall"
MAX_FRAME_BYTES = 65536  # the example site's LPCALL_MAX_FRAME_BYTES (the default)
NEEDS_FIELD = {"BAD_FRAME", "TOO_LARGE"}
TIMEOUT = 20.0


# -- mutations ---------------------------------------------------------------------------------------------
def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    out = list(value)
    out[head] = _replace(out[head], rest, new)
    return out


_MARK = "\u0000@@MARK@@\u0000"
_RAW_LEAVES = ["9" * 5000, "-" + "1" * 4400, str(2**53 + 1), str(-(2**63)), "NaN", "Infinity", "-Infinity", "1e999",
               "-1e400", '"\\udfff"', '"\\ud800x"', '"a\\udc00"', '"\\u0000"', "1.5", "-0.0", "0", "1", "true",
               "false", "null", "[]", "{}", '""', '"' + "\u00e9" * 40_000 + '"', '"' + "x" * 66_000 + '"']
_WRONG_TYPES: list[Any] = [None, True, False, 0, 1, -1, 2**31, 0.5, "", "x", "true", [], [1], {}, {"a": 1}, "x" * 300]


def mutate(rng: random.Random, template: dict[str, Any]) -> str | bytes:
    """One malformed (sometimes, by chance, valid) frame or body made from ``template``."""
    kind = rng.randrange(12)
    paths = list(_paths(template))
    path = rng.choice(paths)
    if kind == 0:  # a raw leaf JSON cannot carry as a Python value
        text = json.dumps(_replace(template, path, _MARK))
        return text.replace(json.dumps(_MARK), rng.choice(_RAW_LEAVES), 1)
    if kind == 1:  # a wrong type
        return json.dumps(_replace(template, path, rng.choice(_WRONG_TYPES)))
    if kind == 2:  # nested deep
        depth = rng.choice([33, 100, 1000, 5000, 20000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        text = json.dumps(_replace(template, path, _MARK))
        return text.replace(json.dumps(_MARK), opener * depth + "1" + closer * depth, 1)
    if kind == 3:  # a key removed
        parent = path[:-1]
        if path and isinstance(path[-1], str):
            container = template
            for p in parent:
                container = container[p]
            return json.dumps(_replace(template, parent, {k: v for k, v in container.items() if k != path[-1]}))
        return json.dumps({**template, "extra": 1})
    if kind == 4:  # an unknown key
        target = rng.choice([p for p in paths if _is_dict(template, p)])
        return json.dumps(_replace(template, target, {**_get(template, target), rng.choice(["x", "__proto__", "", "\u00e9"]): 1}))
    if kind == 5:  # truncated
        text = json.dumps(template)
        return text[: rng.randrange(len(text))]
    if kind == 6:  # corrupted character
        text = json.dumps(template)
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(["\\", '"', "{", "]", ",", "\u00ff", "\ud7ff", " ", "\t"]) + text[i + 1:]
    if kind == 7:  # binary
        return rng.choice([b"\x00\x01", json.dumps(template).encode(), bytes(rng.randrange(256) for _ in range(40))])
    if kind == 8:  # not an object
        return rng.choice(["", " ", "null", "[]", "1", '"text"', "true", "[" * 20000 + "]" * 20000, "{}", "{" * 3])
    if kind == 9:  # multi-byte text: under the limit in characters, over it in bytes
        return json.dumps(_replace(template, path, "\u20ac" * rng.choice([22_000, 40_000])), ensure_ascii=False)
    if kind == 10:  # a duplicate key after the real one
        text = json.dumps(template)
        return text[:-1] + ',"type":' + json.dumps(rng.choice(_WRONG_TYPES)) + "}" if text.endswith("}") else text
    return json.dumps(_replace(template, path, rng.choice(["\udfff", "a\ud800", "\u0000", "\u2028", "𝒳" * 10])),
                      ensure_ascii=rng.random() < 0.5) if rng.random() < 0.5 else json.dumps(template)


def _is_dict(value: Any, path: tuple[Any, ...]) -> bool:
    return isinstance(_get(value, path), dict)


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _send(ws: ClientConnection, frame: str | bytes) -> None:
    if isinstance(frame, str):
        frame = frame.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # a browser cannot send lone surrogates
    ws.send(frame)


# -- counts --------------------------------------------------------------------------------------------------
@dataclass
class Counts:
    inputs: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    server_5xx: int = 0
    unanswered: int = 0
    no_field: int = 0
    canary_drops: int = 0
    canary_messages: int = 0
    canary_frames: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bad(self, what: str, detail: Any) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            if len(self.examples) < 20:
                self.examples.append(f"{what}: {str(detail)[:300]}")

    def total(self) -> int:
        return sum(self.inputs.values())

    def summary(self) -> dict[str, Any]:
        return {"inputs": dict(self.inputs), "total": self.total(), "crashes": self.crashes, "5xx": self.server_5xx,
                "unanswered": self.unanswered, "no_field": self.no_field, "canary_drops": self.canary_drops,
                "canary_messages": self.canary_messages, "canary_frames": self.canary_frames,
                "codes": dict(self.codes.most_common()), "examples": self.examples}


def check_error(counts: Counts, err: dict[str, Any], sent: Any) -> None:
    code = err.get("code")
    with counts.lock:
        counts.codes[str(code)] += 1
    if code == "INTERNAL" or code not in ERROR_CODES:
        counts.bad("crashes", (err, sent))
    elif code in NEEDS_FIELD and not err.get("field"):
        counts.bad("no_field", (err, sent))


# -- the site and its clients ----------------------------------------------------------------------------------
class Site:
    """The served example site: HTTP helpers, logins, conversations and calls."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.ws_base = base.replace("http://", "ws://") + PREFIX
        self.origin = base

    def consumer_identity(self) -> tuple[str, str]:
        data = requests.post(f"{self.base}{PREFIX}/api/consumer/session", json={"vid": "fuzz"}, timeout=TIMEOUT).json()
        return data["consumerId"], data["token"]

    def agent_cookie(self, name: str) -> str:
        http = requests.Session()
        page = http.get(f"{self.base}{PREFIX}/agent/login", timeout=TIMEOUT)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, "no CSRF token on the login page"
        resp = http.post(f"{self.base}{PREFIX}/agent/login", allow_redirects=False, timeout=TIMEOUT,
                         data={"username": name, "password": name, "csrf_token": csrf.group(1)})
        assert resp.status_code in (302, 303), resp.text[:300]
        return "; ".join(f"{c.name}={c.value}" for c in http.cookies)

    def frame_socket(self, kind: str, cookie: str | None = None) -> FrameClient:
        headers = {"Cookie": cookie} if cookie else None
        ws = connect(f"{self.ws_base}/ws/{kind}", origin=self.origin, additional_headers=headers,  # type: ignore[arg-type]
                     open_timeout=TIMEOUT, max_size=None)
        return FrameClient(ws)

    def call_socket(self, token: str) -> ClientConnection:
        ws = connect(f"{self.ws_base}/ws/call?token={quote(token)}", origin=self.origin,  # type: ignore[arg-type]
                     open_timeout=TIMEOUT, max_size=None)
        while (frame := json.loads(ws.recv(timeout=TIMEOUT)))["type"] != "joined":
            assert frame["type"] in ("peer-joined", "session"), frame
        return ws


class FrameClient:
    """A consumer/agent socket: requests with ids, answers by ``reqId``, notifications set aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.notes: list[dict[str, Any]] = []

    def request(self, type_: str, body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        req_id = f"r{next(self.ids)}"
        self.ws.send(json.dumps({"kind": "req", "id": req_id, "type": type_, "body": body or {}, **extra}))
        return self.until(lambda m: m.get("kind") == "resp" and m.get("reqId") == req_id)

    def until(self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> dict[str, Any]:
        for i, m in enumerate(self.notes):
            if match(m):
                return self.notes.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.001)))
            if match(msg):
                return msg  # type: ignore[no-any-return]
            if msg.get("kind") == "notification":
                self.notes = self.notes[-200:] + [msg]


@dataclass
class Conversation:
    consumer: FrameClient
    agent: FrameClient
    conv_id: str
    consumer_id: str
    token: str


def open_conversation(site: Site, agent_name: str, agent: FrameClient | None = None) -> Conversation:
    consumer_id, token = site.consumer_identity()
    consumer = site.frame_socket("consumer")
    headers = [{"type": ".ams.headers.ClientProperties", "features": ["CO_BROWSE"]},
               {"type": ".ams.headers.ConsumerAuthentication", "jwt": token}]
    assert consumer.request("InitConnection", headers=headers)["code"] == 200
    conv_id = consumer.request("cm.ConsumerRequestConversation", {"visitorName": f"Fuzz {agent_name}"})["body"]["conversationId"]
    assert consumer.request("ms.SubscribeMessagingEvents", {"conversationId": conv_id})["code"] == 200
    if agent is None:
        agent = site.frame_socket("agent", site.agent_cookie(agent_name))
        assert agent.request("agent.Subscribe", {"available": False})["code"] == 200
    for type_ in ("agent.Take", "agent.Open"):
        resp = agent.request(type_, {"conversationId": conv_id})
        assert resp["code"] == 200, resp
    return Conversation(consumer, agent, conv_id, consumer_id, token)


def open_call(site: Site, conv: Conversation, agent_id: str) -> tuple[ClientConnection, ClientConnection, str]:
    info = conv.agent.request("call.Invite", {"conversationId": conv.conv_id, "mode": "VOICE_CALL"})
    assert info["code"] == 200, info
    sid = info["body"]["serviceId"]
    payload = {"serviceId": sid, "agentId": agent_id, "visitorName": "Fuzz", "mode": "VOICE_CALL",
               "ssid": "s", "svid": "v"}
    accepted = requests.post(f"{site.base}{PREFIX}/api/call/accept", json=payload, timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {conv.token}"})
    assert accepted.status_code == 200, accepted.text
    agent_ws = site.call_socket(info["body"]["token"])
    consumer_ws = site.call_socket(accepted.json()["token"])
    return agent_ws, consumer_ws, sid


# -- the canary ------------------------------------------------------------------------------------------------
class Canary(threading.Thread):
    """A real chat and a real call beside the fuzzing: every message and relayed frame must arrive."""

    def __init__(self, site: Site, counts: Counts, stop: threading.Event) -> None:
        super().__init__(name="canary", daemon=True)
        self.site, self.counts, self.stop = site, counts, stop
        self.conv = open_conversation(site, "bob")
        self.call_agent, self.call_consumer, _ = open_call(site, self.conv, "bob")
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in itertools.count():
                self.round(i)
                if self.stop.is_set():
                    self.round(i + 1)  # one more after the fuzzing ended
                    return
        except BaseException as exc:  # noqa: BLE001 - a dead canary is a drop, reported
            self.error = exc
            self.counts.bad("canary_drops", f"canary died: {exc!r}")

    def round(self, i: int) -> None:
        conv = self.conv
        for sender, receiver, role in ((conv.consumer, conv.agent, "c"), (conv.agent, conv.consumer, "a")):
            text = f"canary {role} {i} {uuid.uuid4().hex[:6]}"
            event = {"type": "ContentEvent", "contentType": "text/plain", "message": text}
            resp = sender.request("ms.PublishEvent", {"conversationId": conv.conv_id, "event": event})
            if resp.get("code") != 200:
                self.counts.bad("canary_drops", resp)
                continue
            try:
                receiver.until(lambda m, t=text: m.get("type") == "ms.MessagingEventNotification" and any(
                    e.get("event", {}).get("message") == t for e in m["body"].get("events", [])), timeout=10)
                with self.counts.lock:
                    self.counts.canary_messages += 1
            except TimeoutError:
                self.counts.bad("canary_drops", f"chat message {text!r} never arrived")
        for sender, receiver in ((self.call_agent, self.call_consumer), (self.call_consumer, self.call_agent)):
            cand = {"type": "candidate", "candidate": {"candidate": f"candidate:{i} 1 udp 1 127.0.0.1 {1000 + i % 60000} typ host",
                                                       "sdpMid": "0", "sdpMLineIndex": 0}}
            sender.send(json.dumps(cand))
            deadline = time.monotonic() + 10
            while True:
                try:
                    frame = json.loads(receiver.recv(timeout=max(deadline - time.monotonic(), 0.001)))
                except TimeoutError:
                    self.counts.bad("canary_drops", f"call frame {i} never arrived")
                    break
                if frame.get("type") == "candidate" and frame["candidate"] == cand["candidate"]:
                    with self.counts.lock:
                        self.counts.canary_frames += 1
                    break
                if frame.get("type") in ("closed", "peer-left", "error"):
                    self.counts.bad("canary_drops", frame)
                    break
        time.sleep(0.02)  # pace of the canary (not a synchronisation): ~20 rounds a second


# -- the fuzzers -------------------------------------------------------------------------------------------
def consumer_templates(conv_id: str) -> list[dict[str, Any]]:
    ev = {"type": "ContentEvent", "contentType": "text/plain", "message": "hello"}
    return [
        {"kind": "req", "id": "f1", "type": "ms.PublishEvent", "body": {"conversationId": conv_id, "event": ev}},
        {"kind": "req", "id": 7, "type": "ms.SubscribeMessagingEvents", "body": {"conversationId": conv_id, "fromSeq": 0}},
        {"kind": "req", "id": "f4", "type": "cm.ConsumerRequestConversation", "body": {"visitorName": "V", "brandId": "b"}},
        {"kind": "req", "id": "f5", "type": "InitConnection", "headers": [
            {"type": ".ams.headers.ClientProperties", "features": ["CO_BROWSE"], "deviceFamily": "DESKTOP"},
            {"type": ".ams.headers.ConsumerAuthentication", "jwt": "not-a-token"}]},
        {"kind": "req", "id": "f6", "type": "ping", "body": {}},
    ]


def agent_templates(conv_id: str) -> list[dict[str, Any]]:
    ev = {"type": "ContentEvent", "contentType": "text/plain", "message": "hi"}
    return [
        {"kind": "req", "id": "a1", "type": "ms.PublishEvent", "body": {"conversationId": conv_id, "event": ev}},
        {"kind": "req", "id": "a2", "type": "agent.Open", "body": {"conversationId": conv_id, "fromSeq": 0}},
        {"kind": "req", "id": "a3", "type": "agent.SetAvailable", "body": {"available": False}},
        {"kind": "req", "id": "a4", "type": "agent.Take", "body": {"conversationId": conv_id}},
        {"kind": "req", "id": "a5", "type": "call.Active", "body": {}},
        {"kind": "req", "id": "a6", "type": "call.Invite", "body": {"conversationId": "no-such-" + conv_id, "mode": "VOICE_CALL"}},
        {"kind": "req", "id": "a7", "type": "netcheck.Request", "body": {"conversationId": "no-such"}},
        {"kind": "req", "id": "a8", "type": "call.Cancel", "body": {"serviceId": "no-such-call"}},
    ]


CALL_TEMPLATES: list[dict[str, Any]] = [
    {"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0",
                                        "sdpMLineIndex": 0, "usernameFragment": "u"}},
    {"type": "candidate", "candidate": None},
    {"type": "description", "description": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}},
    {"type": "state", "muted": True, "cameraOff": False},
    {"type": "failure", "id": "BORED"},
    {"type": "accept", "payload": {"serviceId": "x", "agentId": "alice", "visitorName": "V", "mode": "VOICE_CALL",
                                   "ssid": "s", "svid": "v"}},
    {"type": "ping"},
]
#: Valid frames of these types would end the fuzzed call (or are the consumer's); never sent valid.
CALL_ENDERS = {"hangup", "failure", "accept"}


def fuzz_frame_socket(name: str, client: FrameClient, templates: list[dict[str, Any]], n: int, rng: random.Random,
                      counts: Counts) -> None:
    for i in range(n):
        frame = mutate(rng, rng.choice(templates))
        barrier = f"barrier-{i}"
        try:
            _send(client.ws, frame)
            client.ws.send(json.dumps({"id": barrier, "type": "ping"}))
            answers = []
            while True:
                msg = json.loads(client.ws.recv(timeout=TIMEOUT))
                if msg.get("kind") != "resp":
                    continue
                if msg.get("reqId") == barrier:
                    break
                answers.append(msg)
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            counts.bad("crashes", f"{name} socket: {exc!r} after {str(frame)[:200]!r}")
            return
        with counts.lock:
            counts.inputs[name] += 1
        if not answers:
            counts.bad("unanswered", (name, str(frame)[:200]))
        for ans in answers:
            if ans.get("code", 200) >= 500:
                counts.bad("crashes", ans)
            if ans.get("type") == "GenericResponse":
                check_error(counts, ans["body"]["error"], str(frame)[:200])


def _oracle_refuses(frame: str | bytes) -> tuple[bool, str | None]:
    """Whether the library's own decode path and schema refuse ``frame`` (then the server must answer)."""
    try:
        data, _ = load_signal_frame(decode_json(frame, MAX_FRAME_BYTES))
    except LPCallError:
        return True, None
    return False, data["type"]


def fuzz_call_socket(call: tuple[ClientConnection, ClientConnection, str], n: int, rng: random.Random,
                     counts: Counts) -> None:
    agent_ws, consumer_ws, _ = call

    def drain() -> None:  # the consumer's side reads what is relayed to it
        try:
            while True:
                consumer_ws.recv()
        except (ConnectionClosed, OSError):
            return

    threading.Thread(target=drain, daemon=True).start()
    sent = 0
    while sent < n:
        raw = mutate(rng, rng.choice(CALL_TEMPLATES))
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        refused, kind = _oracle_refuses(raw)
        if not refused and kind in CALL_ENDERS:
            continue
        pongs = 2 if kind == "ping" else 1  # a valid ping is answered too, then the barrier's
        try:
            agent_ws.send(raw)
            agent_ws.send('{"type":"ping"}')
            errors = []
            while True:
                frame = json.loads(agent_ws.recv(timeout=TIMEOUT))
                if frame.get("type") == "pong":
                    pongs -= 1
                    if not pongs:
                        break
                if frame.get("type") == "error":
                    errors.append(frame)
                if frame.get("type") == "closed":
                    counts.bad("crashes", f"the fuzzed call closed: {frame}")
                    return
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            counts.bad("crashes", f"call socket: {exc!r} after {str(raw)[:200]!r}")
            return
        sent += 1
        with counts.lock:
            counts.inputs["call socket"] += 1
        if refused and not errors:
            counts.bad("unanswered", ("call", str(raw)[:200]))
        for err in errors:
            check_error(counts, err, str(raw)[:200])
    agent_ws.close()
    consumer_ws.close()


def http_templates(sid: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    cobrowse = {"serviceId": "svc-" + sid, "agentId": "alice", "visitorName": "V", "mode": "VOICE_CALL", "ssid": "s", "svid": "v"}
    return [
        ("POST", "consumer/session", {"vid": "v-1"}),
        ("POST", "call/prepare", cobrowse),
        ("POST", "call/accept", cobrowse),
        ("POST", "call/decline", cobrowse),
        ("POST", "call/resume", {"serviceId": "svc-x"}),
        ("GET", "call/active", None),
        ("POST", "netcheck/result", {"checkId": "c-1", "connected": True, "candidateType": "host", "rttMs": 1.5,
                                     "downKbps": 100, "upKbps": 100}),
        ("POST", "netcheck/offer", {"offer": {"type": "offer", "sdp": "v=0\r\n"}}),
        ("GET", "client-config", None),
        ("GET", "netcheck/config", None),
    ]


def fuzz_http(site: Site, token: str, n: int, rng: random.Random, counts: Counts) -> None:
    http = requests.Session()
    templates = http_templates(uuid.uuid4().hex[:8])
    for _ in range(n):
        method, path, body = rng.choice(templates)
        headers = {"Authorization": rng.choice([f"Bearer {token}", f"Bearer {token}", "Bearer x", "Basic abc", "Bearer "]),
                   "Content-Type": rng.choice(["application/json", "text/plain", "application/x-www-form-urlencoded"])}
        if rng.random() < 0.05:
            method = rng.choice(["PUT", "DELETE", "PATCH", "GET", "POST"])
        if rng.random() < 0.03:
            path = rng.choice(["nope", "call/", "consumer/session/x", "..%2f", "call/active?x=%ff"])
        data = mutate(rng, body if body is not None else {"x": 1})
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        try:
            resp = http.request(method, f"{site.base}{PREFIX}/api/{path}", data=data, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            counts.bad("crashes", f"HTTP {method} {path}: {exc!r}")
            continue
        with counts.lock:
            counts.inputs["JSON API"] += 1
        if resp.status_code >= 500:
            counts.bad("server_5xx", (method, path, resp.status_code, resp.text[:200], data[:200]))
            continue
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
            except (ValueError, KeyError, TypeError):
                counts.bad("server_5xx", ("not a JSON error", method, path, resp.status_code, resp.text[:200]))
                continue
            check_error(counts, err, (method, path, data[:200]))


# -- a run -------------------------------------------------------------------------------------------------
def run(base: str, inputs: int, seed: int = 14, log: Path | None = None) -> dict[str, Any]:
    """Fuzz the site at ``base`` with about ``inputs`` frames and requests; the counts."""
    site = Site(base)
    counts = Counts()
    stop = threading.Event()
    canary = Canary(site, counts, stop)
    canary.start()
    fuzz_conv = open_conversation(site, "alice")
    consumer_conv = open_conversation(site, "alice", agent=fuzz_conv.agent)
    call = open_call(site, fuzz_conv, "alice")
    fuzz_conv.consumer.ws.close()  # its conversation gets the fuzzed agent's messages; nobody reads them
    per = inputs // 4 + 1
    rngs = [random.Random(seed * 10 + i) for i in range(4)]
    workers = [
        threading.Thread(target=fuzz_frame_socket, name="fuzz-consumer",
                         args=("consumer socket", consumer_conv.consumer, consumer_templates(consumer_conv.conv_id), per,
                               rngs[0], counts)),
        threading.Thread(target=fuzz_frame_socket, name="fuzz-agent",
                         args=("agent socket", fuzz_conv.agent, agent_templates(fuzz_conv.conv_id), per, rngs[1], counts)),
        threading.Thread(target=fuzz_call_socket, name="fuzz-call", args=(call, per, rngs[2], counts)),
        threading.Thread(target=fuzz_http, name="fuzz-http", args=(site, consumer_conv.token, per, rngs[3], counts)),
    ]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - t0
    stop.set()
    canary.join(60)
    if canary.is_alive():
        counts.bad("canary_drops", "the canary did not finish")
    if log is not None and log.exists():
        tracebacks = log.read_text(errors="replace").count("Traceback (most recent call last)")
        for _ in range(tracebacks):
            counts.bad("crashes", f"a traceback in the server log {log}")
    return {**counts.summary(), "seconds": elapsed, "seed": seed}


def start_site(workdir: Path) -> Any:
    from benchmarks.bench_connections import start_site as start

    return start(workdir, "memory")


def markdown(result: dict[str, Any]) -> str:
    inputs = ", ".join(f"{k}: {v:,}" for k, v in sorted(result["inputs"].items()))
    codes = ", ".join(f"`{k}` {v:,}" for k, v in result["codes"].items())
    return "\n".join([
        f"### Fuzzing, one gevent worker ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, seed {result['seed']})",
        "",
        ("`python benchmarks/bench_fuzz.py` — malformed frames and requests mutated from valid ones over the three "
         "sockets and every JSON endpoint, with a live canary chat (consumer + agent) and call (two signaling "
         "sockets) beside them. Same code as the CI run (`tests/test_fuzz.py`, ≥ 10,000 inputs)."),
        "",
        f"Inputs: **{result['total']:,}** in {result['seconds']:.0f} s ({inputs}).",
        "",
        "| crashes | 5xx | unanswered | errors without a field | canary drops | canary messages / call frames |",
        "|---:|---:|---:|---:|---:|---:|",
        (f"| {result['crashes']} | {result['5xx']} | {result['unanswered']} | {result['no_field']} | "
         f"{result['canary_drops']} | {result['canary_messages']:,} / {result['canary_frames']:,} |"),
        "",
        f"Answers by code: {codes}.",
    ])


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lpcall-fuzz-"))
    server = start_site(workdir)
    try:
        result = run(f"http://127.0.0.1:{server.port}", args.inputs, args.seed,
                     log=next(workdir.glob("site-*.log"), None))
    finally:
        server.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    for example in result["examples"]:
        print(" ", example)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return markdown(result)


if __name__ == "__main__":
    print(main())
