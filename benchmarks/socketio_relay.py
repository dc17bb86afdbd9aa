"""Baseline: a minimal Flask-SocketIO signaling relay (one room per call, frames forwarded to the peer).

Served the same way as flask-lpcall: ``gunicorn -k gevent -w 1 'benchmarks.socketio_relay:create_app()'``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room


def create_app() -> Flask:
    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*")

    @socketio.on("join")
    def join(data: dict[str, Any]) -> bool:
        join_room(str(data["pair"]))
        return True  # acknowledged: the client signals only once it is in the room

    @socketio.on("signal")
    def signal(data: dict[str, Any]) -> None:
        emit("signal", {**data["frame"], "from": data["role"]}, to=str(data["pair"]), skip_sid=request.sid)

    return app
