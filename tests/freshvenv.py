"""Helpers of the first-touch tests: fresh virtualenvs installed the user's way, ./dev.sh run, logs.

The tests run in a private network namespace (loopback only). Only pip needs the package index, so
only pip runs in the namespace the session started in (tests/conftest.py keeps a handle on it);
the sites, the demo agent and Chromium stay in the private one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: tests/conftest.py keeps the network namespace the session started in at this path (pytest's own fd)
HOST_NETNS_ENV = "LPCALL_HOST_NETNS"


def host_network(cmd: list[str]) -> list[str]:
    """``cmd`` run in the network namespace the test session started in (pip only: the package index is
    not reachable from the tests' private namespace); ``cmd`` itself when the session has no namespace."""
    outer = os.environ.get(HOST_NETNS_ENV)
    if outer and os.path.exists(outer):
        return ["nsenter", f"--net={outer}", *cmd]
    return cmd


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no test venv, no PYTHONPATH, no test-only settings."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "FLASK_APP", "PORT"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(("LPCALL_", "FLASK_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    env.update(extra)
    return env


def make_venv(path: Path) -> Path:
    """A fresh virtualenv (with pip) of the interpreter running the tests; returns its python."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def stop_group(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started (its own group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    try:  # the demo agent of ./dev.sh run stops by itself with the site; make sure of it
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tracebacks(text: str) -> list[str]:
    """Every 'Traceback' block of a server log (first lines), for an assertion message."""
    lines = text.splitlines()
    return ["\n".join(lines[i : i + 12]) for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
