"""The network check's server peer: one aiortc peer per check, all on one background loop.

Data-channel messages: ``{"t":"ping","n"}`` -> ``{"t":"pong","n"}``; ``{"t":"up","phase":"start"|"end"}``
plus binary chunks -> ``{"t":"up-result","bytes","ms","kbps"}``; ``{"t":"down","ms"}`` -> binary chunks
then ``{"t":"down-end","bytes"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from ..config import Settings
from ..core.ice import ice_config
from ..core.netcheck import CHECK_LIFETIME, CHUNK, MAX_CONCURRENT, PROBE_CAP_KBPS, PROBE_MS, BusyError
from ..errors import LPCallError, NotFoundError
from ..store import Store
from ..store.keys import check_key
from .aioloop import BackgroundLoop, LoopTimeoutError

logger = logging.getLogger(__name__)


@dataclass
class _Check:
    id: str
    pc: Any
    created: float = field(default_factory=time.monotonic)
    connected: bool = False
    remote_type: str | None = None
    up_bytes: int = 0
    up_first: float | None = None
    up_last: float | None = None
    up_kbps: float | None = None
    closed: bool = False


class NetcheckResponder:
    """Creates and answers server-side aiortc peers, one per check, all on one loop."""

    def __init__(self, settings: Settings, store: Store | None = None, loop: BackgroundLoop | None = None) -> None:
        self.settings = settings
        self.store = store  # shares each check's measurements with the other workers (the result may land there)
        self.loop = loop or BackgroundLoop("lpcall-netcheck")
        self._checks: dict[str, _Check] = {}
        self._lock = threading.Lock()

    @staticmethod
    def check_sdp(sdp: str) -> None:
        check_sdp(sdp)

    def active(self) -> int:
        with self._lock:
            return sum(1 for c in self._checks.values() if not c.closed)

    # sync API (Flask views) ------------------------------------------------------
    def answer(self, offer: dict[str, str]) -> tuple[str, dict[str, str]]:
        """(checkId, answer description) for a browser's offer."""
        with self._lock:
            if sum(1 for c in self._checks.values() if not c.closed) >= MAX_CONCURRENT:
                raise BusyError("too many network checks are running; try again in a moment")
            check_id = secrets.token_urlsafe(12)
            self._checks[check_id] = _Check(id=check_id, pc=None)
        try:
            answer = self.loop.run(self._answer(check_id, offer), timeout=15)
        except Exception:
            self.close(check_id)
            raise
        return check_id, answer

    def finish(self, check_id: str) -> _Check:
        """The server's own measurements of a check (from any worker); closes its peer if it is here."""
        with self._lock:
            check = self._checks.get(check_id)
        if check is None:
            doc = self.store.get(check_key(check_id)) if self.store is not None else None
            if not isinstance(doc, dict):
                raise NotFoundError("unknown or expired check", code="NOT_FOUND", field="checkId")
            check = _Check(id=check_id, pc=None, connected=bool(doc.get("connected")), remote_type=doc.get("remoteType"),
                           up_kbps=doc.get("upKbps"), closed=True)
        else:
            self.close(check_id)
        if self.store is not None:
            self.store.delete(check_key(check_id))
        return check

    def _save(self, check: _Check) -> None:
        if self.store is None:
            return
        try:
            doc = {"connected": check.connected, "remoteType": check.remote_type, "upKbps": check.up_kbps}
            self.store.set(check_key(check.id), doc, ttl=CHECK_LIFETIME + 60)
        except LPCallError as exc:  # the store is down: this worker still knows the check
            logger.warning("network check %s: cannot share its state: %s", check.id, exc)

    def close(self, check_id: str) -> None:
        with self._lock:
            check = self._checks.pop(check_id, None)
        if check is not None and check.pc is not None and not check.closed:
            check.closed = True
            try:
                self.loop.run(check.pc.close(), timeout=5)
            except LoopTimeoutError:
                logger.warning("network check %s: peer did not close in time", check_id)

    def shutdown(self) -> None:
        """Close every check's peer and stop the loop (an app going away, e.g. at the end of a test)."""
        with self._lock:
            ids = list(self._checks)
        for check_id in ids:
            try:
                self.close(check_id)
            except Exception:  # shutting down: one peer must not keep the others open
                logger.exception("network check %s: closing its peer failed", check_id)
        self.loop.stop()

    # async side -------------------------------------------------------------------
    async def _answer(self, check_id: str, offer: dict[str, str]) -> dict[str, str]:
        ice = ice_config(self.settings, f"netcheck-{check_id}")
        config = RTCConfiguration(
            iceServers=[RTCIceServer(**s) for s in ice["iceServers"]],
            iceTransportPolicy=RTCIceTransportPolicy(ice["iceTransportPolicy"]),
        )
        pc = RTCPeerConnection(config)
        check = self._checks[check_id]
        check.pc = pc

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            check.connected = True
            check.remote_type = _remote_candidate_type(pc)
            self._save(check)
            self._serve(check, channel)

        @pc.on("connectionstatechange")
        def on_state() -> None:  # plain function: nothing to await, nothing left pending at shutdown
            if pc.connectionState in ("failed", "closed"):
                check.closed = True
                asyncio.ensure_future(self._expire(check_id))  # the browser is gone: free the peer now

        asyncio.get_running_loop().call_later(CHECK_LIFETIME, lambda: asyncio.ensure_future(self._expire(check_id)))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        self._save(check)
        return {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}

    async def _expire(self, check_id: str) -> None:
        with self._lock:
            check = self._checks.pop(check_id, None)
        if check is not None and check.pc is not None:
            check.closed = True
            await check.pc.close()

    def _serve(self, check: _Check, channel: Any) -> None:
        @channel.on("message")  # type: ignore[untyped-decorator]  # pyee's decorator is untyped
        def on_message(message: Any) -> None:
            now = time.monotonic()
            if isinstance(message, bytes):
                check.up_bytes += len(message)
                check.up_first = check.up_first or now
                check.up_last = now
                return
            try:
                msg = json.loads(message)
                kind = msg["t"]
            except (ValueError, KeyError, TypeError):
                return  # not ours: ignore
            if kind == "ping":
                channel.send(json.dumps({"t": "pong", "n": msg.get("n")}))
            elif kind == "up" and msg.get("phase") == "start":
                check.up_bytes, check.up_first, check.up_last = 0, None, None
            elif kind == "up" and msg.get("phase") == "end":
                ms = ((check.up_last or now) - (check.up_first or now)) * 1000
                check.up_kbps = check.up_bytes * 8 / ms if ms > 0 else None
                self._save(check)
                channel.send(json.dumps({"t": "up-result", "bytes": check.up_bytes, "ms": ms, "kbps": check.up_kbps}))
            elif kind == "down":
                duration = min(max(float(msg.get("ms") or PROBE_MS), 100.0), 5000.0) / 1000
                asyncio.ensure_future(_send_for(channel, duration))


