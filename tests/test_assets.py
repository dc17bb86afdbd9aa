"""Versioned, immutable URLs for the browser code (flask_lpcall/assets.py, issue 15).

``<prefix>/static/<tree version>/<file>``: a year and immutable at the current version; an older or
unknown version (a page cached across a deploy) still gets the file, for an hour; templates and the
tag name the current version.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from flask_lpcall.web import assets
from flask_lpcall.web.assets import tree_version

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "static"


@pytest.fixture
def client() -> Any:
    from example_site.app import create_app

    return create_app(LPCALL_REPORT_DB=":memory:", TESTING=True).test_client()


def test_the_current_version_is_immutable_for_a_year(client: Any) -> None:
    version = tree_version()
    resp = client.get(f"/lpcall/static/{version}/lpcall/consumer.js")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.get_data() == (STATIC / "lpcall" / "consumer.js").read_bytes()
    css = client.get(f"/lpcall/static/{version}/lpcall/lpcall.css")
    assert css.status_code == 200 and "immutable" in css.headers["Cache-Control"]


def test_an_older_version_still_gets_todays_file_for_an_hour(client: Any) -> None:
    """A page cached across a deploy asks for the version it was made with: it keeps working."""
    resp = client.get("/lpcall/static/0123456789abcdef/lpcall/consumer.js")
    assert resp.status_code == 200
    assert resp.get_data() == (STATIC / "lpcall" / "consumer.js").read_bytes()
    assert "immutable" not in resp.headers["Cache-Control"] and "max-age=3600" in resp.headers["Cache-Control"]


def test_versioned_urls_stay_inside_static(client: Any) -> None:
    version = tree_version()
    assert client.get(f"/lpcall/static/{version}/lpcall/nope.js").status_code == 404
    assert client.get(f"/lpcall/static/{version}/../setup.cfg").status_code == 404
    assert client.get(f"/lpcall/static/{version}/%2e%2e/setup.cfg").status_code == 404


def test_the_version_is_the_content_of_the_whole_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "_TREE_RECHECK_S", -1.0)  # look at the files on every call
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    first = tree_version(copy)
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first == tree_version(copy)
    (copy / "lpcall" / "engine.js").write_text("// changed\n", encoding="utf-8")  # a module deep in the graph
    changed = tree_version(copy)
    assert changed != first
    (copy / "lpcall" / "new.css").write_text("", encoding="utf-8")  # a file added
    assert tree_version(copy) not in (first, changed)


def test_pages_and_the_tag_name_the_current_version(client: Any) -> None:
    version = tree_version()
    login = client.get("/lpcall/agent/login").get_data(as_text=True)
    assert f'href="/lpcall/static/{version}/lpcall/lpcall.css"' in login
    netcheck = client.get("/lpcall/netcheck").get_data(as_text=True)
    assert f"/lpcall/static/{version}/lpcall/netcheck.js" in netcheck
    home = client.get("/").get_data(as_text=True)
    config = json.loads(re.search(r"window\.lpCallConfig=(\{.*?\});", home)[1])  # type: ignore[index]
    assert config["v"] == version
    assert "/static/lpcall/" not in login + netcheck  # no unversioned asset left
