"""The call signaling socket ``GET /ws/call?token=`` (flask-sock, PROTOCOL §5).

Frames between the two participants travel over the store's bus on
``call:<serviceId>:<role>``, never through a process-global socket map: the peer's
socket may live in another worker. Each socket sends under its own lock, bus
deliveries are queued and written by a per-socket sender thread, so a slow
browser never blocks the publisher. The worker's keepalive thread (keepalive.py) pings
every socket and refreshes its participant's presence once per heartbeat, so the reader
waits for frames without a timer.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any

from flask import Blueprint, request
from simple_websocket import ConnectionClosed

from ..core.callmanager import LOST_CONFIRM, CallManager, channel, other
from ..core.calls import ACCEPTED, INVITED, CallSession
from ..core.presence import BEAT_MISSING, BEAT_REPLACED, TAB_CONFLICT
from ..core.schemas import load_signal_frame, refused_gen
from ..errors import BadFrameError, LPCallError, NotAllowedError, NotFoundError
from ..state import get_state
from .keepalive import Keepalive
from .route import Sock
from .transport import (
    close_and_wait,
    close_unanswered,
    decode_json,
    request_origin_allowed,  # the same rule as the other sockets (PROTOCOL §1)
    write_ping,
)

logger = logging.getLogger(__name__)

_sock = Sock()
_STOP = object()
_PING = object()  # outbox actions from the keepalive thread, done by the sender
_PING_TIMEOUT = object()
_REPLACED = object()
CLOSE_WAIT = 5.0  # seconds a client may take to close its socket after `closed`
QUALITY_MIN_INTERVAL = 0.5  # seconds between two relayed `quality` frames of one socket (issue 17)
SENDER_WAIT = 2.0  # seconds the handler waits for its sender to finish a close it is making
_encode = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps builds an encoder per call


class Outbox:
    """The frames one sender writes: a deque and an event (under gevent a third of ``queue.Queue``'s
    cost, which takes a condition and two locks per frame). Any thread may put; one thread gets."""

    __slots__ = ("_items", "_ready")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._ready = threading.Event()

    def put(self, item: Any) -> None:
        self._items.append(item)
        self._ready.set()

    def get(self) -> Any:
        items = self._items
        while not items:
            self._ready.wait()
            self._ready.clear()  # cleared before the deque is looked at again: no wake-up is lost
        return items.popleft()


class CallSocket:
    """One participant's signaling connection."""

    def __init__(self, ws: Any, manager: CallManager, max_bytes: int, tab: str | None = None,
                 keepalive: Keepalive | None = None) -> None:
        self.ws = ws
        self.keepalive = keepalive
        self.sid = self.role = ""  # set when the socket serves a call
        self.tab = tab  # the browser tab's id (?tab=), see presence.py
        self.manager = manager
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.outbox = Outbox()
        self.conn_id = uuid.uuid4().hex
        self.closed_frame: dict[str, Any] | None = None
        self.client_gone = threading.Event()
        self.listening = False  # a consumer socket opened before the Accept (PROTOCOL §5)
        self.last_quality = float("-inf")  # when this socket's last `quality` frame was relayed
        self.lost_check: threading.Timer | None = None

    def send(self, frame: dict[str, Any]) -> None:
        with self.lock:
            self.ws.send(_encode(frame))

    def error(self, code: str, message: str, field: str | None = None, gen: str | None = None) -> None:
        frame = {"type": "error", "code": code, "message": message}
        if field:
            frame["field"] = field
        if gen:
            frame["gen"] = gen
        self.send(frame)

    # -- keepalive.Watched: called by the keepalive thread, acted on by the sender ---------------
    def send_ping(self) -> None:
        self.outbox.put(_PING)

    def ping_timeout(self) -> None:
        self.outbox.put(_PING_TIMEOUT)

    def tick(self) -> None:
        """Refresh the participant's presence (presence.py); a newer socket of it closes this one."""
        if self.closed_frame is not None or not self.sid:
            return
        if self.listening:  # no presence to refresh; the call's document may still vanish
            if self.manager.lost(self.sid):
                self.suspect_lost()
            return
        status = self.manager.beat(self.sid, self.role, self.conn_id)
        if status == BEAT_REPLACED:
            self.outbox.put(_REPLACED)
        elif status == BEAT_MISSING:
            self.suspect_lost()

    def suspect_lost(self) -> None:
        """The call's keys are gone. Unless its `closed` comes within LOST_CONFIRM (a normal close
        deletes the keys first), its state was lost (store restarted empty): the client is told
        with `closed {reason: "state_lost"}` (PROTOCOL §5, issue 14 finding 9)."""
        if self.lost_check is not None:
            return

        def confirm() -> None:
            self.lost_check = None
            try:
                gone = self.closed_frame is None and self.manager.lost(self.sid)
            except LPCallError:
                return  # the store is unreachable: not a loss (yet); the next heartbeat looks again
            if gone:
                logger.warning("call %s vanished from the store: telling the %s", self.sid, self.role)
                self.outbox.put(self.manager.lost_frame())

        self.lost_check = threading.Timer(LOST_CONFIRM, confirm)
        self.lost_check.daemon = True
        self.lost_check.start()

    def _drain(self) -> None:
        while True:
            frame = self.outbox.get()
            if frame is _STOP:
                return
            try:
                if frame is _PING:
                    with self.lock:
                        write_ping(self.ws)
                    continue
                if frame is _PING_TIMEOUT or frame is _REPLACED:
                    self._close_for(frame)
                    return
                if type(frame) is str:  # a relayed frame's wire text (_wire_text)
                    with self.lock:
                        self.ws.send(frame)
                    continue
                self.send(frame)
            except (ConnectionClosed, OSError):  # the socket is gone; the receive loop notices
                return
            if frame.get("type") == "closed":
                self.closed_frame = frame
                # The client closes on `closed`; closing first from here races Werkzeug's dev
                # server, which writes an HTTP response after the handler returns and can make
                # the browser drop the frame. Only a client that stays is closed by us.
                if not self.client_gone.wait(CLOSE_WAIT):
                    try:
                        self.ws.close(1000, "call closed")
                    except (ConnectionClosed, OSError):
                        logger.debug("socket already closed")
                return

    def _close_for(self, action: object) -> None:
        with self.lock:
            if action is _PING_TIMEOUT:
                close_unanswered(self.ws)
                return
        logger.debug("call %s: %s socket replaced by a newer one", self.sid, self.role)
        close_and_wait(self.ws, 1000, "replaced")  # the browser must see the reason

    def run(self, token: Any) -> None:
        _no_delay(self.ws)
        state = get_state()
        try:
            data = state.signer.verify("call", token, state.settings.call_token_ttl)
            sid, role, uid = data.get("sid"), data.get("role"), data.get("uid")
            if role not in ("agent", "consumer") or not isinstance(sid, str) or not isinstance(uid, str):
                raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
            session = self.manager.get(sid)
            if session is None or not session.is_open:
                raise NotAllowedError("the call has ended", code="CALL_ENDED", field="token")
            if session.uid_of(role) != uid:
                raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
        except LPCallError as exc:
            self.error(exc.code, str(exc), exc.field)
            self.ws.close(1008, exc.code)
            return
        # A consumer whose invitation is still open listens (PROTOCOL §5 "Before the Accept"): it
        # gets the agent's offer ahead, but sends no media signals until its `accept` frame.
        self.serve(sid, role, uid, listening=role == "consumer" and session.state == INVITED)

    def serve(self, sid: str, role: str, uid: str, listening: bool = False) -> None:
        manager = self.manager
        try:
            sub = manager.store.subscribe(channel(sid, role), self.outbox.put)
        except LPCallError as exc:  # e.g. STORE_UNAVAILABLE: an error frame, never an HTTP 500 in the socket
            self.error(exc.code, str(exc), exc.field)
            close_and_wait(self.ws, 1013, exc.code)
            return
        # Started once `joined` is sent: bus frames that arrive meanwhile wait in the outbox,
        # so a client always sees `joined` first.
        sender = threading.Thread(target=self._drain, name="lpcall-call-send", daemon=True)
        self.listening = listening
        try:
            if listening:  # no presence yet: other tabs may listen too, the accepting one joins
                doc = manager.doc(sid)
                session = CallSession.from_dict(doc) if doc else None
                if session is None or not session.is_open:
                    self.error("CALL_ENDED", "the call has ended")
                    return
            else:
                joined = self._join(sid, role)
                if joined is None:
                    return
                session, doc = joined
            peer = other(role)
            peer_present = manager.is_present(sid, peer)
            self.send(
                {
                    "type": "joined",
                    "serviceId": sid,
                    "role": role,
                    "mode": session.mode,
                    "polite": role == "consumer",
                    "peerPresent": peer_present,
                    "peerState": (doc.get("media") or {}).get(peer),
                    "selfState": (doc.get("media") or {}).get(role),
                    "sessionState": session.state,
                    "heartbeat": manager.presence.heartbeat,
                    "grace": manager.presence.grace,
                    "iceRestartAttempts": int(manager.settings.ice_restart_attempts),
                    **_ice(manager, session, role),
                }
            )
            sender.start()
            manager.store.publish(channel(sid, peer), {"type": "peer-joined", "role": role})
            self.sid, self.role = sid, role
            if self.keepalive is not None:
                self.keepalive.watch(self)
            self.loop(sid, role, uid)
        finally:
            if self.keepalive is not None:
                self.keepalive.unwatch(self)
            self.client_gone.set()
            sub.close()
            self.outbox.put(_STOP)
            # A close the sender is making (replaced, ping timeout) completes before the handler
            # returns: Werkzeug writes an HTTP response after it, which can make the browser lose
            # the close frame and its reason (a replaced tab would then rejoin and fight back).
            if sender.is_alive() and sender is not threading.current_thread():
                sender.join(SENDER_WAIT)
            if not self.listening:
                self._leave(sid, role)

    def _join(self, sid: str, role: str) -> tuple[CallSession, dict[str, Any]] | None:
        """Take the participant's place (presence); None after telling the client why not."""
        try:
            return self.manager.participant_joined(sid, role, self.conn_id, self.tab)
        except LPCallError as exc:
            if exc.code == TAB_CONFLICT:  # another tab holds the call: refused, that tab keeps it
                logger.info("call %s: %s join from a second tab refused", sid, role)
                self.error(exc.code, str(exc), exc.field)
                close_and_wait(self.ws, 1008, exc.code)  # no stray HTTP bytes may follow the error frame
                return None
            self.error("CALL_ENDED", "the call has ended")
            return None

    def _leave(self, sid: str, role: str) -> None:
        manager = self.manager
        grace_until = manager.participant_left(sid, role, self.conn_id)
        if grace_until is not None and self.closed_frame is None:
            manager.store.publish(channel(sid, other(role)), {"type": "peer-left", "role": role, "graceUntil": grace_until})

    def loop(self, sid: str, role: str, uid: str) -> None:
        while True:
            raw = self.ws.receive()  # no timer per frame: heartbeats are the keepalive thread's
            if self.closed_frame is not None or raw is None:
                continue  # the call is over: wait for the client to close
            data: Any = None
            try:  # the one decode path of every socket (size in bytes, depth, integers, UTF-8)
                data = decode_json(raw, self.max_bytes)
                frame, verbatim = load_signal_frame(data)
            except LPCallError as exc:
                # a refused description/candidate names its `gen` (PROTOCOL §5): its sender knows which
                # negotiation the other side never got, and negotiates again
                self.error(exc.code, str(exc), exc.field, gen=refused_gen(data))
                continue
            try:
                if not self._handle(frame, verbatim, raw, sid, role, uid):
                    return
            except LPCallError as exc:
                self.error(exc.code, str(exc), exc.field)
            except (ConnectionClosed, OSError):
                raise
            except Exception:  # a fault of the server: logged, answered, and the socket and the call stay up
                logger.exception("call %s: %s frame %r failed", sid, role, frame.get("type"))
                self.error("INTERNAL", "internal error; the frame was not processed")

    def _handle(self, frame: dict[str, Any], verbatim: bool, raw: Any, sid: str, role: str, uid: str) -> bool:
        """Act on one valid frame; False when the socket may not go on."""
        manager = self.manager
        peer = other(role)
        kind = frame["type"]
        if kind in ("description", "candidate"):
            if self.listening:
                raise _not_accepted()
            relayed = _wire_text(raw, role) if verbatim and type(raw) is str else None
            manager.store.publish(channel(sid, peer), relayed or {**frame, "from": role})
        elif kind == "state":
            manager.set_media_state(sid, role, frame["muted"], frame["cameraOff"])
            manager.store.publish(channel(sid, peer), {**frame, "from": role})
        elif kind == "quality":  # issue 17: at most one every QUALITY_MIN_INTERVAL s is relayed
            if self.listening:
                raise _not_accepted()
            now = time.monotonic()
            if now - self.last_quality >= QUALITY_MIN_INTERVAL:
                self.last_quality = now
                manager.store.publish(channel(sid, peer), {**frame, "from": role})
                try:
                    manager.note_quality(sid, role, frame)  # for the call's record
                except NotFoundError:
                    pass  # the call just closed: its record is written already
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind == "accept":
            if not self._accept(sid, role, uid, frame["payload"]):
                return False
        elif kind == "listening":  # the agent (re)joined after us: it learns we are here
            if self.listening:
                manager.store.publish(channel(sid, peer), {"type": "peer-joined", "role": role})
        elif self.listening and kind in ("connected", "failure"):
            raise _not_accepted()
        elif kind == "connected":
            manager.mark_connected(role, uid, sid)
        elif kind == "hangup":
            try:
                manager.hangup(role, uid, sid)
            except NotFoundError:
                self.suspect_lost()  # the call vanished: `closed` state_lost answers the hang-up
        elif kind == "failure":
            manager.fail(role, uid, sid, frame["id"])
        return True

    def _accept(self, sid: str, role: str, uid: str, payload: dict[str, Any]) -> bool:
        """The consumer's Accept on its socket: the call is ACCEPTED and a listening socket joins.

        False when the socket may not go on (another tab holds the call: refused and closed).
        """
        if role != "consumer":
            raise NotAllowedError("type: only the consumer accepts a call", code="NOT_ALLOWED", field="type")
        if payload["serviceId"] != sid:
            raise BadFrameError("payload.serviceId: not the call of this socket", field="payload.serviceId")
        manager = self.manager
        manager.accept(uid, payload)  # the agent hears `session` ACCEPTED
        if self.listening:
            if self._join(sid, role) is None:
                return False
            self.listening = False
            # the agent already has us (peer-joined while listening): no fresh negotiation, only
            # an offer it still holds (it joined after we started listening) goes out now
            manager.store.publish(channel(sid, "agent"), {"type": "peer-joined", "role": role, "accepted": True})
        # every socket of this consumer learns: this one goes on, other tabs' listeners stop
        manager.store.publish(channel(sid, role), {"type": "session", "sessionState": ACCEPTED})
        return True


