"""Helpers of the call tests: an app with a conversation ready for a call, tokens, sockets."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask

from flask_lpcall import LPCall
from flask_lpcall.core.agents import PERM_VIDEO, PERM_VOICE, Agent
from flask_lpcall.state import get_state

BOB = Agent(id="bob", name="Bob", permissions=frozenset({PERM_VOICE, PERM_VIDEO}))


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret", TESTING=True)
    app.config.update(config)
    ext = LPCall()
    ext.agent_loader(lambda agent_id: BOB if agent_id == BOB.id else None)
    ext.agent_authenticator(lambda u, p: BOB if (u, p) == ("bob", "bob") else None)
    ext.init_app(app)
    return app


def services(app: Flask) -> tuple[Any, Any]:
    state = get_state(app)
    return state.calls, state.conversations


def consumer_token(app: Flask, consumer_id: str) -> str:
    return get_state(app).signer.sign("consumer", {"cid": consumer_id, "vid": "v-" + consumer_id[:8]})


@dataclass
class Setup:
    app: Flask
    consumer_id: str
    conv_id: str
    consumer_token: str


def conversation(app: Flask, visitor_name: str = "Vera") -> Setup:
    """A consumer with a CO_BROWSE conversation taken by agent Bob."""
    _, convs = services(app)
    cid = str(uuid.uuid4())
    doc, _ = convs.open(cid, visitor_name=visitor_name, features=["CO_BROWSE"])
    convs.take(doc["convId"], BOB.id, BOB.name)
    return Setup(app=app, consumer_id=cid, conv_id=doc["convId"], consumer_token=consumer_token(app, cid))


def cobrowse_payload(info: dict[str, Any], mode: str | None = None) -> dict[str, str]:
    return {
        "serviceId": info["serviceId"],
        "agentId": BOB.id,
        "visitorName": "Vera",
        "mode": mode or info["mode"],
        "ssid": "ssid-1",
        "svid": "svid-1",
    }


def system_keys(app: Flask, conv_id: str) -> list[str]:
    _, convs = services(app)
    return [e.get("systemKey") for e in convs.events(conv_id) if e.get("role") == "SYSTEM"]


def call_keys(app: Flask) -> list[str]:
    store = get_state(app).store
    return [k for k in store.keys("") if k.startswith(("call:", "presence:")) or k.endswith(":call")]


def dumps(frame: Any) -> str:
    return json.dumps(frame)
