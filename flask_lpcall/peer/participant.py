"""An asyncio call participant built on aiortc: a Python agent or consumer.

:class:`Peer` joins a call through the same public signaling socket the browsers use
(``GET <prefix>/ws/call?token=``, docs/PROTOCOL.md §5) as a WebSocket client. It

* sends media from a file (aiortc's ``MediaPlayer``) or synthetic tracks (a moving
  colour-bar test pattern and a tone, :mod:`flask_lpcall.media`), and receives media;
* follows perfect negotiation with the role's politeness from the ``joined`` frame
  (consumer polite, agent impolite), honouring ``iceServers`` / ``iceTransportPolicy``;
* exposes :meth:`Peer.stats` (video frames and audio frames received, bytes received
  and sent, the selected candidate pair);
* supports ICE restart (:meth:`Peer.restart_ice`, automatic on ICE failure): aiortc
  cannot restart ICE on a live connection, so the peer replaces its RTCPeerConnection
  and renegotiates; the other side sees an ICE restart with new ICE credentials and
  a new DTLS fingerprint, which browsers accept as a restart;
* validates every frame it receives (:func:`flask_lpcall.schemas.validate_server_signal_frame`)
  and fails with a typed :class:`PeerError` carrying a ``code``; every wait has a deadline.

Example::

    async with Peer(f"ws://localhost:5000/lpcall/ws/call", token) as peer:
        await peer.join()
        await peer.wait_connected(timeout=20)
        await peer.wait_media(video_frames=30, timeout=20)
        print(await peer.stats())
        await peer.hangup()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from ..errors import LPCallError
from ..optional import require
from .media import TestPatternTrack, ToneTrack

# a dependency of flask-lpcall; without it this import fails with the pip line that brings it
_ws_client = require("websockets.asyncio.client", "flask_lpcall.peer (the Python call peer)")
from ..core.schemas import validate_server_signal_frame

logger = logging.getLogger(__name__)


# -- errors ---------------------------------------------------------------------------
class PeerError(LPCallError):
    """Something went wrong in the Python peer. ``code`` says what."""

    code = "PEER_ERROR"


class PeerTimeoutError(PeerError):
    """A wait missed its deadline."""

    code = "TIMEOUT"


class SignalingError(PeerError):
    """The signaling server refused us or sent an ``error`` frame; ``code`` is the server's."""

    code = "SIGNALING_ERROR"


class ProtocolError(PeerError):
    """The server sent a frame that fails validation; ``field`` names the bad field."""

    code = "BAD_SERVER_FRAME"


