"""Pre-call network check: the browser connects to an aiortc peer on the server.

The page (``GET <prefix>/netcheck``) or the widget (``static/lpcall/netcheck.js``)
opens an RTCPeerConnection with one data channel to a server-side aiortc peer using the
same ICE servers and relay policy as a call, then measures over that channel:

* whether a direct path works at all, and through which candidate type
  (``host`` / ``srflx`` / ``relay``) — from the browser's selected candidate pair;
* the round-trip time (median of data-channel pings);
* the bitrate it could reach in both directions (upload counted by the server,
  download by the browser; each probe is capped at :data:`PROBE_CAP_KBPS`).

The smaller direction is compared with the documented needs (:data:`NEEDS_KBPS`) and
turned into a verdict (:func:`verdict`) with a plain-language text from the catalog.
A consumer who is in a conversation gets the result posted to the transcript as a
system message, so the agent sees it.

HTTP API (JSON, errors ``{"error": {code, message, field?}}``):
``GET /api/netcheck/config`` · ``POST /api/netcheck/offer {offer:{type,sdp}}`` →
``{checkId, answer}`` · ``POST /api/netcheck/result {checkId, connected, candidateType,
rttMs, downKbps}`` → the verdict. Data-channel messages: ``{"t":"ping","n"}`` →
``{"t":"pong","n"}``; ``{"t":"up","phase":"start"|"end"}`` plus binary chunks →
``{"t":"up-result","bytes","ms","kbps"}``; ``{"t":"down","ms"}`` → binary chunks then
``{"t":"down-end","bytes"}``.
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

from flask import Blueprint, Flask, Response, jsonify, render_template, request
from marshmallow import RAISE, Schema, fields, validate

from ..core.ice import ice_config
from ..core.schemas import SessionDescriptionSchema, StrictBoolean, load_or_raise
from ..errors import LPCallError, NotAllowedError, NotFoundError
from ..extension import json_error
from ..peer.aioloop import BackgroundLoop, LoopTimeoutError
from ..texts import render

logger = logging.getLogger(__name__)

#: Documented needs of a call, kbit/s (both directions).
NEEDS_KBPS: dict[str, int] = {"video": 2600, "degraded": 1100, "voice": 600}
#: Verdicts, best first.
VERDICTS = ("video", "degraded", "voice", "insufficient", "no_path")
#: RTT above which the verdict text warns about lag, ms.
HIGH_RTT_MS = 300
#: Each bitrate probe stops at this rate: enough to prove any call fits, cheap on the server.
PROBE_CAP_KBPS = 8000
#: Duration of each bitrate probe (upload, download), ms.
PROBE_MS = 1500
#: How long the browser waits for the data channel to open before "no direct path", ms.
CONNECT_TIMEOUT_MS = 8000
#: Checks running at once per process; more get 503 BUSY.
MAX_CONCURRENT = 4
#: A check's server peer is closed after this many seconds at the latest.
CHECK_LIFETIME = 40.0
CHUNK = 16 * 1024


class BusyError(LPCallError):
    """Too many network checks are running in this process."""

    code = "BUSY"


def verdict(connected: bool, bitrate_kbps: float | None) -> str:
    """One of :data:`VERDICTS` for a path (or none) and the bitrate it reached."""
    if not connected:
        return "no_path"
    rate = bitrate_kbps or 0.0
    for name in ("video", "degraded", "voice"):
        if rate >= NEEDS_KBPS[name]:
            return name
    return "insufficient"


def describe(texts: dict[str, str], result: dict[str, Any]) -> str:
    """The plain-language verdict for ``result`` (keys ``verdict`` and ``rttMs``)."""
    message = render(texts, f"netcheck.verdict.{result['verdict']}")
    rtt = result.get("rttMs")
    if result["verdict"] != "no_path" and rtt is not None and rtt > HIGH_RTT_MS:
        message += " " + render(texts, "netcheck.high_latency", rtt=round(rtt))
    return message


# -- the server peer ------------------------------------------------------------------
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

    def __init__(self, settings: dict[str, Any], store: Any = None, loop: BackgroundLoop | None = None) -> None:
        self.settings = settings
        self.store = store  # shares each check's measurements with the other workers (the result may land there)
        self.loop = loop or BackgroundLoop("lpcall-netcheck")
        self._checks: dict[str, _Check] = {}
        self._lock = threading.Lock()

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
            doc = self.store.get(_key(check_id)) if self.store is not None else None
            if not isinstance(doc, dict):
                raise NotFoundError("unknown or expired check", code="NOT_FOUND", field="checkId")
            check = _Check(id=check_id, pc=None, connected=bool(doc.get("connected")), remote_type=doc.get("remoteType"),
                           up_kbps=doc.get("upKbps"), closed=True)
        else:
            self.close(check_id)
        if self.store is not None:
            self.store.delete(_key(check_id))
        return check

    def _save(self, check: _Check) -> None:
        if self.store is None:
            return
        try:
            doc = {"connected": check.connected, "remoteType": check.remote_type, "upKbps": check.up_kbps}
            self.store.set(_key(check.id), doc, ttl=CHECK_LIFETIME + 60)
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

    # async side -------------------------------------------------------------------
    async def _answer(self, check_id: str, offer: dict[str, str]) -> dict[str, str]:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
        from aiortc.rtcconfiguration import RTCIceTransportPolicy

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
        @channel.on("message")
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


def _key(check_id: str) -> str:
    return f"netcheck:{check_id}"


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


# -- HTTP -----------------------------------------------------------------------------
class _OfferSchema(Schema):
    class Meta:
        unknown = RAISE

    offer = fields.Nested(SessionDescriptionSchema, required=True)


class _ResultSchema(Schema):
    class Meta:
        unknown = RAISE

    checkId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    connected = StrictBoolean(required=True)
    candidateType = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(["host", "srflx", "prflx", "relay"])
    )
    rttMs = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=60_000))
    downKbps = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=10_000_000))
    upKbps = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=10_000_000))


def _json_body() -> Any:
    from .api import json_body  # the JSON APIs' one body reader: size, depth, integers, UTF-8

    return json_body()


def init_state(app: Flask, state: Any) -> None:
    state.services["netcheck"] = NetcheckResponder(state.settings, state.store)


def _responder() -> NetcheckResponder:
    from ..extension import get_state

    return get_state().services["netcheck"]  # type: ignore[no-any-return]


def client_settings(state: Any) -> dict[str, Any]:
    """What the page and widget need: ICE config, needs, timings, netcheck texts."""
    ice = ice_config(state.settings, "netcheck")
    return {
        "base": state.url_prefix,
        "iceServers": ice["iceServers"],
        "iceTransportPolicy": ice["iceTransportPolicy"],
        "needs": NEEDS_KBPS,
        "probeMs": PROBE_MS,
        "probeCapKbps": PROBE_CAP_KBPS,
        "connectTimeoutMs": CONNECT_TIMEOUT_MS,
        "texts": {k: v for k, v in state.texts.items() if k.startswith("netcheck.")},
    }


def _post_to_conversation(state: Any, result: dict[str, Any]) -> bool:
    """Put the result into the caller's open conversation, if it has one (Bearer consumer token)."""
    auth = request.headers.get("Authorization", "")
    conversations = state.services.get("conversations")
    if not auth.startswith("Bearer ") or conversations is None:
        return False
    try:
        ident = state.signer.verify("consumer", auth[7:].strip(), state.settings["LPCALL_CONSUMER_TOKEN_TTL"])
    except NotAllowedError:
        return False
    convs = conversations.for_consumer(str(ident.get("cid", "")))
    if not convs:
        return False
    texts = state.texts
    path = render(texts, f"netcheck.path.{result['path']}")
    conversations.add_system_message(
        convs[-1]["convId"],
        "system.netcheck",
        verdict=render(texts, f"netcheck.short.{result['verdict']}"),
        path=path,
        rtt="-" if result["rttMs"] is None else round(result["rttMs"]),
        bitrate="-" if result["bitrateKbps"] is None else round(result["bitrateKbps"]),
    )
    return True


