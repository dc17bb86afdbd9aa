"""Agents out of the box (issue 13 point 3): ``LPCall(app)`` with no hooks logs agents in against
the built-in directory, managed with ``flask lpcall agent add|list|set|remove``; a Flask-Login
site hands its users over with ``use_flask_login``; nobody able to log in is logged once at start.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agentkit import form_login
from flask import Flask
from wsclients import Agent as AgentClient
from wsclients import FrameClient

from flask_lpcall import LPCall
from flask_lpcall.cli import lpcall_cli
from flask_lpcall.core.agents import PERM_REPORTS, PERM_VIDEO, PERM_VOICE, Agent
from flask_lpcall.core.directory import AgentDirectory
from flask_lpcall.state import get_state


def quickstart_app(tmp_path: Path, **config: Any) -> Flask:
    """The README's Quickstart: LPCall(app) and a SECRET_KEY, nothing else."""
    app = Flask("shop", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="quickstart", LPCALL_REPORT_DB=":memory:", **config)
    LPCall(app)
    return app


def cli(app: Flask, *args: str, input: str | None = None) -> Any:
    result = app.test_cli_runner().invoke(lpcall_cli, list(args), input=input)
    return result


def test_cli_adds_an_agent_who_logs_in_with_the_permissions_given(tmp_path: Path) -> None:
    app = quickstart_app(tmp_path)
    added = cli(app, "agent", "add", "bob", "--voice", "--video", "--display-name", "Bob B.", input="s3cret!\ns3cret!\n")
    assert added.exit_code == 0, added.output
    db = tmp_path / "instance" / "lpcall-agents.sqlite3"  # the documented default: the instance folder
    assert db.is_file() and str(db) in added.output
    hashed = sqlite3.connect(db).execute("SELECT password_hash FROM agents WHERE username='bob'").fetchone()[0]
    assert "s3cret!" not in hashed and hashed.startswith(("scrypt:", "pbkdf2:"))  # werkzeug.security

    client = app.test_client()
    assert form_login(client, "bob", "wrong").status_code == 401
    ok = form_login(client, "bob", "s3cret!")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/lpcall/agent/")
    html = client.get("/lpcall/agent/").get_data(as_text=True)
    assert 'data-agent-id="bob"' in html and "Bob B." in html
    assert 'data-mode="VOICE_CALL"' in html and 'data-mode="VIDEO_CALL"' in html

    listed = cli(app, "agent", "list")
    assert listed.exit_code == 0 and "bob\tBob B.\tvoice, video" in listed.output

    # set: permissions change at the next request of the logged-in agent
    assert cli(app, "agent", "set", "bob", "--no-video", "--reports").exit_code == 0
    html = client.get("/lpcall/agent/").get_data(as_text=True)
    assert 'data-mode="VIDEO_CALL"' not in html and 'data-mode="VOICE_CALL"' in html
    assert client.get("/lpcall/agent/reports").status_code == 200
    entry = get_state(app).agent_directory.get("bob")
    assert entry.permissions == frozenset({PERM_VOICE, PERM_REPORTS})

    # a new password: the old one is refused
    assert cli(app, "agent", "set", "bob", "--password", "n3w-pass").exit_code == 0
    assert form_login(app.test_client(), "bob", "s3cret!").status_code == 401
    assert form_login(app.test_client(), "bob", "n3w-pass").status_code == 302

    # remove: the logged-in session opens nothing any more
    assert cli(app, "agent", "remove", "bob").exit_code == 0
    assert client.get("/lpcall/agent/").status_code == 302
    assert "no agents" in cli(app, "agent", "list").output


def test_cli_refuses_bad_names_duplicates_and_unknown_agents(tmp_path: Path) -> None:
    app = quickstart_app(tmp_path)
    bad = cli(app, "agent", "add", "bob smith", "--password", "x")
    assert bad.exit_code == 1 and "NAME must be" in bad.output
    assert cli(app, "agent", "add", "bob", "--password", "pw").exit_code == 0
    dup = cli(app, "agent", "add", "bob", "--password", "pw")
    assert dup.exit_code == 1 and "exists already" in dup.output
    for args in (("set", "carol", "--voice"), ("remove", "carol")):
        unknown = cli(app, "agent", *args)
        assert unknown.exit_code == 1 and "no agent named 'carol'" in unknown.output
    mismatch = cli(app, "agent", "add", "dave", input="one\ntwo\none\none\n")  # the prompt asks twice
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output.lower()
    entry = get_state(app).agent_directory.get("bob")
    assert entry.permissions == frozenset()  # no flag: chat only, no call button


