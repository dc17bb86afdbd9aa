"""``flask lpcall …``: the extension's command group (entry point ``flask.commands``)."""

from __future__ import annotations

from flask.cli import AppGroup

from .reporting import report_command

lpcall_cli = AppGroup("lpcall", help="flask-lpcall: voice and video calls inside web messaging.")

lpcall_cli.add_command(report_command)