def _wire_text(raw: str, role: str) -> str | None:
    """A relayed frame the client sent in a form the server keeps as is crosses the bus as the text
    the peer's socket sends: the client's own text with ``"from"`` added. No copy per subscriber,
    no encoding per frame (issue 7); the peer's sender writes a ``str`` from the bus unchanged."""
    text = raw.rstrip()
    if not text.endswith("}"):
        return None
    return f'{text[:-1]},"from":"{role}"}}'


def _no_delay(ws: Any) -> None:
    """Frames go out at once (issue 17): with Nagle's algorithm a second small frame written right
    after another (``session`` then the relayed answer, after an Accept) waits for the peer's ACK of
    the first, i.e. one more round trip on a real network. Browsers set TCP_NODELAY on their side."""
    sock = getattr(ws, "sock", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError, TypeError):
        logger.debug("TCP_NODELAY not set on the call socket", exc_info=True)


def _not_accepted() -> NotAllowedError:
    return NotAllowedError("type: the invitation has not been accepted yet", code="NOT_ACCEPTED", field="type")


def _ice(manager: CallManager, session: Any, role: str) -> dict[str, Any]:
    info = manager.join_info(session, role)
    return {"iceServers": info["iceServers"], "iceTransportPolicy": info["iceTransportPolicy"]}


def register(bp: Blueprint) -> None:
    @_sock.route("/ws/call", bp=bp)
    def call_socket(ws: Any) -> None:
        state = get_state()
        if not request_origin_allowed(state.settings.allowed_origins):
            logger.warning("call socket from foreign origin %r refused", request.headers.get("Origin"))
            close_and_wait(ws, 1008, "origin not allowed")  # no stray HTTP bytes after the close frame
            return
        manager: CallManager = state.calls
        try:
            tab = (request.args.get("tab") or "")[:64] or None
            CallSocket(ws, manager, int(state.settings.max_frame_bytes), tab,
                       state.keepalive).run(request.args.get("token"))
        except ConnectionClosed:
            pass
