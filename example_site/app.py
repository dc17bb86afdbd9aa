"""A small tagged brand site using flask-lpcall with default (embedded) settings."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, render_template

from flask_lpcall import Agent, LPCall

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
    # the Python demo agent (`flask lpcall demo-agent`, started by ./dev.sh run)
    "demo": (
        "demo",
        Agent(
            id="demo",
            name="Demo agent",
            permissions=frozenset({"Initiate voice conversation", "Initiate live video conversation"}),
        ),
    ),
}


#: The shop's catalog (slug -> product); enough to look like a real small shop.
PRODUCTS: dict[str, dict[str, str]] = {
    "aurora-espresso": {
        "name": "Aurora Espresso",
        "price": "€14.90 / 500 g",
        "color": "#5a3522",
        "summary": "Dark chocolate, hazelnut, a hint of orange.",
        "description": "Our house espresso: Brazilian and Ethiopian beans roasted medium-dark for a thick crema.",
    },
    "fjord-filter": {
        "name": "Fjord Filter Blend",
        "price": "€12.50 / 500 g",
        "color": "#9b6a43",
        "summary": "Bright and clean, made for pour-over.",
        "description": "Washed Kenyan and Colombian beans, light roast, notes of blackcurrant and brown sugar.",
    },
    "midnight-decaf": {
        "name": "Midnight Decaf",
        "price": "€13.90 / 500 g",
        "color": "#3b2a21",
        "summary": "Swiss-water decaf with caramel sweetness.",
        "description": "All the taste, none of the caffeine: decaffeinated with water only, roasted medium.",
    },
}


#: The instance folder (reports, agent directory): example_site/instance unless EXAMPLE_SITE_INSTANCE says
#: otherwise (the tests point it at a temporary folder, so they never write into the example site).
DEFAULT_INSTANCE = os.path.join(os.path.dirname(__file__), "instance")


def create_app(**config: Any) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("EXAMPLE_SITE_INSTANCE") or DEFAULT_INSTANCE)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY", "dev-only-change-me"),
        LPCALL_ENGAGEMENT_WINDOW=True,
    )
    # Serving config from the environment: FLASK_SECRET_KEY, FLASK_LPCALL_STORE=redis://…,
    # FLASK_LPCALL_TURN_URLS='["turn:…"]' (values are parsed as JSON when they are JSON).
    app.config.from_prefixed_env()
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
        return render_template("home.html", products=PRODUCTS)

    @app.get("/products/<slug>")
    def product(slug: str) -> str:
        if slug not in PRODUCTS:
            abort(404)
        return render_template("product.html", slug=slug, product=PRODUCTS[slug])

    @app.get("/support")
    def support() -> str:
        return render_template("support.html")

    @app.get("/styled")
    def styled() -> str:
        """The chat window and the invitation restyled (CSS custom properties, the invitation's template block)."""
        return render_template("styled.html")

    @app.get("/custom")
    def custom_integration() -> str:
        """A call through a custom integration: the Messaging-Window socket and lpTag.events only (seed 003)."""
        return render_template("custom.html")

    return app


app = create_app()
