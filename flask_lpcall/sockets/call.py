"""The call signaling socket ``GET /ws/call?token=`` (flask-sock, PROTOCOL §5).

Frames between the two participants travel over the store's bus on
``call:<serviceId>:<role>``, never through a process-global socket map: the peer's
socket may live in another worker. A :class:`CallSocket` is the package's one transport
(transport.py) with a resident writer: bus deliveries, answers and closes are queued and
written by it, so a slow browser never blocks the publisher, and ``joined`` always goes out
first. The worker's keepalive thread (keepalive.py) pings every socket and refreshes its
participant's presence once per heartbeat, so the reader waits for frames without a timer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from flask import Blueprint, request

from ..core.callmanager import LOST_CONFIRM, CallManager, other
from ..core.calls import CallSession
from ..core.presence import BEAT_MISSING, BEAT_REPLACED, TAB_CONFLICT
from ..core.schemas import load_signal_frame, refused_gen
from ..errors import BadFrameError, LPCallError, NotAllowedError, NotFoundError
from ..protocol import ACCEPTED
from ..state import get_state
from ..store.keys import call_channel
from .adapter import ConnectionClosed, WebSocket
from .keepalive import Keepalive
from .route import sock
from .transport import CLOSE_POLICY, CLOSE_TRY_AGAIN, ResidentTransport, decode_json

logger = logging.getLogger(__name__)

CLOSE_WAIT = 5.0  # seconds a client may take to close its socket after `closed`
QUALITY_MIN_INTERVAL = 0.5  # seconds between two relayed `quality` frames of one socket (issue 17)
SENDER_WAIT = 2.0  # seconds the handler waits for its writer to finish a close it is making


class CallSocket(ResidentTransport):
    """One participant's signaling connection: a resident transport (its writer waits for frames while
    the call lives) and the signaling loop (PROTOCOL §5)."""

    def __init__(self, ws: WebSocket, manager: CallManager, max_bytes: int, tab: str | None = None,
                 keepalive: Keepalive | None = None) -> None:
        super().__init__(ws, name="call", keepalive=keepalive)
        self.sid = self.role = ""  # set when the socket serves a call
        self.tab = tab  # the browser tab's id (?tab=), see presence.py
        self.manager = manager
        self.max_bytes = max_bytes
        self.conn_id = uuid.uuid4().hex
        self.closed_frame: dict[str, Any] | None = None
        self.client_gone = threading.Event()
        self.listening = False  # a consumer socket opened before the Accept (PROTOCOL §5)
        self.last_quality = float("-inf")  # when this socket's last `quality` frame was relayed
        self.lost_check: threading.Timer | None = None

    def error(self, code: str, message: str, field: str | None = None, gen: str | None = None) -> None:
        frame = {"type": "error", "code": code, "message": message}
        if field:
            frame["field"] = field
        if gen:
            frame["gen"] = gen
        self.send(frame)

    def refuse(self, exc: LPCallError, close_code: int = CLOSE_POLICY) -> None:
        """An error frame, then the close (its reason: the code); nothing may follow the error frame."""
        self.error(exc.code, str(exc), exc.field)
        self.close(close_code, exc.code)

    def on_bus(self, message: Any) -> None:
        """A frame for this participant from the store's bus (any thread)."""
        if type(message) is str:  # a relayed frame's wire text (_wire_text): sent as it is
            self.send_text(message)
            return
        self.send(message)
        if message.get("type") == "closed":
            self.closed_frame = message
            # The client closes on `closed`; closing first from here races Werkzeug's dev server, which
            # writes an HTTP response after the handler returns and can make the browser drop the frame.
            # Only a client that stays is closed by us.
            self.close(1000, "call closed", grace=CLOSE_WAIT, until=self.client_gone)

    # -- keepalive.Watched: called by the keepalive thread ----------------------------------------
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
            logger.debug("call %s: %s socket replaced by a newer one", self.sid, self.role)
            self.close(1000, "replaced")  # the browser must see the reason
        elif status == BEAT_MISSING:
            self.suspect_lost()

    def suspect_lost(self) -> None:
        """The call's keys are gone. Unless its `closed` comes within LOST_CONFIRM (a normal close
        deletes the keys first), its state was lost (store restarted empty): the client is told
        with `closed {reason: "state_lost"}` (PROTOCOL §5, issue 14 finding 9)."""
        if self.lost_check is not None:
            return
        self.lost_check = threading.Timer(LOST_CONFIRM, self._confirm_lost)
        self.lost_check.daemon = True
        self.lost_check.start()

    def _confirm_lost(self) -> None:
        self.lost_check = None
        try:
            gone = self.closed_frame is None and self.manager.lost(self.sid)
        except LPCallError:
            return  # the store is unreachable: not a loss (yet); the next heartbeat looks again
        if gone:
            logger.warning("call %s vanished from the store: telling the %s", self.sid, self.role)
            self.on_bus(self.manager.lost_frame())

    # -- the socket's life ----------------------------------------------------------------------------
    def run(self, token: Any) -> None:
        try:
            try:
                sid, role, uid, session = self._admit(token)
            except LPCallError as exc:
                self.refuse(exc)
                return
            # A consumer whose invitation is still open listens (PROTOCOL §5 "Before the Accept"): it
            # gets the agent's offer ahead, but sends no media signals until its `accept` frame.
            self.serve(sid, role, uid, listening=session.listens(role))
        finally:
            # A close the writer is making (replaced, ping timeout) completes before the handler
            # returns: Werkzeug writes an HTTP response after it, which can make the browser lose
            # the close frame and its reason (a replaced tab would then rejoin and fight back).
            self.finish(SENDER_WAIT)

    def _admit(self, token: Any) -> tuple[str, str, str, CallSession]:
        """The call, role and user of a valid call token for an open call."""
        state = get_state()
        data = state.signer.verify("call", token, state.settings.call_token_ttl)
        sid, role, uid = data.get("sid"), data.get("role"), data.get("uid")
        if role not in ("agent", "consumer") or not isinstance(sid, str) or not isinstance(uid, str):
            raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
        session = self.manager.get(sid)
        if session is None or not session.is_open:
            raise NotAllowedError("the call has ended", code="CALL_ENDED", field="token")
        if session.uid_of(role) != uid:
            raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
        return sid, role, uid, session

    def serve(self, sid: str, role: str, uid: str, listening: bool = False) -> None:
        manager = self.manager
        try:
            sub = manager.store.subscribe(call_channel(sid, role), self.on_bus)
        except LPCallError as exc:  # e.g. STORE_UNAVAILABLE: an error frame, never an HTTP 500 in the socket
            self.refuse(exc, CLOSE_TRY_AGAIN)
            return
        self.listening = listening
        try:
            joined = self._joined(sid, role, listening)
            if joined is None:
                return
            # the writer starts with `joined` first: bus frames that arrived meanwhile wait behind it
            self.send_first(joined)
            self.start()
            manager.store.publish(call_channel(sid, other(role)), {"type": "peer-joined", "role": role})
            self.sid, self.role = sid, role
            self.watch()
            self.loop(sid, role, uid)
        finally:
            self.unwatch()
            self.client_gone.set()
            sub.close()
            if not self.listening:
                self._leave(sid, role)

    def _joined(self, sid: str, role: str, listening: bool) -> dict[str, Any] | None:
        """The ``joined`` frame of this socket; None after telling the client why it may not join."""
        manager = self.manager
        if listening:  # no presence yet: other tabs may listen too, the accepting one joins
            doc = manager.doc(sid)
            session = CallSession.from_dict(doc) if doc else None
            if doc is None or session is None or not session.is_open:
                self.error("CALL_ENDED", "the call has ended")
                return None
        else:
            taken = self._join(sid, role)
            if taken is None:
                return None
            session, doc = taken
        peer = other(role)
        media = doc.get("media") or {}
        return {
            "type": "joined",
            "serviceId": sid,
            "role": role,
            "mode": session.mode,
            "polite": role == "consumer",
            "peerPresent": manager.is_present(sid, peer),
            "peerState": media.get(peer),
            "selfState": media.get(role),
            "sessionState": session.state,
            "heartbeat": manager.presence.heartbeat,
            "grace": manager.presence.grace,
            "iceRestartAttempts": int(manager.settings.ice_restart_attempts),
            **_ice(manager, session, role),
        }

    def _join(self, sid: str, role: str) -> tuple[CallSession, dict[str, Any]] | None:
        """Take the participant's place (presence); None after telling the client why not."""
        try:
            return self.manager.participant_joined(sid, role, self.conn_id, self.tab)
        except LPCallError as exc:
            if exc.code == TAB_CONFLICT:  # another tab holds the call: refused, that tab keeps it
                logger.info("call %s: %s join from a second tab refused", sid, role)
                self.refuse(exc)
                return None
            self.error("CALL_ENDED", "the call has ended")
            return None

    def _leave(self, sid: str, role: str) -> None:
        manager = self.manager
        grace_until = manager.participant_left(sid, role, self.conn_id)
        if grace_until is not None and self.closed_frame is None:
            manager.store.publish(call_channel(sid, other(role)), {"type": "peer-left", "role": role, "graceUntil": grace_until})

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
        kind = frame["type"]
        if self.listening and not CallSession.listener_may_send(kind):
            raise _not_accepted()
        if kind in ("description", "candidate"):
            relayed = _wire_text(raw, role) if verbatim and type(raw) is str else None
            manager.store.publish(call_channel(sid, other(role)), relayed or {**frame, "from": role})
        elif kind == "state":
            manager.set_media_state(sid, role, frame["muted"], frame["cameraOff"])
            manager.store.publish(call_channel(sid, other(role)), {**frame, "from": role})
        elif kind == "quality":
            self._quality(frame, sid, role)
        elif kind == "ping":
            self.send({"type": "pong"})
        elif kind == "accept":
            return self._accept(sid, role, uid, frame["payload"])
        elif kind == "listening":  # the agent (re)joined after us: it learns we are here
            if self.listening:
                manager.store.publish(call_channel(sid, other(role)), {"type": "peer-joined", "role": role})
        else:
            self._call_event(kind, frame, sid, role, uid)
        return True

    def _quality(self, frame: dict[str, Any], sid: str, role: str) -> None:
        """Issue 17: at most one `quality` frame every QUALITY_MIN_INTERVAL s is relayed."""
        now = time.monotonic()
        if now - self.last_quality < QUALITY_MIN_INTERVAL:
            return
        self.last_quality = now
        self.manager.store.publish(call_channel(sid, other(role)), {**frame, "from": role})
        try:
            self.manager.note_quality(sid, role, frame)  # for the call's record
        except NotFoundError:
            pass  # the call just closed: its record is written already

    def _call_event(self, kind: str, frame: dict[str, Any], sid: str, role: str, uid: str) -> None:
        """`connected`, `hangup`, `failure`: the call's state machine (callmanager.py)."""
        manager = self.manager
        if kind == "connected":
            manager.mark_connected(role, uid, sid)
        elif kind == "hangup":
            try:
                manager.hangup(role, uid, sid)
            except NotFoundError:
                self.suspect_lost()  # the call vanished: `closed` state_lost answers the hang-up
        elif kind == "failure":
            manager.fail(role, uid, sid, frame["id"])

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
            manager.store.publish(call_channel(sid, "agent"), {"type": "peer-joined", "role": role, "accepted": True})
        # every socket of this consumer learns: this one goes on, other tabs' listeners stop
        manager.store.publish(call_channel(sid, role), {"type": "session", "sessionState": ACCEPTED})
        return True


def _wire_text(raw: str, role: str) -> str | None:
    """A relayed frame the client sent in a form the server keeps as is crosses the bus as the text
    the peer's socket sends: the client's own text with ``"from"`` added. No copy per subscriber,
    no encoding per frame (issue 7); the peer's sender writes a ``str`` from the bus unchanged."""
    text = raw.rstrip()
    if not text.endswith("}"):
        return None
    return f'{text[:-1]},"from":"{role}"}}'


def _not_accepted() -> NotAllowedError:
    return NotAllowedError("type: the invitation has not been accepted yet", code="NOT_ACCEPTED", field="type")


def _ice(manager: CallManager, session: Any, role: str) -> dict[str, Any]:
    info = manager.join_info(session, role)
    return {"iceServers": info["iceServers"], "iceTransportPolicy": info["iceTransportPolicy"]}


def register(bp: Blueprint) -> None:
    @sock.route("/ws/call", bp=bp)
    def call_socket(ws: WebSocket) -> None:
        state = get_state()
        manager: CallManager = state.calls
        tab = (request.args.get("tab") or "")[:64] or None
        CallSocket(ws, manager, int(state.settings.max_frame_bytes), tab, state.keepalive).run(request.args.get("token"))