def _check_sdp(sdp: str) -> None:
    """The offer must parse and carry exactly what a check needs: a data channel."""
    from aiortc import sdp as aiortc_sdp

    try:
        parsed = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001  (aiortc's parser raises assorted errors on garbage)
        raise LPCallError(f"offer.sdp: not a valid SDP offer ({type(exc).__name__})", code="BAD_FRAME", field="offer.sdp") from None
    if not any(m.kind == "application" for m in parsed.media):
        raise LPCallError("offer.sdp: must offer a data channel (m=application)", code="BAD_FRAME", field="offer.sdp")


def register(bp: Blueprint) -> None:
    from ..extension import get_state

    @bp.get("/netcheck")
    def netcheck_page() -> str:
        state = get_state()
        return render_template(
            "lpcall/netcheck.html", settings=client_settings(state), texts=state.texts, lang=state.settings["LPCALL_LOCALE"]
        )

    @bp.get("/api/netcheck/config")
    def netcheck_config() -> Response:
        return jsonify(client_settings(get_state()))

    @bp.post("/api/netcheck/offer")
    def netcheck_offer() -> Any:
        try:
            body = load_or_raise(_OfferSchema(), _json_body())
            if body["offer"]["type"] != "offer":
                raise LPCallError("offer.type: must be 'offer'", code="BAD_FRAME", field="offer.type")
            _check_sdp(body["offer"]["sdp"])
            check_id, answer = _responder().answer(body["offer"])
        except BusyError as exc:
            return json_error(exc, 503)
        except LoopTimeoutError as exc:
            return json_error(exc, 504)
        except LPCallError as exc:
            return json_error(exc)
        except ValueError as exc:  # aiortc: unparsable SDP
            return json_error(LPCallError(f"offer.sdp: {exc}", code="BAD_FRAME", field="offer.sdp"), 400)
        return jsonify({"checkId": check_id, "answer": answer})

    @bp.post("/api/netcheck/result")
    def netcheck_result() -> Any:
        state = get_state()
        try:
            body = load_or_raise(_ResultSchema(), _json_body())
            check = _responder().finish(body["checkId"])
        except LPCallError as exc:  # NOT_FOUND 404, BAD_FRAME 400, TOO_LARGE 413 (errors.ERROR_CODES)
            return json_error(exc)
        connected = bool(body["connected"] and check.connected)
        up = check.up_kbps if check.up_kbps is not None else body["upKbps"]
        rates = [r for r in (up, body["downKbps"]) if r is not None]
        bitrate = min(rates) if connected and rates else None
        ctype = body["candidateType"] or check.remote_type
        if ctype == "prflx":
            ctype = "srflx"
        result: dict[str, Any] = {
            "checkId": check.id,
            "connected": connected,
            "path": ctype if connected and ctype else "none",
            "rttMs": body["rttMs"] if connected else None,
            "upKbps": up if connected else None,
            "downKbps": body["downKbps"] if connected else None,
            "bitrateKbps": bitrate,
            "needs": NEEDS_KBPS,
        }
        result["verdict"] = verdict(connected, bitrate)
        result["message"] = describe(state.texts, result)
        result["sharedWithAgent"] = _post_to_conversation(state, result)
        logger.info("network check %s: %s", check.id, {k: result[k] for k in ("verdict", "path", "rttMs", "bitrateKbps")})
        return jsonify(result)
