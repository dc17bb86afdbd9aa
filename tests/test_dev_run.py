"""``./dev.sh run`` honours the port (issue 13 point 4): ``--port N``, ``--port=N`` and ``PORT=N`` move
the site, and the demo agent it starts follows to the same port (a visitor there is greeted by it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from freshvenv import ROOT, stop_group, tracebacks
from support import free_port, require, wait_for
from wsclients import Consumer

pytestmark = pytest.mark.timeout(180)


def start_dev_run(args: list[str], env_extra: dict[str, str], log: Path) -> subprocess.Popen[Any]:
    """./dev.sh run with the test environment's venv (already installed: no pip in the private namespace)."""
    newest = max((ROOT / name).stat().st_mtime for name in ("setup.cfg", "pyproject.toml"))
    fresh = [s for s in Path(sys.prefix).glob(".installed-*") if "serve" in s.name and s.stat().st_mtime >= newest]
    require("a venv set up by ./dev.sh test", bool(fresh),
            f"{sys.prefix} has no install stamp newer than setup.cfg: ./dev.sh run would pip install (run ./dev.sh test)")
    env = {**os.environ, "VENV": sys.prefix, **env_extra}
    env.pop("PORT", None) if "PORT" not in env_extra else None
    with log.open("w") as out:
        return subprocess.Popen([str(ROOT / "dev.sh"), "run", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def greeted_by_demo_agent(base: str) -> dict[str, Any]:
    """A visitor opens a conversation; the demo agent takes it and writes its greeting."""
    consumer = Consumer(base)
    try:
        consumer.connect()
        conv_id = consumer.open_conversation("Vera")
        assert consumer.client is not None
        return consumer.client.wait_notification(
            lambda m: m.get("type") == "ms.MessagingEventNotification"
            and any(e.get("role") == "AGENT" and e.get("originatorId") == "demo" for e in m["body"]["events"])
            and m["body"]["conversationId"] == conv_id,
            timeout=30,
        )
    finally:
        consumer.close()


def _serving(base: str) -> bool:
    try:
        return requests.get(base + "/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("how", ["--port N", "--port=N", "PORT=N"])
def test_the_site_and_the_demo_agent_follow_the_port(how: str, tmp_path: Path) -> None:
    port = free_port()
    args = {"--port N": ["--port", str(port)], "--port=N": [f"--port={port}"], "PORT=N": []}[how]
    env = {"PORT": str(port)} if how == "PORT=N" else {}
    log = tmp_path / "dev-run.log"
    proc = start_dev_run(args, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _serving(base) or proc.poll() is not None, timeout=60, message=f"the site on {base}")
        assert proc.poll() is None, log.read_text()
        # the visitor may come before the demo agent has logged in: it takes the waiting chat then
        try:
            greeted_by_demo_agent(base)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"no greeting from the demo agent ({exc}); server output:\n{log.read_text()[-3000:]}") from None
    finally:
        stop_group(proc)
    text = log.read_text()
    assert f"demo agent: logging in to {base}/lpcall" in text, text
    assert not tracebacks(text), tracebacks(text)


def test_a_bad_port_is_refused_with_a_message(tmp_path: Path) -> None:
    out = subprocess.run([str(ROOT / "dev.sh"), "run", "--port", "fifty"], cwd=ROOT, check=False, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "VENV": sys.prefix})
    assert out.returncode == 2 and "the port must be a number (got 'fifty')" in out.stderr
