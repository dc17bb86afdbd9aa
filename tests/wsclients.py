"""Scripted (non-browser) consumer and agent clients over the real sockets, for the scale-out tests.

They speak PROTOCOL §3/§4 with ``websockets``' sync client, so a test can drive a
conversation through any server (gunicorn workers, separate hosts) without a browser.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from websockets.sync.client import ClientConnection, connect


class FrameClient:
    """Request/response + notifications on one socket."""

    def __init__(self, ws_url: str, origin: str, cookie: str | None = None) -> None:
        headers = {"Cookie": cookie} if cookie else None
        self.ws: ClientConnection = connect(ws_url, origin=origin, additional_headers=headers, open_timeout=10)  # type: ignore[arg-type]
        self._ids = itertools.count(1)
        self.notifications: list[dict[str, Any]] = []

    def request(self, type_: str, body: dict[str, Any] | None = None, timeout: float = 10, **extra: Any) -> dict[str, Any]:
        req_id = str(next(self._ids))
        frame = {"kind": "req", "id": req_id, "type": type_, "body": body or {}, **extra}
        self.ws.send(json.dumps(frame))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("kind") == "resp" and str(msg.get("reqId")) == req_id:
                return msg
            self.notifications.append(msg)

    def wait_notification(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        for i, msg in enumerate(self.notifications):
            if predicate(msg):
                return self.notifications.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if predicate(msg):
                return msg
            self.notifications.append(msg)

    def _recv(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no frame in time; pending notifications: {self.notifications[-5:]}")
        return json.loads(self.ws.recv(timeout=remaining))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.ws.close()


def _origin(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}"


def _ws(base_url: str) -> str:
    return base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


class Consumer:
    def __init__(self, base_url: str, prefix: str = "/lpcall", features: tuple[str, ...] = ("CO_BROWSE",)) -> None:
        self.base_url, self.prefix = base_url, prefix
        resp = requests.post(f"{base_url}{prefix}/api/consumer/session", json={"vid": "v-test"}, timeout=10)
        resp.raise_for_status()
        self.consumer_id: str = resp.json()["consumerId"]
        self.token: str = resp.json()["token"]
        self.features = list(features)
        self.client: FrameClient | None = None

    def connect(self, base_url: str | None = None) -> dict[str, Any]:
        base = base_url or self.base_url
        self.client = FrameClient(f"{_ws(base)}{self.prefix}/ws/consumer", origin=_origin(base))
        headers = [{"type": ".ams.headers.ClientProperties", "features": self.features},
                   {"type": ".ams.headers.ConsumerAuthentication", "jwt": self.token}]
        return self.client.request("InitConnection", headers=headers)

    def open_conversation(self, visitor_name: str = "Vera") -> str:
        assert self.client is not None
        resp = self.client.request("cm.ConsumerRequestConversation", {"visitorName": visitor_name})
        assert resp["code"] == 200, resp
        conv_id: str = resp["body"]["conversationId"]
        sub = self.client.request("ms.SubscribeMessagingEvents", {"conversationId": conv_id})
        assert sub["code"] == 200, sub
        return conv_id

    def say(self, conv_id: str, text: str) -> dict[str, Any]:
        assert self.client is not None
        event = {"type": "ContentEvent", "contentType": "text/plain", "message": text}
        return self.client.request("ms.PublishEvent", {"conversationId": conv_id, "event": event})

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class Agent:
    def __init__(self, base_url: str, username: str = "bob", password: str = "bob", prefix: str = "/lpcall") -> None:
        self.base_url, self.prefix = base_url, prefix
        self.http = requests.Session()
        page = self.http.get(f"{base_url}{prefix}/agent/login", timeout=10)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, "no CSRF token on the login page"
        resp = self.http.post(f"{base_url}{prefix}/agent/login", timeout=10, allow_redirects=False,
                              data={"username": username, "password": password, "csrf_token": match.group(1)})
        assert resp.status_code in (302, 303), resp.text[:500]
        self.client: FrameClient | None = None

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def connect(self, base_url: str | None = None, available: bool = True) -> dict[str, Any]:
        base = base_url or self.base_url
        self.client = FrameClient(f"{_ws(base)}{self.prefix}/ws/agent", origin=_origin(base), cookie=self.cookie())
        return self.client.request("agent.Subscribe", {"available": available})

    def take_and_open(self, conv_id: str) -> None:
        assert self.client is not None
        for type_ in ("agent.Take", "agent.Open"):
            resp = self.client.request(type_, {"conversationId": conv_id})
            assert resp["code"] == 200, resp

    def say(self, conv_id: str, text: str) -> dict[str, Any]:
        assert self.client is not None
        event = {"type": "ContentEvent", "contentType": "text/plain", "message": text}
        return self.client.request("ms.PublishEvent", {"conversationId": conv_id, "event": event})

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def message_from(text: str) -> Any:
    """Predicate: a MessagingEventNotification carrying ``text``."""

    def match(msg: dict[str, Any]) -> bool:
        if msg.get("type") != "ms.MessagingEventNotification":
            return False
        return any(e.get("event", {}).get("message") == text for e in msg["body"].get("events", []))

    return match
