"""CI proves it the user's way (issue 13 point 7): fresh virtualenvs with exactly what the README installs.

* The README's first command: a fresh venv set up by ``./dev.sh`` itself (``pip install -e ".[serve]"``,
  not the test extras), ``./dev.sh run`` serving the example site in the private namespace, and Chromium
  making the demo call: remote video advancing, the echo of its fake microphone heard by a WebAudio
  analyser and inbound audio bytes growing for 10 s, no traceback in the server's output.
* The Quickstart: the built wheel installed into a fresh venv, the README's app (at most 10 lines, taken
  from the README as it stands), an agent added with the README's CLI line, and a video call between
  two browsers (the agent's workspace and the visitor's page).

pip is the only step that runs outside the private namespace (it needs the package index); the sites
and Chromium run inside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from echokit import assert_echo_for, mic_args, write_mic_wav
from freshvenv import ROOT, clean_env, host_network, make_venv, run, stop_group, tracebacks
from support import INBOUND_STATS_JS, free_port, launch_chromium, wait_for

pytestmark = [pytest.mark.timeout(900), pytest.mark.browser, pytest.mark.media]

README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    return README[start : README.index("\n## ", start + 3)]


def _blocks(text: str, lang: str) -> list[str]:
    """The fenced ``lang`` blocks of ``text``, un-indented (the Quickstart's are inside a list)."""
    out = []
    for match in re.finditer(rf"^([ \t]*)```{lang}\n(.*?)^\1```", text, flags=re.MULTILINE | re.DOTALL):
        indent = len(match.group(1))
        out.append("\n".join(line[indent:] for line in match.group(2).splitlines()) + "\n")
    return out


def first_command() -> str:
    """The README's first command (the first line of its first sh block), without its comment."""
    return _blocks(README, "sh")[0].splitlines()[0].split("#")[0].strip()


@pytest.fixture(scope="module")
def echo_browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    wav = write_mic_wav(tmp_path_factory.mktemp("mic") / "mic-1khz.wav")
    browser = launch_chromium(playwright, mic_args(wav))
    yield browser
    browser.close()


def _serving(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _pip_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"installing failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def test_readme_first_command_in_a_fresh_venv_makes_the_demo_call(echo_browser: Any, tmp_path: Path) -> None:
    assert first_command() == "./dev.sh run"
    venv_dir = tmp_path / "venv"
    env = clean_env(VENV=str(venv_dir), EXAMPLE_SITE_INSTANCE=str(tmp_path / "instance"))
    # what `./dev.sh run` installs, by dev.sh's own function (the only step that needs the package index)
    _pip_ok(subprocess.run(host_network([str(ROOT / "dev.sh"), "install"]), cwd=ROOT, env=env, check=False,
                           capture_output=True, text=True, timeout=600))
    installed = run([str(venv_dir / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], timeout=120).stdout
    assert "websockets==" in installed and "aiortc==" in installed
    assert "pytest==" not in installed and "playwright==" not in installed  # not the test extras

    port = free_port()
    log = tmp_path / "site.log"
    with log.open("w") as out:
        site = subprocess.Popen([str(ROOT / "dev.sh"), "run", "--port", str(port)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    ctx = echo_browser.new_context(viewport={"width": 1000, "height": 800})
    ctx.add_init_script("window.__lpcallTest = true;")
    try:
        wait_for(lambda: _serving(base + "/") or site.poll() is not None, timeout=120, message="the example site")
        assert site.poll() is None, log.read_text()
        wait_for(lambda: "demo agent demo is available" in log.read_text(), timeout=60, message="the demo agent")
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(base + "/")
        page.click(".lpcall-launcher")
        page.fill("#lpcall-visitor-name", "Vera")
        page.click(".lpcall-start [type=submit]")
        page.locator(".lpcall-transcript").get_by_text("Hi, I'm Demo agent").wait_for()
        page.fill("#lpcall-message", "call me")
        page.click(".lpcall-composer [type=submit]")
        page.click(".lpcall-invitation .lpcall-accept")
        page.wait_for_selector(".lpcall-call video.lpcall-remote")
        first = wait_for(lambda: (s := page.evaluate(INBOUND_STATS_JS)) and s["framesDecoded"] > 5 and s, timeout=30,
                         message="the demo agent's video decoded")
        echo = assert_echo_for(page, 10)
        frames = page.evaluate(INBOUND_STATS_JS)["framesDecoded"]
        assert frames > first["framesDecoded"] + 50, (first, frames)  # the video kept advancing meanwhile
        print(f"\nREADME way: echo heard in {echo['windows']} checks over 10 s, {echo['bytes']} audio bytes, "
              f"{frames - first['framesDecoded']} more video frames")
        page.click(".lpcall-call .lpcall-hangup")
    finally:
        ctx.close()
        stop_group(site)
    text = log.read_text()
    assert not tracebacks(text), "\n\n".join(tracebacks(text))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", ".*", "*.pyc")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("flask_lpcall", "static"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    run(host_network([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)]), timeout=600)
    (whl,) = dist.glob("flask_lpcall-*.whl")
    return whl


def quickstart() -> tuple[str, list[str]]:
    """The Quickstart's app and its shell lines, exactly as the README shows them."""
    section = _section("Quickstart for a web team")
    (app,) = _blocks(section, "python")
    (shell,) = _blocks(section, "sh")
    return app, [line.split("#")[0].strip() for line in shell.splitlines() if line.strip()]


def test_quickstart_from_the_wheel_gives_a_video_call(wheel: Path, browser: Any, tmp_path: Path) -> None:
    app_code, lines = quickstart()
    assert len(app_code.rstrip("\n").splitlines()) <= 10, app_code
    assert lines == ["pip install flask-lpcall", "flask --app app lpcall agent add bob --voice --video",
                     "flask --app app run"], lines
    python = make_venv(tmp_path / "venv")
    bin_dir = python.parent
    # `pip install flask-lpcall`, with the wheel built from this tree standing in for the index's
    _pip_ok(subprocess.run(host_network([str(python), "-m", "pip", "install", "-q", str(wheel)]), check=False,
                           capture_output=True, text=True, timeout=600))
    # every part a user may import, from the wheel's own dependencies alone
    imported = run([str(python), "-I", "-c", "import flask_lpcall.peer, flask_lpcall.peer.demo, flask_lpcall.cli; print('ok')"],
                   timeout=120, cwd=tmp_path)
    assert imported.stdout.strip() == "ok"
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "app.py").write_text(app_code)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{clean_env()['PATH']}", VIRTUAL_ENV=str(tmp_path / "venv"))

    added = run(["flask", *lines[1].split()[1:]], timeout=120, cwd=site_dir, env=env, input="b0b-secret\nb0b-secret\n")
    assert "added agent 'bob' (voice, video)" in added.stdout
    assert (site_dir / "instance" / "lpcall-agents.sqlite3").is_file()

    port = free_port()
    log = tmp_path / "site.log"
    with log.open("w") as out:
        site = subprocess.Popen(["flask", *lines[2].split()[1:], "--port", str(port)], cwd=site_dir, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    for ctx in contexts:
        ctx.add_init_script("window.__lpcallTest = true;")
    try:
        wait_for(lambda: _serving(base + "/") or site.poll() is not None, timeout=60, message="the Quickstart app")
        assert site.poll() is None, log.read_text()
        agent, visitor = (ctx.new_page() for ctx in contexts)
        for page in (agent, visitor):
            page.set_default_timeout(30_000)
        agent.goto(base + "/lpcall/agent/")  # the README's address: it asks for the login
        agent.fill("#lpcall-username", "bob")
        agent.fill("#lpcall-password", "b0b-secret")
        agent.click(".lpcall-login-form [type=submit]")
        agent.wait_for_selector("#lpcall-agent")

        visitor.goto(base + "/")
        visitor.click(".lpcall-launcher")
        visitor.fill("#lpcall-visitor-name", "Vera")
        visitor.click(".lpcall-start [type=submit]")
        visitor.wait_for_selector(".lpcall-composer:not([hidden])")
        visitor.fill("#lpcall-message", "Hello, can we talk?")
        visitor.click(".lpcall-composer [type=submit]")

        agent.click(".lpcall-mine .lpcall-conv-open")
        agent.click("button.lpcall-call-btn[data-mode=VIDEO_CALL]")
        visitor.click(".lpcall-invitation .lpcall-accept")
        for page, who in ((agent, "the agent"), (visitor, "the visitor")):
            wait_for(lambda p=page: (s := p.evaluate(INBOUND_STATS_JS))["framesDecoded"] > 30 and s["audioBytes"] > 0,
                     timeout=40, message=f"{who} decodes the other's video and receives audio")
        visitor.click(".lpcall-call .lpcall-hangup")
    finally:
        for ctx in contexts:
            ctx.close()
        stop_group(site)
    text = log.read_text()
    assert not tracebacks(text), "\n\n".join(tracebacks(text))