class CallClosedError(PeerError):
    """The call ended (``closed`` frame or lost socket); ``reason`` is the close reason."""

    code = "CALL_CLOSED"

    def __init__(self, message: str, *, reason: str | None = None, error_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_id = error_id


class ConnectError(PeerError):
    """ICE could not connect, even after the allowed restarts (sessionError UNABLE_TO_CONNECT)."""

    code = "UNABLE_TO_CONNECT"


# -- stats ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateInfo:
    type: str
    protocol: str
    address: str
    port: int


@dataclass(frozen=True)
class PeerStats:
    """A snapshot of what the peer received and which path it uses."""

    video_frames: int
    audio_frames: int
    bytes_received: int
    bytes_sent: int
    connection_state: str
    local_candidate: CandidateInfo | None
    remote_candidate: CandidateInfo | None
    ice_restarts: int

    @property
    def selected_pair(self) -> tuple[CandidateInfo, CandidateInfo] | None:
        if self.local_candidate is None or self.remote_candidate is None:
            return None
        return self.local_candidate, self.remote_candidate


# -- the peer -------------------------------------------------------------------------
class Peer:
    """One participant of one call. Use as ``async with``; all methods are coroutines.

    ``url``: the call socket URL without the query (``ws://host:port/lpcall/ws/call``).
    ``token``: the call token (agent: from ``call.Invite``; consumer: from ``/api/call/accept``).
    ``audio`` / ``video``: outgoing tracks; ``None`` picks a tone and the test pattern,
    ``False`` sends nothing of that kind. :meth:`from_file` sends a media file.
    ``on_video_frame`` / ``on_audio_frame``: called with every received frame.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        audio: Any = None,
        video: Any = None,
        origin: str | None = None,
        on_video_frame: Callable[[Any], None] | None = None,
        on_audio_frame: Callable[[Any], None] | None = None,
        restart_attempts: int = 3,
        connect_timeout: float = 20.0,
        ping_interval: float = 10.0,
        video_size: tuple[int, int] = (640, 360),
    ) -> None:
        self.url = url
        self.token = token
        self.origin = origin
        self._audio_arg, self._video_arg = audio, video
        self._audio: Any = None
        self._video: Any = None
        self._player: Any = None
        self.on_video_frame = on_video_frame
        self.on_audio_frame = on_audio_frame
        self.restart_attempts = restart_attempts
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.video_size = video_size
        self.joined: dict[str, Any] | None = None
        self.peer_present = False
        self.peer_state: dict[str, Any] | None = None
        self.session_state: str | None = None
        self._early: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.closed: dict[str, Any] | None = None
        self.video_frames = self.audio_frames = self.ice_restarts = 0
        self.last_video_frame: Any = None
        self._ws: Any = None
        self._pc: Any = None
        self._pc_generation = 0
        self._kinds: list[str] = []
        self._failure: PeerError | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sinks: list[asyncio.Task[Any]] = []
        self._connected_sent: set[int] = set()
        self._failed_attempts = 0
        self._negotiating = asyncio.Lock()
        # perfect negotiation's tags (PROTOCOL §5 `gen`): the session of the current connection,
        # the sessions of replaced ones (their frames are stale), our pending offer, the offer we answer
        self._session: str | None = None
        self._retired: set[str] = set()
        self._offer_no = 0
        self._pending_offer: str | None = None
        self._remote_offer: str | None = None
        self.stale_frames = 0
        self._relay: Any = None
        self._retiring: list[Any] = []
        self._previous_sdp: str | None = None

    @classmethod
    def from_file(cls, url: str, token: str, path: str, *, loop_file: bool = True, **kw: Any) -> Peer:
        """A peer that sends the audio and video of a media file (aiortc ``MediaPlayer``)."""
        player = MediaPlayer(path, loop=loop_file)
        peer = cls(url, token, audio=player.audio or False, video=player.video or False, **kw)
        peer._player = player
        return peer

    # -- context manager ---------------------------------------------------------------
    async def __aenter__(self) -> Peer:  # noqa: PYI034
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public API ----------------------------------------------------------------------
    @property
    def role(self) -> str | None:
        return self.joined["role"] if self.joined else None

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState if self._pc is not None else "new"

    async def join(self, timeout: float = 10.0) -> dict[str, Any]:
        """Open the signaling socket and wait for ``joined``; returns that frame."""
        connect = _ws_client.connect
        sep = "&" if "?" in self.url else "?"
        headers = {"Origin": self.origin} if self.origin else None
        try:
            self._ws = await asyncio.wait_for(
                connect(f"{self.url}{sep}token={quote(self.token)}", additional_headers=headers, max_size=2**20), timeout
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise SignalingError(f"cannot open the signaling socket: {exc}", code="SIGNALING_UNREACHABLE") from None
        except Exception as exc:  # noqa: BLE001  (websockets raises InvalidStatus/InvalidHandshake …)
            raise SignalingError(f"signaling handshake failed: {exc}", code="SIGNALING_REFUSED") from None
        self._spawn(self._read_loop())
        # the reader sets the connection up when `joined` arrives, before it reads the next frame
        await self._wait(lambda: self.joined is not None and self._pc is not None, timeout, "the joined frame")
        assert self.joined is not None
        if self.ping_interval > 0:
            self._spawn(self._ping_loop())
        return self.joined

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until ICE and DTLS are connected (``connectionState == "connected"``)."""
        await self._wait(
            lambda: self._pc is not None and self._pc.connectionState == "connected",
            timeout if timeout is not None else self.connect_timeout,
            "the media connection",
        )

    async def wait_media(self, video_frames: int = 1, audio_frames: int = 0, timeout: float = 20.0) -> PeerStats:
        """Wait until at least this many frames were received (decoded); returns the stats."""
        await self._wait(
            lambda: self.video_frames >= video_frames and self.audio_frames >= audio_frames,
            timeout,
            f"{video_frames} video / {audio_frames} audio frames (have {self.video_frames} / {self.audio_frames})",
        )
        return await self.stats()

    async def wait_peer(self, timeout: float = 30.0) -> None:
        """Wait until the other participant is on the signaling socket."""
        await self._wait(lambda: self.peer_present, timeout, "the other participant")

    async def wait_closed(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the server's ``closed`` frame; returns it."""
        try:
            await self._wait(lambda: self.closed is not None, timeout, "the closed frame")
        except CallClosedError:
            pass
        if self.closed is None:
            raise CallClosedError("the signaling socket closed without a closed frame", reason=None)
        return self.closed

    async def restart_ice(self, timeout: float | None = None) -> None:
        """Restart ICE (new connection, new ICE credentials) and wait until connected again."""
        self.ice_restarts += 1
        await self._new_pc(keep=True)
        await self._make_offer()
        await self.wait_connected(timeout)

    async def send_state(self, muted: bool, camera_off: bool) -> None:
        """Tell the other side our microphone/camera state (``state`` frame)."""
        await self._send({"type": "state", "muted": muted, "cameraOff": camera_off})

    async def hangup(self) -> None:
        """End the call for both sides (``hangup`` frame); the server answers with ``closed``."""
        await self._send({"type": "hangup"})

    async def stats(self) -> PeerStats:
        received = sent = 0
        local = remote = None
        pc = self._pc
        if pc is not None:
            report = await pc.getStats()
            for item in report.values():
                if getattr(item, "type", None) == "transport":
                    received += item.bytesReceived
                    sent += item.bytesSent
            local, remote = _selected_pair(pc)
        return PeerStats(
            video_frames=self.video_frames,
            audio_frames=self.audio_frames,
            bytes_received=received,
            bytes_sent=sent,
            connection_state=self.connection_state,
            local_candidate=local,
            remote_candidate=remote,
            ice_restarts=self.ice_restarts,
        )

    async def close(self) -> None:
        """Leave: close the connection and the socket (no hangup: the server's grace applies)."""
        for task in list(self._tasks) + self._sinks:
            task.cancel()
        for pc in [*self._retiring, self._pc]:
            if pc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 10)
        self._retiring.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._player is not None:
            for track in (self._player.audio, self._player.video):
                if track is not None:
                    track.stop()
        for track in (self._audio, self._video):
            if track is not None and self._player is None:
                track.stop()
        if self._failure is None:
            self._failure = CallClosedError("the peer was closed", reason="closed_by_caller")
        self._notify()

    # -- waiting -------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if self._failure is not None:
                raise self._failure
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerTimeoutError(f"no {what} within {timeout:g}s")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

    def _fail(self, error: PeerError) -> None:
        if self._failure is None:
            logger.warning("peer %s failed: %s (%s)", self.role, error, error.code)
            self._failure = error
        self._notify()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- signaling -----------------------------------------------------------------------
    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            raise SignalingError("not joined", code="NOT_JOINED")
        try:
            await asyncio.wait_for(self._ws.send(json.dumps(frame, separators=(",", ":"))), 10)
        except asyncio.TimeoutError:
            raise PeerTimeoutError("the signaling socket did not take a frame within 10s") from None
        except Exception as exc:  # noqa: BLE001  (websockets.ConnectionClosed and friends)
            error = CallClosedError(f"the signaling socket is closed: {exc}", reason=None)
            self._fail(error)
            raise error from None

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)  # heartbeat period
            with contextlib.suppress(PeerError):
                await self._send({"type": "ping"})

    async def _read_loop(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    data = json.loads(raw)
                except (TypeError, ValueError):
                    self._fail(ProtocolError("(frame): not valid JSON", field="(frame)"))
                    return
                try:
                    frame = validate_server_signal_frame(data)
                except LPCallError as exc:
                    if exc.field == "type" and isinstance(data, dict) and isinstance(data.get("type"), str):
                        # a frame type this peer does not know (a newer server): skip it, keep the call
                        logger.warning("ignoring unknown signaling frame type %r", data["type"])
                        self.errors.append({"code": "UNKNOWN_FRAME", "type": data["type"]})
                        continue
                    self._fail(ProtocolError(f"bad frame from the server: {exc}", field=exc.field))
                    return
                try:
                    await self._handle(frame)
                except PeerError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:
                    logger.exception("peer %s: handling %s failed", self.role, frame.get("type"))
                    self._fail(PeerError(f"handling {frame['type']} failed: {exc}", code="NEGOTIATION_FAILED"))
                    return
                self._notify()
        except Exception as exc:  # noqa: BLE001
            logger.debug("signaling socket ended: %r", exc)
        if self.closed is not None:
            self._fail(
                CallClosedError(
                    f"the call was closed ({self.closed['reason']})",
                    reason=self.closed["reason"],
                    error_id=self.closed.get("errorId"),
                )
            )
        else:
            code = getattr(getattr(self._ws, "close_code", None), "real", None)
            last = self.errors[-1] if self.errors else None
            if self.joined is None and last is not None:
                self._fail(SignalingError(last.get("message") or last["code"], code=last["code"], field=last.get("field")))
            else:
                self._fail(CallClosedError(f"the signaling socket closed (code {code})", reason=None))

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "joined":
            await self._on_joined(frame)
        elif self.joined is None and kind not in ("error", "closed", "pong"):
            self._early.append(frame)
        elif kind == "description":
            await self._on_description(frame["description"], frame.get("gen"))
        elif kind == "candidate":
            await self._on_candidate(frame["candidate"], frame.get("gen"))
        elif kind == "peer-joined":
            await self._on_peer_joined()
        elif kind == "error":
            self._on_error(frame)
        else:
            self._note(kind, frame)

    def _note(self, kind: str, frame: dict[str, Any]) -> None:
        """The frames that only change what this peer knows."""
        if kind == "state":
            self.peer_state = {"muted": frame["muted"], "cameraOff": frame["cameraOff"]}
        elif kind == "peer-left":
            self.peer_present = False
        elif kind == "session":
            self.session_state = frame["sessionState"]
        elif kind == "closed":
            self.closed = frame

    async def _on_joined(self, frame: dict[str, Any]) -> None:
        if self.joined is not None:
            return  # one per socket
        self.joined = frame
        self.session_state = frame["sessionState"]
        self._kinds = ["audio", "video"] if frame["mode"] == "VIDEO_CALL" else ["audio"]
        self.peer_present = bool(frame["peerPresent"])
        self.peer_state = frame.get("peerState")
        self._prepare_tracks()
        # the impolite side's connection starts a session; the polite one adopts the first offer's
        await self._new_pc(session=None if frame["polite"] else _new_session())
        if self.peer_present and not frame["polite"]:
            await self._make_offer()
        early, self._early = self._early, []
        for item in early:  # frames the server relayed before our joined (a peer joining meanwhile)
            await self._handle(item)

    async def _on_peer_joined(self) -> None:
        rejoin = self.peer_present is False and self._pc is not None and self._pc.remoteDescription is not None
        self.peer_present = True
        if self.joined is not None and not self.joined["polite"]:
            if rejoin:  # the other side reloaded: its old connection is gone
                await self._new_pc(session=_new_session())
            await self._make_offer()

    def _on_error(self, frame: dict[str, Any]) -> None:
        logger.warning("signaling error from the server: %s", frame)
        self.errors.append(frame)
        if self.joined is None:  # refused (TOKEN_INVALID, CALL_ENDED …)
            raise SignalingError(frame["message"] or frame["code"], code=frame["code"], field=frame["field"])

    # -- negotiation ---------------------------------------------------------------------
    def _prepare_tracks(self) -> None:
        self._relay = MediaRelay()
        if "audio" in self._kinds and self._audio_arg is not False:
            self._audio = self._audio_arg if self._audio_arg is not None else ToneTrack()
        if "video" in self._kinds and self._video_arg is not False:
            w, h = self.video_size
            self._video = self._video_arg if self._video_arg is not None else TestPatternTrack(w, h)

    async def _new_pc(self, *, session: str | None = None, keep: bool = False) -> None:
        """A fresh RTCPeerConnection: in a new negotiation ``session`` (None: the polite side's, until
        an offer brings one), or ``keep`` the current one (aiortc's ICE restart, to the other side a
        restart of the same connection)."""
        assert self.joined is not None
        if not keep:
            if self._session is not None:
                self._retired.add(self._session)
            self._session, self._offer_no = session, 0
        self._pending_offer = self._remote_offer = None
        old = self._pc
        order = _media_order(old) or self._kinds
        if old is not None and old.remoteDescription is not None:
            self._previous_sdp = old.remoteDescription.sdp
        pc = RTCPeerConnection(_rtc_configuration(self.joined))
        self._pc_generation += 1
        self._add_transceivers(pc, order)
        self._watch(pc, self._pc_generation)
        self._pc = pc
        if old is not None:
            await self._let_go(old)
        self._notify()

    def _add_transceivers(self, pc: Any, order: list[str]) -> None:
        for kind in order:
            track = self._audio if kind == "audio" else self._video
            if track is not None:
                # a sender stops its track when its connection closes: each connection gets a proxy
                pc.addTransceiver(self._relay.subscribe(track, buffered=False), direction="sendrecv")
            else:
                pc.addTransceiver(kind, direction="recvonly")

    def _watch(self, pc: Any, generation: int) -> None:
        @pc.on("track")  # type: ignore[untyped-decorator]  # pyee's decorator is untyped
        def on_track(track: Any) -> None:
            self._sinks.append(asyncio.ensure_future(self._sink(track)))

        @pc.on("connectionstatechange")  # type: ignore[untyped-decorator]
        async def on_state() -> None:
            self._notify()
            if generation != self._pc_generation:
                return
            if pc.connectionState == "connected" and generation not in self._connected_sent:
                self._connected_sent.add(generation)
                self._failed_attempts = 0
                for retired in list(self._retiring):
                    self._spawn(self._retire(retired))
                with contextlib.suppress(PeerError):
                    await self._send({"type": "connected"})
            elif pc.connectionState == "failed":
                await self._on_ice_failed()

    async def _let_go(self, old: Any) -> None:
        """The replaced connection: kept (silent) until the new one connects when it was connected, else closed."""
        if old.connectionState == "connected":
            # make before break: the old connection keeps the other side's DTLS association
            # alive until the new one is connected or the connect timeout passes. It stops
            # sending: two encoders must never share the relay's frames (PyAV is not safe there).
            for sender in old.getSenders():
                track = sender.track
                if track is not None:
                    sender.replaceTrack(None)
                    track.stop()
            self._retiring.append(old)
            asyncio.get_running_loop().call_later(self.connect_timeout, lambda: self._spawn(self._retire(old)))
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), 10)

    async def _retire(self, pc: Any) -> None:
        if pc in self._retiring:
            self._retiring.remove(pc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 10)

    async def _on_ice_failed(self) -> None:
        self._failed_attempts += 1
        if self._failed_attempts > self.restart_attempts:
            with contextlib.suppress(PeerError):
                await self._send({"type": "failure", "id": "UNABLE_TO_CONNECT"})
            self._fail(ConnectError(f"ICE failed after {self.restart_attempts} restarts"))
            return
        logger.info("peer %s: ICE failed, restart %d", self.role, self._failed_attempts)
        self.ice_restarts += 1
        await self._new_pc(keep=True)
        await self._make_offer()

    async def _make_offer(self) -> None:
        async with self._negotiating:
            pc = self._pc
            if pc.signalingState != "stable":
                return
            offer = await pc.createOffer()
            if self._previous_sdp:  # a restart: browsers refuse re-numbered RTP header extensions
                offer = RTCSessionDescription(sdp=_keep_extmap_ids(offer.sdp, self._previous_sdp), type="offer")
            await pc.setLocalDescription(offer)
            if self._session is None:  # a polite side offering first: its connection starts the session
                self._session = _new_session()
            self._offer_no += 1
            self._pending_offer = f"{self._session}:{'a' if self.role == 'agent' else 'c'}{self._offer_no}"
            await self._send_description(pc, self._pending_offer, _claim_dtls_client(pc.localDescription.sdp))

    async def _send_description(self, pc: Any, gen: str | None, sdp: str | None = None) -> None:
        desc = pc.localDescription
        frame: dict[str, Any] = {"type": "description", "description": {"type": desc.type, "sdp": sdp or desc.sdp}}
        if gen:
            frame["gen"] = gen
        await self._send(frame)

    def _stale(self, what: str, why: str, gen: str | None) -> None:
        """A stale or duplicate frame (an older connection or offer): dropped, not a failure."""
        self.stale_frames += 1
        logger.debug("peer %s: dropped a stale %s (%s, gen %s)", self.role, what, why, gen)

    async def _on_description(self, description: dict[str, Any], gen: str | None = None) -> None:
        kind = description["type"]
        if kind in ("rollback", "pranswer"):
            return
        session = gen.split(":")[0] if gen else None
        async with self._negotiating:
            assert self.joined is not None
            polite = bool(self.joined["polite"])
            if session is not None and session in self._retired:
                self._stale(f"description {kind}", "closed connection", gen)
                return
            if kind == "offer":
                await self._on_offer(description["sdp"], gen, session, polite)
                return
            pc = self._pc
            if pc.signalingState != "have-local-offer":
                self._stale("answer", f"state {pc.signalingState}", gen)
                return
            if gen is not None and gen != self._pending_offer:
                self._stale("answer", f"not for offer {self._pending_offer}", gen)
                return
            await pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type="answer"))
            self._pending_offer = None

    async def _on_offer(self, sdp: str, gen: str | None, session: str | None, polite: bool) -> None:
        if session is not None and session != self._session:
            if self._session is None:
                self._session = session  # the polite side's first connection joins the offer's session
            elif not polite and self._pending_offer is not None:
                self._stale("offer", "colliding new connection", gen)
                return
            else:  # the other side made a new connection: ours follows
                await self._new_pc(session=session)
        pc = self._pc
        dead = pc.signalingState == "closed" or pc.connectionState in ("closed", "failed")
        collision = not dead and pc.signalingState != "stable"
        if collision and not polite:
            logger.debug("impolite peer ignores a colliding offer")
            return
        if dead or collision or _ice_ufrag_changed(pc, sdp):
            # aiortc has neither rollback nor ICE restart: a fresh connection answers
            await self._new_pc(keep=True)
            pc = self._pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self._remote_offer = gen
        await self._send_description(pc, gen)

    async def _on_candidate(self, candidate: dict[str, Any] | None, gen: str | None = None) -> None:
        pc = self._pc
        if gen is not None and gen.split(":")[0] != self._session:
            self._stale("candidate", "other connection", gen)
            return
        if pc is None or pc.remoteDescription is None:
            return  # aiortc gathers fully; candidates for an older description are useless
        if candidate is None or not candidate["candidate"]:
            return  # end of candidates
        text = candidate["candidate"]
        text = text.removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError) as exc:
            raise ProtocolError(f"candidate.candidate: cannot parse ({exc})", field="candidate.candidate") from None
        if parsed.protocol.lower() != "udp":
            return  # aiortc speaks ICE over UDP only
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        await pc.addIceCandidate(parsed)

    # -- receiving media -----------------------------------------------------------------
    async def _sink(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.video_frames += 1
                self.last_video_frame = frame
                if self.on_video_frame:
                    self.on_video_frame(frame)
            else:
                self.audio_frames += 1
                if self.on_audio_frame:
                    self.on_audio_frame(frame)
            if (self.video_frames + self.audio_frames) % 10 == 1:
                self._notify()


def _new_session() -> str:
    """A negotiation session id (PROTOCOL §5 `gen`): random, 8 characters."""
    return secrets.token_hex(4)


def _rtc_configuration(joined: dict[str, Any]) -> Any:
    """The ICE servers and transport policy of the ``joined`` frame, as aiortc takes them."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in joined["iceServers"]
    ]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy(joined["iceTransportPolicy"]))


def _claim_dtls_client(sdp: str) -> str:
    """Our offer as sent: ``a=setup:active`` instead of ``actpass`` (RFC 4145), so the other side
    answers ``passive`` and this peer is the DTLS client from the first offer on.

    aiortc restarts ICE with a fresh connection (a new DTLS fingerprint and handshake). A browser that
    is the DTLS server takes that handshake on its existing connection; as the DTLS client (it answered
    our ``actpass`` with ``active``) Chromium does not, and its connection stays ``connecting``. Our
    local description keeps ``actpass``: the answer decides the role, as for any offer."""
    return re.sub(r"^a=setup:actpass(?=\r?$)", "a=setup:active", sdp, flags=re.MULTILINE)


def _media_order(pc: Any) -> list[str]:
    if pc is None:
        return []
    desc = pc.remoteDescription or pc.localDescription
    if desc is None:
        return []
    return [line.split()[0][2:] for line in desc.sdp.splitlines() if line.startswith("m=") and line[2:7] in ("audio", "video")]


def _keep_extmap_ids(sdp: str, previous: str) -> str:
    """Give each RTP header extension in ``sdp`` the id it had in ``previous``; drop new ones."""
    ids: dict[str, str] = {}
    for line in previous.splitlines():
        if line.startswith("a=extmap:"):
            ext_id, uri = line[len("a=extmap:") :].split(" ", 1)
            ids.setdefault(uri.strip(), ext_id.split("/")[0])
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=extmap:"):
            ext_id, uri = line[len("a=extmap:") :].split(" ", 1)
            if uri.strip() not in ids:
                continue
            line = f"a=extmap:{ids[uri.strip()]} {uri}"
        out.append(line)
    return "\r\n".join(out)


def _ice_ufrag_changed(pc: Any, sdp: str) -> bool:
    current = pc.remoteDescription
    if current is None:
        return False

    def ufrags(text: str) -> set[str]:
        return {line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("a=ice-ufrag:")}

    return ufrags(current.sdp) != ufrags(sdp)


def _selected_pair(pc: Any) -> tuple[CandidateInfo | None, CandidateInfo | None]:
    transports = []
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    transports += [t.receiver.transport.transport for t in pc.getTransceivers()]
    for transport in transports:
        for pair in getattr(transport._connection, "_nominated", {}).values():
            lc, rc = pair.local_candidate, pair.remote_candidate
            return (
                CandidateInfo(lc.type, lc.transport.lower(), lc.host, lc.port),
                CandidateInfo(rc.type, rc.transport.lower(), rc.host, rc.port),
            )
    return None, None
