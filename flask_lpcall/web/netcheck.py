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

import logging
import threading
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, render_template, request

from ..config import Settings
from ..core.conversations import ConversationService
from ..core.ice import ice_config
from ..core.netcheck import CONNECT_TIMEOUT_MS, NEEDS_KBPS, PROBE_CAP_KBPS, PROBE_MS, BusyError, describe, verdict
from ..core.schemas import NetcheckOfferSchema, NetcheckResultSchema, load_or_raise
from ..errors import LPCallError, NotAllowedError
from ..state import LPCallState, get_state
from ..store import Store
from ..texts import render
from .jsonapi import json_body, json_error

if TYPE_CHECKING:
    from ..peer.responder import NetcheckResponder

logger = logging.getLogger(__name__)


class NetcheckService:
    """``state.netcheck``: the server peer of the checks, made at the first check.

    aiortc costs a worker about 37 MB, so it is loaded when a check first needs it, not at start-up:
    :meth:`responder` holds the package's one lazy import of it (PROTOCOL §8)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self._responder: NetcheckResponder | None = None
        self._lock = threading.Lock()

    def responder(self) -> NetcheckResponder:
        with self._lock:
            if self._responder is None:
                from ..peer.responder import NetcheckResponder

                self._responder = NetcheckResponder(self.settings, self.store)
            return self._responder

    def active(self) -> int:
        """Checks whose server peer is open in this worker."""
        with self._lock:
            return self._responder.active() if self._responder is not None else 0

    def check_sdp(self, sdp: str) -> None:
        """The offer must parse and carry a data channel (aiortc's SDP parser)."""
        self.responder().check_sdp(sdp)

    def close(self) -> None:
        """Close the open checks' peers and stop their loop; a later check starts a new one."""
        with self._lock:
            responder, self._responder = self._responder, None
        if responder is not None:
            responder.shutdown()


def client_settings(state: LPCallState) -> dict[str, Any]:
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


def _post_to_conversation(state: LPCallState, result: dict[str, Any]) -> bool:
    """Put the result into the caller's open conversation, if it has one (Bearer consumer token)."""
    auth = request.headers.get("Authorization", "")
    conversations: ConversationService = state.conversations
    if not auth.startswith("Bearer "):
        return False
    try:
        ident = state.signer.verify("consumer", auth[7:].strip(), state.settings.consumer_token_ttl)
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


def netcheck_page() -> str:
    state = get_state()
    return render_template(
        "lpcall/netcheck.html", settings=client_settings(state), texts=state.texts, lang=state.settings.locale
    )


def netcheck_config() -> Response:
    return jsonify(client_settings(get_state()))


def netcheck_offer() -> Any:
    try:
        body = load_or_raise(NetcheckOfferSchema(), json_body())
        if body["offer"]["type"] != "offer":
            raise LPCallError("offer.type: must be 'offer'", code="BAD_FRAME", field="offer.type")
        state = get_state()
        state.netcheck.check_sdp(body["offer"]["sdp"])
        check_id, answer = state.netcheck.responder().answer(body["offer"])
    except BusyError as exc:
        return json_error(exc, 503)
    except LPCallError as exc:
        return json_error(exc)
    except ValueError as exc:  # aiortc: unparsable SDP
        return json_error(LPCallError(f"offer.sdp: {exc}", code="BAD_FRAME", field="offer.sdp"), 400)
    return jsonify({"checkId": check_id, "answer": answer})


def netcheck_result() -> Any:
    state = get_state()
    try:
        body = load_or_raise(NetcheckResultSchema(), json_body())
        check = state.netcheck.responder().finish(body["checkId"])
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


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/netcheck", view_func=netcheck_page, methods=["GET"])
    bp.add_url_rule("/api/netcheck/config", view_func=netcheck_config, methods=["GET"])
    bp.add_url_rule("/api/netcheck/offer", view_func=netcheck_offer, methods=["POST"])
    bp.add_url_rule("/api/netcheck/result", view_func=netcheck_result, methods=["POST"])