def test_agent_db_key_moves_the_directory(tmp_path: Path) -> None:
    app = quickstart_app(tmp_path, LPCALL_AGENT_DB=str(tmp_path / "elsewhere" / "agents.db"))
    assert cli(app, "agent", "add", "bob", "--password", "pw", "--voice").exit_code == 0
    assert (tmp_path / "elsewhere" / "agents.db").is_file()
    assert not (tmp_path / "instance").exists()
    memory = quickstart_app(tmp_path / "m", LPCALL_AGENT_DB=":memory:")
    get_state(memory).agent_directory.add("eve", "pw", {PERM_VOICE})
    assert form_login(memory.test_client(), "eve", "pw").status_code == 302


def test_reading_an_absent_directory_creates_nothing(tmp_path: Path) -> None:
    directory = AgentDirectory(str(tmp_path / "none" / "agents.sqlite3"))
    assert directory.count() == 0 and directory.get("bob") is None and directory.authenticate("bob", "pw") is None
    assert not (tmp_path / "none").exists()


def test_nobody_can_log_in_is_logged_once_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_lpcall.web.workspace")
    app = quickstart_app(tmp_path)
    client = app.test_client()
    client.get("/lpcall/agent/login")
    client.get("/lpcall/agent/login")
    warnings = [r.getMessage() for r in caplog.records if "no agent can log in" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "flask --app shop lpcall agent add NAME --voice --video" in warnings[0]

    caplog.clear()
    with_agent = quickstart_app(tmp_path / "2")
    get_state(with_agent).agent_directory.add("bob", "pw", {PERM_VOICE})
    with_agent.test_client().get("/")
    hooks = Flask("hooks", instance_path=str(tmp_path / "3"))
    hooks.config.update(SECRET_KEY="x", LPCALL_REPORT_DB=":memory:")
    ext = LPCall(hooks)
    ext.agent_loader(lambda agent_id: None)  # hooks registered after LPCall(app) count too
    ext.agent_authenticator(lambda u, p: None)
    hooks.test_client().get("/")
    assert not [r for r in caplog.records if "no agent can log in" in r.getMessage()]
    assert not (tmp_path / "3").exists()  # a site with hooks never touches the directory


def test_hooks_still_decide_when_registered(tmp_path: Path) -> None:
    app = Flask("hooks", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="x", LPCALL_REPORT_DB=":memory:")
    ext = LPCall(app)
    bob = Agent("bob", "Bob", frozenset({PERM_VOICE}))
    ext.agent_loader(lambda agent_id: bob if agent_id == "bob" else None)
    ext.agent_authenticator(lambda u, p: bob if (u, p) == ("bob", "hook-pw") else None)
    get_state(app).agent_directory.add("mallory", "pw", {PERM_VOICE, PERM_VIDEO})
    assert form_login(app.test_client(), "mallory", "pw").status_code == 401  # the directory is not asked
    client = app.test_client()
    assert form_login(client, "bob", "hook-pw").status_code == 302
    assert 'data-agent-id="bob"' in client.get("/lpcall/agent/").get_data(as_text=True)


# -- Flask-Login ---------------------------------------------------------------------------
def flask_login_site(tmp_path: Path, permissions: Any = "lpcall_permissions", login_view: str | None = "login") -> Flask:
    """A site that already logs its users in with Flask-Login, and hands them over with one call."""
    from flask import redirect, request
    from flask_login import LoginManager, UserMixin, login_user

    class User(UserMixin):
        def __init__(self, uid: str, name: str, perms: list[str] | None) -> None:
            self.id, self.name, self.lpcall_permissions = uid, name, perms

    users = {
        "u1": User("u1", "Uma", [PERM_VOICE, PERM_VIDEO]),
        "u2": User("u2", "Ulf", None),  # a customer of the site, not an agent
    }
    app = Flask("flsite", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="flask-login-site", LPCALL_REPORT_DB=":memory:")
    manager = LoginManager(app)
    manager.login_view = login_view
    manager.user_loader(users.get)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST":
            login_user(users[request.form["uid"]])
            return redirect(request.args.get("next") or "/")
        return "<form method=post><input name=uid></form>"

    lpcall = LPCall(app)
    lpcall.use_flask_login(permissions=permissions)
    return app


def test_flask_login_users_are_the_agents(tmp_path: Path, live_server: Any) -> None:
    app = flask_login_site(tmp_path)
    client = app.test_client()
    first = client.get("/lpcall/agent/")
    assert first.status_code == 302 and first.headers["Location"].endswith("/lpcall/agent/login")
    to_site = client.get("/lpcall/agent/login")
    assert to_site.status_code == 302 and "/login?next=" in to_site.headers["Location"]  # the site's own login view
    client.post("/login", data={"uid": "u1"})
    html = client.get("/lpcall/agent/").get_data(as_text=True)
    assert 'data-agent-id="u1"' in html and "Uma" in html and 'data-mode="VIDEO_CALL"' in html

    customer = app.test_client()
    customer.post("/login", data={"uid": "u2"})
    assert customer.get("/lpcall/agent/").status_code == 302  # permissions None: not an agent

    # the agent socket opens with the site's session cookie
    server = live_server(app)
    import requests

    http = requests.Session()
    http.post(f"{server.url}/login", data={"uid": "u1"}, timeout=10)
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    ws = FrameClient(f"{server.ws_url}/lpcall/ws/agent", origin=server.url, cookie=cookie)
    try:
        resp = ws.request("agent.Subscribe", {"available": True})
        assert resp["code"] == 200 and resp["body"] == {"agentId": "u1", "name": "Uma"}
    finally:
        ws.close()

    # logout from the workspace logs out of the site
    page = client.get("/lpcall/agent/").get_data(as_text=True)
    from agentkit import csrf_of

    client.post("/lpcall/agent/logout", data={"csrf_token": csrf_of(page)})
    assert client.get("/lpcall/agent/").status_code == 302


def test_flask_login_permissions_from_a_callable_and_no_login_view(tmp_path: Path) -> None:
    app = flask_login_site(tmp_path, permissions=lambda user: [PERM_VOICE] if user.name == "Uma" else None,
                           login_view=None)
    client = app.test_client()
    refused = client.get("/lpcall/agent/login")
    assert refused.status_code == 401 and "Log in to the site first" in refused.get_data(as_text=True)
    client.post("/login", data={"uid": "u1"})
    html = client.get("/lpcall/agent/").get_data(as_text=True)
    assert 'data-mode="VOICE_CALL"' in html and 'data-mode="VIDEO_CALL"' not in html


MISSING = r"""
import sys
sys.modules[sys.argv[1]] = None  # as if the package were not installed
from flask import Flask
from flask_lpcall import LPCall
from flask_lpcall.optional import MissingDependencyError
try:
    if sys.argv[1] == "flask_login":
        LPCall().use_flask_login()
    else:
        import flask_lpcall.peer
except MissingDependencyError as exc:
    print(exc)
else:
    print("imported")
"""


@pytest.mark.parametrize(("module", "hint"), [
    ("flask_login", "needs Flask-Login, which is not installed: pip install 'flask-lpcall[login]'"),
    ("websockets", "flask_lpcall.peer (the Python call peer) needs websockets, which is not installed: pip install"),
])
def test_a_missing_optional_package_names_what_to_install(module: str, hint: str) -> None:
    out = subprocess.run([sys.executable, "-c", MISSING, module], check=False, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert hint in out.stdout, out.stdout + out.stderr


def test_agent_client_logs_in_against_the_directory_over_http(tmp_path: Path, live_server: Any) -> None:
    """The same login through a real server: the form, the cookie and the agent socket."""
    app = quickstart_app(tmp_path)
    assert cli(app, "agent", "add", "bob", "--password", "pw", "--voice").exit_code == 0
    server = live_server(app)
    agent = AgentClient(server.url, "bob", "pw")
    try:
        resp = agent.connect()
        assert resp["code"] == 200 and resp["body"]["agentId"] == "bob"
    finally:
        agent.close()