async def _send_for(channel: Any, duration: float) -> None:
    """Send binary chunks for ``duration`` seconds, capped at PROBE_CAP_KBPS, then the total."""
    chunk = secrets.token_bytes(CHUNK)
    start = time.monotonic()
    sent = 0
    while channel.readyState == "open":
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        if channel.bufferedAmount > 8 * CHUNK or sent * 8 / 1000 > PROBE_CAP_KBPS * max(elapsed, 0.05):
            await asyncio.sleep(0.005)  # pacing of the probe, not synchronisation
            continue
        channel.send(chunk)
        sent += CHUNK
    if channel.readyState == "open":
        channel.send(json.dumps({"t": "down-end", "bytes": sent}))


def _remote_candidate_type(pc: Any) -> str | None:
    """Type of the browser's candidate in the pair the server peer selected."""
    for transport in _ice_transports(pc):
        nominated = getattr(transport._connection, "_nominated", {})
        for pair in nominated.values():
            return str(pair.remote_candidate.type)
    return None


def _ice_transports(pc: Any) -> list[Any]:
    out = []
    if pc.sctp is not None:
        out.append(pc.sctp.transport.transport)
    for t in pc.getTransceivers():
        out.append(t.receiver.transport.transport)
    return out


def check_sdp(sdp: str) -> None:
    """The offer must parse and carry exactly what a check needs: a data channel."""
    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001  (aiortc's parser raises assorted errors on garbage)
        raise LPCallError(f"offer.sdp: not a valid SDP offer ({type(exc).__name__})", code="BAD_FRAME", field="offer.sdp") from None
    if not any(m.kind == "application" for m in parsed.media):
        raise LPCallError("offer.sdp: must offer a data channel (m=application)", code="BAD_FRAME", field="offer.sdp")
