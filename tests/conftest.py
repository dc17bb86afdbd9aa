"""Shared fixtures: a private network namespace, live servers, real Chromium.

The whole test session runs inside a private network namespace (``unshare -n``):
only loopback exists, so WebRTC candidates are loopback and no packet can leave
the machine. ``pytest`` re-executes itself there on start (needs root or user
namespaces); set ``LPCALL_NO_NETNS=1`` to opt out on a developer machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The example site's instance folder during the tests (reports, agent directory): a temporary one, set before
#: example_site is imported and inherited by every server the tests start, so no test writes into example_site/.
_INSTANCE_PREFIX = "lpcall-example-instance-"
if not os.environ.get("EXAMPLE_SITE_INSTANCE"):
    os.environ["EXAMPLE_SITE_INSTANCE"] = tempfile.mkdtemp(prefix=_INSTANCE_PREFIX)
sys.path.insert(0, str(ROOT))  # example_site is importable as a package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from freshvenv import HOST_NETNS_ENV
from support import (
    CHROMIUM,
    IN_CI,
    LiveServer,
    launch_chromium,
    require,
    start_demo_agent,
    start_live_server,
)

from benchmarks.common import netns_script

_NETNS_FLAG = "LPCALL_IN_NETNS"


def _enter_private_netns() -> None:
    if os.environ.get(_NETNS_FLAG) or os.environ.get("LPCALL_NO_NETNS"):
        return
    if not shutil.which("unshare"):
        if IN_CI:
            raise SystemExit("unshare (util-linux) is required to run the tests in a private network namespace")
        return
    probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
    if probe.returncode != 0:
        if IN_CI:
            raise SystemExit(f"cannot create a private network namespace: {probe.stderr.decode().strip()}")
        return
    os.environ[_NETNS_FLAG] = "1"
    # keep a handle on the outer network namespace (inherited through the exec): the fresh-venv tests
    # install packages from the package index through it (freshvenv.host_network), nothing else does
    outer = os.open("/proc/self/ns/net", os.O_RDONLY)
    os.set_inheritable(outer, True)
    os.environ[HOST_NETNS_ENV] = f"/proc/{os.getpid()}/fd/{outer}"
    os.execvp("unshare", ["unshare", "-n", "sh", "-c", netns_script(), "sh", sys.executable, "-m", "pytest", *sys.argv[1:]])


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        _enter_private_netns()


def _temporary_instance_path(self: Any) -> str:
    """Where a test's own ``Flask(__name__)`` keeps its instance folder: in the session's temporary one,
    not in tests/instance (reports of the calls the tests make would pile up in the repository)."""
    return os.path.join(os.environ["EXAMPLE_SITE_INSTANCE"], "apps", self.import_name)


def pytest_sessionstart(session: pytest.Session) -> None:
    from flask import Flask

    Flask.auto_find_instance_path = _temporary_instance_path  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    instance = Path(os.environ.get("EXAMPLE_SITE_INSTANCE", ""))
    if not hasattr(config, "workerinput") and instance.name.startswith(_INSTANCE_PREFIX):
        shutil.rmtree(instance, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """The one Playwright driver of the session (a second sync_playwright() cannot start)."""
    require("chromium", Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """One headless Chromium for the session (Debian's, through Playwright)."""
    b = launch_chromium(playwright)
    yield b
    b.close()


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``live_server(app)`` serves a Flask app on 127.0.0.1:<free port> in a thread."""
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = start_live_server(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def rig(browser: Any, live_server: Callable[..., LiveServer]) -> Iterator[Callable[..., Any]]:
    """Factory: ``rig(**config)`` is the example site with an agent page and a visitor page in the
    session's Chromium (tests/resumekit.py); every rig made is closed after the test."""
    from resumekit import Rig

    rigs: list[Rig] = []

    def make(**config: Any) -> Rig:
        r = Rig(browser, live_server, **config)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        r.close()


@pytest.fixture
def demo_site(live_server: Callable[..., LiveServer]) -> Iterator[tuple[LiveServer, Any]]:
    """The example site with the aiortc demo agent signed in (flask_lpcall.peer.demo), as ``./dev.sh run``
    serves it: ``(server, agent)``; the agent sends 320x240 video to keep the tests' CPU low."""
    from example_site.app import create_app

    app = create_app(LPCALL_REPORT_DB=":memory:")
    server = live_server(app)
    agent, loop, runner = start_demo_agent(server.url, app)
    yield server, agent
    runner.cancel()
    loop.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Any]:
    """A real redis-server on a free loopback port for the test module (tests/servers.py), stopped after it."""
    from servers import start_redis

    require("redis-server", bool(shutil.which("redis-server")), "apt-get install redis-server")
    server = start_redis()
    yield server
    server.stop()
