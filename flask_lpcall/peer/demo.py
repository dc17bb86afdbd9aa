"""The demo agent: a Python agent that lets a developer see a complete call alone.

It logs in to the agent workspace like a person (the login form), opens the agent
socket (docs/PROTOCOL.md §4) and marks itself available. It takes every waiting
conversation, greets it (``demo.greeting``), and when the visitor writes the trigger
phrase (``demo.trigger``, "call me") it sends ``demo.calling``, invites the visitor to a
video call (``call.Invite``) and joins the call with :class:`flask_lpcall.peer.Peer`,
sending a colour-bar test pattern with the visitor's own camera as an inset and an
echo of the visitor's audio.

Run it next to the site: ``flask lpcall demo-agent --url http://127.0.0.1:5000``
(``./dev.sh run`` starts it for the example site).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import itertools
import json
import logging
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import LPCallError
from ..optional import require
from ..texts import build_texts, render
from .media import EchoAudioTrack, TestPatternTrack
from .participant import Peer, PeerError

logger = logging.getLogger(__name__)

_ws_client = require("websockets.asyncio.client", "the demo agent (flask lpcall demo-agent)")


class DemoAgentError(LPCallError):
    """The demo agent cannot log in or talk to the server."""

    code = "DEMO_AGENT_ERROR"


@dataclass
class DemoSettings:
    url: str  # the site, e.g. http://127.0.0.1:5000
    username: str = "demo"
    password: str = "demo"
    prefix: str = "/lpcall"
    texts: Mapping[str, str] = field(default_factory=lambda: build_texts("en", {}))
    video_size: tuple[int, int] = (640, 360)
    max_call_seconds: float = 1800.0
    request_timeout: float = 10.0


def login(settings: DemoSettings, timeout: float = 10.0) -> str:
    """Log in through the workspace login form; returns the Cookie header for the agent socket."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = f"{settings.url}{settings.prefix}/agent/login"
    try:
        page = opener.open(login_url, timeout=timeout).read().decode()
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if not match:
            raise DemoAgentError(f"no login form at {login_url}", code="NO_LOGIN_FORM")
        form = urllib.parse.urlencode(
            {"csrf_token": match.group(1), "username": settings.username, "password": settings.password}
        ).encode()
        resp = opener.open(urllib.request.Request(login_url, data=form, method="POST"), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise DemoAgentError(f"the site refused user {settings.username!r}", code="BAD_LOGIN") from None
        raise DemoAgentError(f"login failed: HTTP {exc.code}", code="LOGIN_FAILED") from None
    except OSError as exc:
        raise DemoAgentError(f"cannot reach {login_url}: {exc}", code="UNREACHABLE") from None
    if resp.url.rstrip("/").endswith("/agent/login"):
        raise DemoAgentError(f"the site refused user {settings.username!r}", code="BAD_LOGIN")
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def _text(event: Mapping[str, Any]) -> str:
    return str((event.get("event") or {}).get("message") or "")


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


def wants_call(message: str, texts: Mapping[str, str]) -> bool:
    """Whether a visitor's message asks for a call (the catalog's trigger phrase or "call me")."""
    words = _words(message)
    return any(_words(t) in words for t in {texts.get("demo.trigger", "call me"), "call me"})


class DemoAgent:
    """The running demo agent (one agent socket, any number of conversations and calls)."""

    def __init__(self, settings: DemoSettings) -> None:
        self.s = settings
        self.ws: Any = None
        self.agent_id: str | None = None
        self.name = "Demo agent"
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.greeted: set[str] = set()
        self.opened: set[str] = set()
        self.seen_seq: dict[str, int] = {}
        self.calls: dict[str, Peer] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscribed: asyncio.Event | None = None  # set once agent_id is known (agent.Subscribe answered)

    @property
    def ws_base(self) -> str:
        return "ws" + self.s.url[4:] if self.s.url.startswith("http") else self.s.url

    # -- socket --------------------------------------------------------------------------
    async def connect(self) -> None:
        connect = _ws_client.connect
        cookie = await asyncio.to_thread(login, self.s)
        self.ws = await asyncio.wait_for(
            connect(f"{self.ws_base}{self.s.prefix}/ws/agent", additional_headers={"Cookie": cookie}, max_size=2**21),
            self.s.request_timeout,
        )

    async def request(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        req_id = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        await self.ws.send(json.dumps({"kind": "req", "id": req_id, "type": kind, "body": body or {}}))
        try:
            resp = await asyncio.wait_for(future, self.s.request_timeout)
        except asyncio.TimeoutError:
            raise DemoAgentError(f"no answer to {kind} within {self.s.request_timeout:g}s", code="TIMEOUT") from None
        finally:
            self._pending.pop(req_id, None)
        if resp.get("code") != 200:
            err = (resp.get("body") or {}).get("error") or {}
            raise DemoAgentError(err.get("message") or f"{kind} failed", code=err.get("code") or "REQUEST_FAILED")
        return resp.get("body") or {}

    async def run(self) -> None:
        """Serve until the socket closes (raises DemoAgentError then)."""
        if self.ws is None:
            await self.connect()
        self._subscribed = asyncio.Event()
        reader = asyncio.ensure_future(self._read())
        try:
            me = await self.request("agent.Subscribe", {"available": True})
            self.agent_id, self.name = me.get("agentId"), me.get("name") or self.name
            self._subscribed.set()
            logger.info("demo agent %s is available", self.agent_id)
            await reader
        finally:
            reader.cancel()
            for peer in list(self.calls.values()):
                await peer.close()
        raise DemoAgentError("the agent socket closed", code="SOCKET_CLOSED")

    async def close(self) -> None:
        """Leave: hang up the calls, close the agent socket (the server marks the agent away), stop its tasks."""
        for peer in list(self.calls.values()):
            await peer.close()
        if self.ws is not None:
            await self.ws.close()
        for task in list(self._tasks):
            task.cancel()

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(frame, dict):
                    continue
                if frame.get("kind") == "resp":
                    future = self._pending.get(str(frame.get("reqId")))
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif frame.get("kind") == "notification":
                    self._spawn(self._on_notification(frame.get("type"), frame.get("body") or {}))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("demo agent: %s", task.exception())

    # -- conversations -------------------------------------------------------------------
    async def _on_notification(self, kind: str | None, body: dict[str, Any]) -> None:
        # the conversation list follows the Subscribe response at once, and may be handled before run() has
        # read our own id from it: without the id, the conversations already assigned to us would be ignored
        if self._subscribed is not None:
            await asyncio.wait_for(self._subscribed.wait(), self.s.request_timeout)
        if kind == "agent.ConversationList":
            for row in body.get("conversations") or []:
                await self._on_conversation(row)
        elif kind == "agent.ConversationChange" and body.get("visible"):
            await self._on_conversation(body.get("conversation") or {})
        elif kind == "ms.MessagingEventNotification":
            await self._on_events(body.get("conversationId"), body.get("events") or [])

    async def _on_conversation(self, row: dict[str, Any]) -> None:
        conv_id = row.get("convId")
        if not conv_id or row.get("state") != "OPEN":
            return
        if row.get("agentId") is None:
            try:
                await self.request("agent.Take", {"conversationId": conv_id})
            except DemoAgentError as exc:
                logger.info("demo agent could not take %s: %s", conv_id, exc)
            return  # the change notification for our own conversation follows
        if row.get("agentId") == self.agent_id and conv_id not in self.opened:
            self.opened.add(conv_id)
            await self.request("agent.Open", {"conversationId": conv_id, "fromSeq": 0})

    async def _say(self, conv_id: str, key: str, **params: Any) -> None:
        text = render(self.s.texts, key, **params)
        await self.request(
            "ms.PublishEvent",
            {"conversationId": conv_id, "event": {"type": "ContentEvent", "contentType": "text/plain", "message": text}},
        )

    async def _on_events(self, conv_id: str | None, events: list[dict[str, Any]]) -> None:
        if not conv_id:
            return
        if conv_id not in self.greeted:  # the transcript so far, sent after agent.Open
            self.greeted.add(conv_id)
            for event in events:
                self.seen_seq[conv_id] = max(self.seen_seq.get(conv_id, -1), int(event.get("sequence", -1)))
            if not any(e.get("role") == "AGENT" and e.get("originatorId") == self.agent_id for e in events):
                await self._say(conv_id, "demo.greeting", agent=self.name)
            last = events[-1] if events else None
            if last is not None and last.get("role") == "CONSUMER" and wants_call(_text(last), self.s.texts):
                await self._call(conv_id)  # asked before we picked the conversation up
            return
        for event in events:
            seq = int(event.get("sequence", -1))
            if seq <= self.seen_seq.get(conv_id, -1):
                continue
            self.seen_seq[conv_id] = seq
            if event.get("role") == "CONSUMER" and wants_call(_text(event), self.s.texts):
                await self._call(conv_id)

    # -- calls ---------------------------------------------------------------------------
    async def _call(self, conv_id: str) -> None:
        if conv_id in self.calls:
            return
        try:
            info = await self.request("call.Invite", {"conversationId": conv_id, "mode": "VIDEO_CALL"})
        except DemoAgentError as exc:
            await self._say(conv_id, "demo.unavailable", reason=str(exc))
            return
        await self._say(conv_id, "demo.calling")
        echo = EchoAudioTrack()
        holder: dict[str, Peer] = {}
        pattern = TestPatternTrack(*self.s.video_size, inset=lambda: holder["peer"].last_video_frame)
        peer = Peer(
            f"{self.ws_base}{self.s.prefix}/ws/call",
            info["token"],
            audio=echo,
            video=pattern,
            on_audio_frame=echo.push,
            connect_timeout=float(info.get("connectTimeout") or 30),
        )
        holder["peer"] = peer
        self.calls[conv_id] = peer
        self._spawn(self._run_call(conv_id, peer))

    async def _run_call(self, conv_id: str, peer: Peer) -> None:
        try:
            await peer.join()
            closed = await peer.wait_closed(timeout=self.s.max_call_seconds)
            logger.info("demo call in %s ended: %s", conv_id, closed.get("reason"))
        except PeerError as exc:
            logger.info("demo call in %s ended: %s (%s)", conv_id, exc, exc.code)
            with contextlib.suppress(PeerError):
                await peer.hangup()  # e.g. the visitor never answered: end the call for both
        finally:
            await peer.close()
            self.calls.pop(conv_id, None)


async def serve_forever(settings: DemoSettings, wait: float = 30.0, watch_pid: int | None = None) -> None:
    """Run the demo agent; reconnect while the site is (re)starting; stop when ``watch_pid`` exits."""
    deadline = time.monotonic() + wait
    while True:
        if watch_pid is not None and not _alive(watch_pid):
            logger.info("the site process %s is gone; the demo agent stops", watch_pid)
            return
        agent = DemoAgent(settings)
        try:
            await agent.connect()
            deadline = time.monotonic() + wait
            watcher = asyncio.ensure_future(_watch(watch_pid)) if watch_pid else None
            runner = asyncio.ensure_future(agent.run())
            done, _ = await asyncio.wait([t for t in (runner, watcher) if t], return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                runner.cancel()
                return
            with contextlib.suppress(DemoAgentError):
                runner.result()
        except DemoAgentError as exc:
            if exc.code == "BAD_LOGIN" or time.monotonic() > deadline:
                raise
            logger.debug("demo agent waiting for the site: %s", exc)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise DemoAgentError(f"cannot reach the site: {exc}", code="UNREACHABLE") from None
        await asyncio.sleep(0.5)  # retry period while the site starts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _watch(pid: int | None) -> None:
    while pid is not None and _alive(pid):
        await asyncio.sleep(1.0)  # poll period of the parent watch
