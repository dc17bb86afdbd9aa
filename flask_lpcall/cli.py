"""``flask lpcall …``: the extension's command group (entry point ``flask.commands``)."""

from __future__ import annotations

import asyncio
import logging

import click
from flask.cli import AppGroup

from .reporting import report_command

lpcall_cli = AppGroup("lpcall", help="flask-lpcall: voice and video calls inside web messaging.")

lpcall_cli.add_command(report_command)


@lpcall_cli.command("demo-agent")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True, help="Where the site is served.")
@click.option("--username", default="demo", show_default=True, help="The demo agent's workspace login.")
@click.option("--password", default="demo", show_default=True, help="The demo agent's password.")
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for the site to come up.")
@click.option("--watch-pid", type=int, default=None, help="Stop when this process exits (./dev.sh run passes the site's).")
def demo_agent_command(url: str, username: str, password: str, wait: float, watch_pid: int | None) -> None:
    """Run the demo agent: greets visitors and, on "call me", starts a video call with a test pattern and an echo."""
    from .demo import DemoAgentError, DemoSettings, serve_forever
    from .extension import get_state

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
