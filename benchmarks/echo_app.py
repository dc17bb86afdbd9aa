"""Baseline of the connections benchmark: the smallest flask-sock app (an echo socket) on the same worker type."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_sock import Sock


def create_app() -> Flask:
    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/echo")
    def echo(ws: Any) -> None:
        while True:
            ws.send(ws.receive())

    return app
