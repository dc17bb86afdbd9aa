"""One validation contract: static/lpcall/vectors.json through marshmallow and through the JS bus.

Each vector says whether an lpCoBrowse publish is valid and, if not, which field is at fault.
The server (``flask_lpcall.core.schemas``) and the browser (``lpTag.events.publish`` in Chromium,
reading the seed-format console error under ``lpDebug=2``) must both agree with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_lpcall import LPCall
from flask_lpcall.core.schemas import COBROWSE_EVENTS, CoBrowseEventSchema, validate_cobrowse_event
from flask_lpcall.errors import BadFrameError

VECTORS_FILE = Path(__file__).resolve().parent.parent / "static" / "lpcall" / "vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
SEED_ERROR = re.compile(
    r"^\d\d:\d\d:\d\d Events : Error executing (?P<event>\S+) eventId: evId_[0-9a-z]+=(?P<field>\S+) is .+ LEVEL: ERROR$"
)


def _python_verdict(vector: dict[str, Any]) -> tuple[bool, str | None]:
    try:
        validate_cobrowse_event(vector["event"], vector.get("data"))
    except BadFrameError as exc:
        return False, exc.field
    return True, None


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_marshmallow_agrees_with_vector(vector: dict[str, Any]) -> None:
    valid, field = _python_verdict(vector)
    assert valid is vector["valid"]
    assert field == vector.get("field")


def test_vectors_cover_every_rule() -> None:
    """Every schema field, every lpCoBrowse event and both modes appear in the vectors."""
    names = {v["name"] for v in VECTORS}
    assert len(names) == len(VECTORS), "vector names must be unique"
    bad_fields = {v["field"] for v in VECTORS if not v["valid"]}
    schema_fields = set(CoBrowseEventSchema().fields)
    assert schema_fields <= bad_fields, f"no invalid vector for {schema_fields - bad_fields}"
    assert {"data", "event"} <= bad_fields
    assert any(f not in schema_fields | {"data", "event"} for f in bad_fields), "no unknown-field vector"
    assert set(COBROWSE_EVENTS) <= {v["event"] for v in VECTORS if v["valid"]}
    assert {"VOICE_CALL", "VIDEO_CALL"} <= {v["data"]["mode"] for v in VECTORS if v["valid"] and "mode" in (v.get("data") or {})}
    for v in VECTORS:
        assert v["app"] == "lpCoBrowse"
        assert v["valid"] is ("field" not in v)


@pytest.mark.browser
def test_js_bus_agrees_with_vectors(browser: Any, live_server: Any) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "contract"
    LPCall(app)

    @app.get("/")
    def shop_page() -> str:
        return "<!doctype html><html><head><title>contract</title></head><body><p>shop</p></body></html>"

    server = live_server(app)
    context = browser.new_context()
    # The bus alone is under test here: the lazily loaded consumer app is kept out.
    context.route("**/lpcall/consumer.js", lambda route: route.abort())
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto(server.url + "/?lpDebug=2")

    results = page.evaluate(
        """(vectors) => {
        const seen = [];
        lpTag.events.bind({appName: "lpCoBrowse", eventName: "*", func: (data, info) => seen.push(info.eventId)});
        return vectors.map(v => {
          const before = seen.length;
          let threw = null, ret;
          try { ret = "data" in v ? lpTag.events.publish(v.app, v.event, v.data) : lpTag.events.publish(v.app, v.event); }
          catch (e) { threw = String(e); }
          return {ret: ret === undefined ? null : ret, delivered: seen.length - before, threw};
        });
    }""",
        VECTORS,
    )
    assert not [e for e in errors if e.startswith("pageerror")], errors
    bus_errors = [e for e in errors if " Events : " in e]
    assert len(bus_errors) == sum(1 for v in VECTORS if not v["valid"]), errors
    logged = iter(bus_errors)
    for vector, result in zip(VECTORS, results):
        assert result["threw"] is None, (vector["name"], result)
        if vector["valid"]:
            assert result["delivered"] == 1, vector["name"]
            assert isinstance(result["ret"], str) and result["ret"].startswith("evId_"), vector["name"]
        else:
            assert result["delivered"] == 0, vector["name"]
            assert result["ret"] is False, vector["name"]
            m = SEED_ERROR.match(next(logged))
            assert m, vector["name"]
            assert (m["event"], m["field"]) == (vector["event"], vector["field"]), vector["name"]
    # and the server agrees on every one of them
    assert [_python_verdict(v) for v in VECTORS] == [(v["valid"], v.get("field")) for v in VECTORS]
    context.close()
