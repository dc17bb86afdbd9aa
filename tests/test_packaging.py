"""The wheel: built from a clean copy of the tree, installed into a fresh venv outside the repo, served.

Proves that the top-level ``static/`` folder (with its subfolders) ships inside the wheel as
``flask_lpcall/static`` (setup.cfg's package_dir mapping) and that a Flask app in that venv serves
the browser code and the templates from the venv's site-packages, not from this checkout.
The session is offline (private network namespace), so the venv borrows the wheel's
dependencies read-only from the test environment (a ``.pth`` after its own site-packages);
the wheel is installed with ``--no-index --force-reinstall`` and every path is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)

SERVE = r"""
import json, sys
import flask_lpcall, flask_lpcall.web.assets
from flask import Flask
from werkzeug.serving import make_server

app = Flask("brand_site")
app.config["SECRET_KEY"] = "packaging-test"
flask_lpcall.LPCall(app)

@app.get("/")
def home():
    return "<!doctype html><html><head><title>brand</title></head><body>hello</body></html>"

server = make_server("127.0.0.1", 0, app, threaded=True)
template = app.jinja_env.get_template("lpcall/agent_login.html").filename
print(json.dumps({"port": server.server_port, "package": flask_lpcall.__file__, "prefix": sys.prefix,
                  "static": str(flask_lpcall.web.assets.static_dir()), "template": template}), flush=True)
server.serve_forever()
"""


REQUIREMENTS_RESOLVE = r"""
import re
from importlib.metadata import distribution, version
dist = distribution("flask-lpcall")
assert "site-packages" in str(dist.locate_file("flask_lpcall")), dist.locate_file("flask_lpcall")
for req in dist.requires or []:
    if "extra ==" in req:
        continue
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
    print(name, version(name))
"""


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _shipped(folder: Path) -> set[str]:
    """Files a clean checkout ships: no caches, no hidden editor files."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.parts)
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, the clean copy of the tree it was built from)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", ".*", "*.pyc")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("flask_lpcall", "static"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(src)], timeout=600)
    (whl,) = dist.glob("flask_lpcall-*.whl")
    return whl, src


def test_wheel_holds_the_package_static_tree_and_templates(built: tuple[Path, Path]) -> None:
    wheel, src = built
    names = set(zipfile.ZipFile(wheel).namelist())
    static = _shipped(src / "static")
    assert {"lptag.js", "lptag-stub.js", "lpcall/vectors.json"} <= static
    missing = {f"flask_lpcall/static/{f}" for f in static} - names
    assert not missing, f"static files missing from the wheel: {sorted(missing)}"
    package = {f"flask_lpcall/{f}" for f in _shipped(src / "flask_lpcall")}
    assert not package - names, f"package files missing from the wheel (list new subpackages in setup.cfg): {sorted(package - names)}"
    assert "flask_lpcall/py.typed" in names
    assert not [n for n in names if n.startswith(("static/", "tests/", "example_site/", "benchmarks/"))]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Name: flask-lpcall" in metadata and "Requires-Dist: marshmallow" in metadata


def _test_env_site_dirs() -> list[str]:
    """The site-packages folders of the environment running the tests (for the wheel's dependencies)."""
    dirs = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    return list(dict.fromkeys(dirs))


def test_fresh_venv_outside_the_repo_serves_assets_from_the_installed_wheel(built: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, src = built
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    site_packages = next((venv / "lib").glob("python3*/site-packages")).resolve()
    # The tests run offline (private network namespace), so the wheel's dependencies (Flask, aiortc, ...)
    # come read-only from the test environment, listed *after* the venv's own site-packages. The wheel
    # itself is installed into the venv, and everything below checks that it is the one used.
    (site_packages / "zz_test_env_dependencies.pth").write_text("\n".join(_test_env_site_dirs()) + "\n")
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--no-deps",
          "--force-reinstall", "-q", str(wheel)], timeout=600)
    assert (site_packages / "flask_lpcall" / "static" / "lpcall" / "vectors.json").is_file()
    assert not (site_packages / "static").exists()  # mapped into the package, not a top-level folder
    # every install requirement of the wheel resolves in the venv
    _run([str(python), "-I", "-c", REQUIREMENTS_RESOLVE], cwd=tmp_path, timeout=120)

    site = tmp_path / "site"
    site.mkdir()
    proc = subprocess.Popen(
        [str(python), "-I", "-c", SERVE], cwd=site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, f"the app did not start: {proc.stderr.read() if proc.stderr else ''}"
        info = json.loads(line)
        assert Path(info["prefix"]).resolve() == venv.resolve()
        for key in ("package", "static", "template"):
            path = Path(info[key]).resolve()
            assert path.is_relative_to(site_packages), (key, path)
            assert not path.is_relative_to(ROOT), (key, path)
        base = f"http://127.0.0.1:{info['port']}"

        def fetch(path: str) -> tuple[int, str, bytes]:
            with urllib.request.urlopen(base + path, timeout=30) as resp:  # loopback only
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()

        installed = Path(info["static"])
        status, ctype, body = fetch("/lpcall/static/lptag.js")
        assert status == 200 and ctype.startswith("text/javascript")
        assert body == (installed / "lptag.js").read_bytes() == (src / "static" / "lptag.js").read_bytes()
        status, ctype, body = fetch("/lpcall/static/lpcall/vectors.json")  # a subfolder of static/
        assert status == 200 and json.loads(body)["vectors"]
        status, ctype, body = fetch("/lpcall/agent/login")  # a page rendered from the packaged templates
        assert status == 200 and ctype.startswith("text/html") and b"<form" in body
        status, ctype, body = fetch("/")
        assert body.count(b"data-lpcall-tag") == 1  # the installed extension tags the site's pages
        # the inlined stub loads the installed bus from its versioned, long-cached URL
        (bus_url,) = re.findall(rb'"(/static/lptag\.js\?v=[0-9a-f]{16})"', body)
        with urllib.request.urlopen(base + "/lpcall" + bus_url.decode(), timeout=30) as resp:  # loopback only
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.read() == (installed / "lptag.js").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
