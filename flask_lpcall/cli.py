"""``flask lpcall …``: the extension's command group (entry point ``flask.commands``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .core.agents import PERM_REPORTS, PERM_VIDEO, PERM_VOICE, uses_directory
from .core.directory import DirectoryError, check_username
from .core.records import parse_bound
from .core.reports import to_csv, to_json
from .protocol import MODES
from .state import get_state

lpcall_cli = AppGroup("lpcall", help="flask-lpcall: voice and video calls inside web messaging.")


@lpcall_cli.command("demo-agent")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True, help="Where the site is served.")
@click.option("--username", default="demo", show_default=True, help="The demo agent's workspace login.")
@click.option("--password", default="demo", show_default=True, help="The demo agent's password.")
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for the site to come up.")
@click.option("--watch-pid", type=int, default=None, help="Stop when this process exits (./dev.sh run passes the site's).")
def demo_agent_command(url: str, username: str, password: str, wait: float, watch_pid: int | None) -> None:
    """Run the demo agent: greets visitors and, on "call me", starts a video call with a test pattern and an echo."""
    # the only import inside a function: aiortc costs every `flask` process ~37 MB, and only this command needs it
    from .peer.demo import DemoAgentError, DemoSettings, serve_forever

    state = get_state()
    settings = DemoSettings(
        url=url.rstrip("/"), username=username, password=password, prefix=state.url_prefix, texts=state.texts
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo-agent %(levelname)s %(message)s")
    click.echo(f"demo agent: logging in to {settings.url}{settings.prefix} as {username!r}")
    try:
        asyncio.run(serve_forever(settings, wait=wait, watch_pid=watch_pid))
    except DemoAgentError as exc:
        raise click.ClickException(f"{exc} ({exc.code})") from None
    except KeyboardInterrupt:
        pass


# -- flask lpcall agent … : the built-in agent directory ----------------------------------
PROMPT = "\0prompt"  # --password given without a value: ask for it


def _directory() -> Any:
    state = get_state()
    if not uses_directory(state.extension):
        click.echo("note: this app registers its own agent hooks (or Flask-Login); they decide who logs in, "
                   "not this directory", err=True)
    return state.agent_directory


def _permissions(voice: bool, video: bool, reports: bool) -> set[str]:
    return {p for p, on in ((PERM_VOICE, voice), (PERM_VIDEO, video), (PERM_REPORTS, reports)) if on}


def _password(value: str | None) -> str | None:
    if value == PROMPT:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return value


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@lpcall_cli.group("agent")
def agent_cli() -> None:
    """Agents of the built-in directory (LPCALL_AGENT_DB): add, list, set, remove."""


@agent_cli.command("add")
@click.argument("name")
@click.option("--password", default=None, help="The password (asked for when left out).")
@click.option("--display-name", default=None, help="The name visitors see (default: NAME).")
@click.option("--voice", is_flag=True, help='May start voice calls ("Initiate voice conversation").')
@click.option("--video", is_flag=True, help='May start video calls ("Initiate live video conversation").')
@click.option("--reports", is_flag=True, help='May open the reports dashboard ("View reports").')
def agent_add(name: str, password: str | None, display_name: str | None, voice: bool, video: bool, reports: bool) -> None:
    """Add agent NAME (the user name of the workspace login)."""
    directory = _directory()
    try:
        check_username(name)
        if directory.get(name) is not None:
            raise DirectoryError(f"an agent named {name!r} exists already (use 'set' to change it)", "NAME")
        if password is None:
            password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
        entry = directory.add(name, password, _permissions(voice, video, reports), name=display_name)
    except DirectoryError as exc:
        raise _fail(exc) from None
    click.echo(f"added agent {entry.username!r} ({_describe(entry.permissions)}) to {directory.path}")


@agent_cli.command("list")
def agent_list() -> None:
    """List the agents of the directory."""
    directory = _directory()
    entries = directory.all()
    if not entries:
        click.echo(f"no agents in {directory.path} (add one: flask lpcall agent add NAME --voice --video)")
        return
    for entry in entries:
        click.echo(f"{entry.username}\t{entry.name}\t{_describe(entry.permissions)}")


@agent_cli.command("set")
@click.argument("name")
@click.option("--password", is_flag=False, flag_value=PROMPT, default=None,
              help="A new password (--password alone asks for it).")
@click.option("--display-name", default=None, help="A new display name.")
@click.option("--voice/--no-voice", default=None, help="Allow or forbid voice calls.")
@click.option("--video/--no-video", default=None, help="Allow or forbid video calls.")
@click.option("--reports/--no-reports", default=None, help="Allow or forbid the reports dashboard.")
def agent_set(name: str, password: str | None, display_name: str | None, voice: bool | None, video: bool | None,
              reports: bool | None) -> None:
    """Change agent NAME: password, display name, permissions (the others stay)."""
    directory = _directory()
    current = directory.get(name)
    if current is None:
        raise click.ClickException(f"no agent named {name!r}")
    permissions = set(current.permissions)
    for perm, on in ((PERM_VOICE, voice), (PERM_VIDEO, video), (PERM_REPORTS, reports)):
        if on is True:
            permissions.add(perm)
        elif on is False:
            permissions.discard(perm)
    try:
        entry = directory.update(name, password=_password(password), permissions=permissions, name=display_name)
    except DirectoryError as exc:
        raise _fail(exc) from None
    click.echo(f"updated agent {entry.username!r} ({_describe(entry.permissions)})")


@agent_cli.command("remove")
@click.argument("name")
def agent_remove(name: str) -> None:
    """Remove agent NAME (its open workspace sessions end at their next request)."""
    try:
        _directory().remove(name)
    except DirectoryError as exc:
        raise _fail(exc) from None
    click.echo(f"removed agent {name!r}")


def _describe(permissions: frozenset[str] | set[str]) -> str:
    words = [w for p, w in ((PERM_VOICE, "voice"), (PERM_VIDEO, "video"), (PERM_REPORTS, "reports")) if p in permissions]
    return ", ".join(words) or "chat only"


# -- CLI: flask lpcall report ------------------------------------------------------------
class _Bound(click.ParamType):  # type: ignore[type-arg]
    name = "DATE"

    def __init__(self, end: bool) -> None:
        self.end = end

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_bound(str(value), end=self.end)
        except ValueError:
            self.fail(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time", param, ctx)


@lpcall_cli.command("report")
@click.option("--since", type=_Bound(end=False), help="First day (YYYY-MM-DD, UTC) or ISO 8601 time; default: all.")
@click.option("--until", type=_Bound(end=True), help="Last day, inclusive (YYYY-MM-DD, UTC) or ISO 8601 time; default: now.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--agent", default=None, help="Only this agent id.")
@click.option("--mode", type=click.Choice(list(MODES)), default=None, help="Only this call mode.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default: stdout).")
@with_appcontext
def report_command(
    since: datetime | None, until: datetime | None, fmt: str, agent: str | None, mode: str | None, output: Any
) -> None:
    """Collaboration-session records (one per call) as CSV or JSON."""
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    service = get_state(current_app._get_current_object()).reports  # type: ignore[attr-defined]
    service.flush(5.0)
    records = service.query(since, until, agent, mode)
    if fmt == "csv":
        output.write(to_csv(records))
    else:
        meta = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
        output.write(to_json(records, **meta) + "\n")
