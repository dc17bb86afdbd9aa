"""The flask-lpcall side of the relay benchmark: the example site's extension with N calls ready to join.

Served by ``gunicorn -k gevent -w 1 'benchmarks.relay_app:create_app()'`` (one gevent worker). At
start it opens ``LPCALL_BENCH_CALLS`` conversations, invites and accepts a call in each (through the
real call manager, so the store holds real call records) and writes the participants' call tokens
to ``LPCALL_BENCH_TOKENS`` (JSON list of ``[agentToken, consumerToken]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from flask import Flask

from flask_lpcall import LPCall
from flask_lpcall.core.agents import PERM_VIDEO, PERM_VOICE, Agent
from flask_lpcall.state import get_state

AGENT = Agent(id="bench-agent", name="Bench", permissions=frozenset({PERM_VOICE, PERM_VIDEO}))


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="bench-secret", LPCALL_CONNECT_TIMEOUT=600, LPCALL_CALL_TOKEN_TTL=3600,
                      LPCALL_INVITE_TTL=3600, LPCALL_RECONNECT_GRACE=600)
    app.config.from_prefixed_env()
    ext = LPCall()
    ext.agent_loader(lambda agent_id: AGENT if agent_id == AGENT.id else None)
    ext.init_app(app)
    _prepare_calls(app, int(os.environ.get("LPCALL_BENCH_CALLS", "0")), os.environ.get("LPCALL_BENCH_TOKENS"))
    if os.environ.get("LPCALL_BENCH_PLACEMENT"):
        with_placement(app)
    return app


def with_placement(app: Flask) -> Flask:
    """``app`` recording which worker serves each socket (see :class:`_Placement`)."""
    app.wsgi_app = _Placement(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


def placement_key(token: str) -> str:
    """Where the bench finds which worker took the call socket of ``token``, or the socket opened with
    ``?bench=<token>`` (the worker's pid)."""
    return "bench:where:" + hashlib.sha1(token.encode()).hexdigest()[:20]


class _Placement:
    """Several workers under one gunicorn master (issue 20): the kernel hands each new socket to one of them.
    Each call socket's worker is written to the store before the socket is served, so the bench can place
    every pair across workers (it reconnects a consumer that landed on its agent's worker)."""

    def __init__(self, app: Flask, inner: Callable[..., Iterable[bytes]]) -> None:
        self.store, self.inner = get_state(app).store, inner

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "bench" in query:
            self.store.set(placement_key(query["bench"][0]), os.getpid(), ttl=3600)
        elif environ.get("PATH_INFO", "").endswith("/ws/call"):
            self.store.set(placement_key(query.get("token", [""])[0]), os.getpid(), ttl=3600)
        return self.inner(environ, start_response)


def _prepare_calls(app: Flask, count: int, path: str | None) -> None:
    if not count or not path:
        return
    try:  # several workers: the first one prepares the calls, for all of them (they share the store)
        os.close(os.open(path + ".lock", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    state = get_state(app)
    convs, calls = state.conversations, state.calls
    tokens: list[list[str]] = []
    for _ in range(count):
        cid = str(uuid.uuid4())
        doc, _ = convs.open(cid, visitor_name="Bench", features=["CO_BROWSE"])
        convs.take(doc["convId"], AGENT.id, AGENT.name)
        info: dict[str, Any] = calls.invite(AGENT, doc["convId"], "VOICE_CALL")
        payload = {"serviceId": info["serviceId"], "agentId": AGENT.id, "visitorName": "Bench", "mode": "VOICE_CALL",
                   "ssid": "s", "svid": "v"}
        consumer = calls.accept(cid, payload)
        tokens.append([info["token"], consumer["token"]])
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(tokens, fh)
    os.replace(tmp, path)
