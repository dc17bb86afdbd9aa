"""A small tagged brand site using flask-lpcall with default (embedded) settings."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, render_template

from flask_lpcall import LPCall
from flask_lpcall.agent import Agent

DEMO_AGENTS = {
    # user name: (password, Agent)
    "alice": ("alice", Agent(id="alice", name="Alice", permissions=frozenset({"Initiate voice conversation"}))),
    "bob": (
        "bob",
        Agent(
            id="bob",
            name="Bob",
            permissions=frozenset({"Initiate voice conversation", "Initiate live video conversation", "View reports"}),
        ),
    ),
}


def create_app(**config: Any) -> Flask:
    app = Flask(__name__, instance_path=os.path.join(os.path.dirname(__file__), "instance"))
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-change-me"),
        LPCALL_ENGAGEMENT_WINDOW=True,
    )
    app.config.update(config)
    lpcall = LPCall()

    @lpcall.agent_loader
    def load_agent(agent_id: str) -> Agent | None:
        entry = DEMO_AGENTS.get(agent_id)
        return entry[1] if entry else None

    @lpcall.agent_authenticator
    def authenticate(username: str, password: str) -> Agent | None:
        entry = DEMO_AGENTS.get(username)
        return entry[1] if entry and entry[0] == password else None

    lpcall.init_app(app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html")

    @app.get("/products/<slug>")
    def product(slug: str) -> str:
        return render_template("product.html", slug=slug)

    @app.get("/support")
    def support() -> str:
        return render_template("support.html")

    return app


app = create_app()
