"""The consumer's HTTP side and the route of its socket.

* ``GET  /ws/consumer``           the consumer socket (``sockets/consumer.py``, PROTOCOL §3)
* ``POST /api/consumer/session``  a signed consumer identity (PROTOCOL §1)
* ``GET  /api/client-config``     texts and switches for the browser code
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Flask, jsonify

from ..errors import BadFrameError
from ..sockets.adapter import WebSocket
from ..sockets.consumer import ConsumerConnection
from ..sockets.route import sock
from ..state import LPCallState, get_state
from .jsonapi import bearer_consumer, json_body

logger = logging.getLogger(__name__)

#: Extra room simple-websocket allows above LPCALL_MAX_FRAME_BYTES before it drops the
#: connection (1009); frames in between get a 413 error frame and the socket stays up.
TRANSPORT_SLACK = 4


def configure_sockets(app: Flask, state: LPCallState) -> None:
    """simple-websocket's own frame limit, a little above ``LPCALL_MAX_FRAME_BYTES``."""
    opts = app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    opts.setdefault("max_message_size", TRANSPORT_SLACK * state.settings.max_frame_bytes)


def client_config(state: LPCallState) -> dict[str, Any]:
    s = state.settings
    return {
        "texts": state.texts,
        "locale": s.locale,
        "analytics": s.analytics,
        "engagementWindow": bool(s.engagement_window),
        "voiceEnabled": bool(s.voice_enabled),
        "videoEnabled": bool(s.video_enabled),
        "heartbeat": s.heartbeat_interval,
        "maxMessageLength": s.max_message_length,
        "maxFrameBytes": s.max_frame_bytes,
        "callEndedSeconds": s.call_ended_seconds,
    }


def consumer_socket(ws: WebSocket) -> None:
    """The route (sockets/route.py) checked the Origin and declined compression."""
    ConsumerConnection(get_state(), ws).run()


def consumer_session() -> Any:
    state = get_state()
    vid = json_body(optional=True).get("vid")
    if vid is not None and (not isinstance(vid, str) or not 0 < len(vid) <= 200):
        raise BadFrameError("vid: must be a string of 1 to 200 characters", field="vid")
    cid = bearer_consumer(state) or str(uuid.uuid4())
    token = state.signer.sign("consumer", {"cid": cid, "vid": vid})
    resp = jsonify({"consumerId": cid, "token": token})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def client_config_view() -> Any:
    resp = jsonify(client_config(get_state()))
    resp.headers["Cache-Control"] = "no-cache"
    return resp


def register(bp: Blueprint) -> None:
    sock.route("/ws/consumer", bp=bp)(consumer_socket)
    bp.add_url_rule("/api/consumer/session", view_func=consumer_session, methods=["POST"])
    bp.add_url_rule("/api/client-config", view_func=client_config_view, methods=["GET"])


