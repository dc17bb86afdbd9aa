"""Tag injection rules (flask_lpcall/tag.py): where the tag goes, and every case where it must not."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, g, make_response, render_template_string, request, stream_with_context

from flask_lpcall import LPCall, exempt
from flask_lpcall.web.assets import asset_version, tree_version
from flask_lpcall.web.tag import MARKER, eager_script_source, path_matches

ROOT = Path(__file__).resolve().parent.parent

DOC = "<!doctype html><html><head><title>t</title></head><body><p>hello</p></body></html>"
TAG_RE = re.compile(r"<script data-lpcall-tag(?: nonce=\"([^\"]*)\")?>window\.lpCallConfig=(\{.*?\});\n", re.DOTALL)


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="tag-tests", **config)
    lpcall = LPCall(app)

    @app.route("/page", methods=["GET", "POST"])
    def page() -> str:
        return DOC

    @app.get("/upper")
    def upper() -> str:
        return "<HTML><HEAD><TITLE>t</TITLE></HEAD  ><BODY>x</BODY></HTML>"

    @app.get("/no-head")
    def no_head() -> str:
        return '<!doctype html><html><body class="shop" data-x="1"><p>no head</p></body></html>'

    @app.get("/fragment")
    def fragment() -> str:
        return "<li>an htmx fragment</li>"

    @app.get("/json")
    def json_view() -> Any:
        return {"html": DOC}

    @app.get("/text")
    def text() -> Response:
        return Response(DOC, mimetype="text/plain")

    @app.get("/xhtml")
    def xhtml() -> Response:
        return Response(DOC, mimetype="application/xhtml+xml")

    @app.get("/stream")
    def stream() -> Response:
        def gen() -> Any:
            yield "<!doctype html><html><head><title>s</title>"
            yield "</head><body>streamed</body></html>"

        return Response(stream_with_context(gen()), mimetype="text/html")

    @app.get("/etag")
    def etag() -> Response:
        resp = make_response(DOC)
        resp.set_etag("v1")
        return resp.make_conditional(request)

    @app.get("/redirect")
    def redirect_view() -> Response:
        return Response(DOC, status=302, headers={"Location": "/page"}, mimetype="text/html")

    @app.get("/no-content")
    def no_content() -> Response:
        return Response("", status=204, mimetype="text/html")

    @app.get("/gzipped")
    def gzipped() -> Response:
        return Response(gzip.compress(DOC.encode()), mimetype="text/html", headers={"Content-Encoding": "gzip"})

    @app.get("/pretagged")
    def pretagged() -> str:
        return DOC.replace("</head>", f"<script {MARKER}>/* the site's own copy */</script></head>")

    @app.get("/exempt")
    @exempt
    def exempt_view() -> str:
        return DOC

    @app.get("/exempt-method")
    @lpcall.exempt
    def exempt_method_view() -> str:
        return DOC

    @app.get("/admin")
    @app.get("/admin/users")
    @app.get("/administrator")
    def admin() -> str:
        return DOC

    @app.get("/manual")
    def manual() -> str:
        return render_template_string(
            "<!doctype html><html><head><title>m</title></head><body><main>x</main>{{ lpcall_tag() }}</body></html>"
        )

    @app.get("/g-nonce")
    def g_nonce() -> str:
        g.csp_nonce = "from-g"
        return DOC

    @app.get("/request-nonce")
    def request_nonce() -> str:
        request.csp_nonce = "from-request"  # type: ignore[attr-defined]
        return DOC

    @app.get("/vary")
    def vary() -> Response:
        resp = make_response(DOC)
        resp.headers.add("Vary", "Cookie")
        resp.headers.add("X-After", "1")
        resp.headers.add("Vary", "Accept-Language")
        return resp

    @app.get("/chunks")
    def chunks() -> Response:
        return Response([b"<!doctype html><html><head><title>t</title>", b"</head><body>two chunks</body></html>"],
                        mimetype="text/html")

    @app.get("/error")
    def error() -> Response:
        return Response(DOC, status=500, mimetype="text/html")

    @app.get("/latin1")
    def latin1() -> Response:
        return Response("<html><head><title>caf\u00e9</title></head><body>\u00e9</body></html>".encode("latin-1"),
                        mimetype="text/html", content_type="text/html; charset=iso-8859-1")

    return app


@pytest.fixture
def client() -> Any:
    return make_app().test_client()


def tags_in(body: bytes) -> list[re.Match[str]]:
    return list(TAG_RE.finditer(body.decode("utf-8", "replace")))


def test_tag_goes_once_right_before_head_close(client: Any) -> None:
    resp = client.get("/page")
    body = resp.get_data(as_text=True)
    assert body.count(MARKER) == 1
    head_close = body.index("</head>")
    assert body.index("<script data-lpcall-tag") < head_close
    assert body[:head_close].endswith("</script>")
    assert body.startswith("<!doctype html><html><head><title>t</title><script data-lpcall-tag>")
    assert int(resp.headers["Content-Length"]) == len(resp.get_data())
    (m,) = tags_in(resp.get_data())
    assert json.loads(m[2]) == {"base": "/lpcall", "win": False, "dbg": False, "v": tree_version()}
    assert eager_script_source() in body
    assert client.post("/page").get_data(as_text=True).count(MARKER) == 1  # any method's HTML page


@pytest.mark.parametrize("path", ["/page", "/vary", "/chunks", "/upper", "/no-head"])
def test_the_tagged_body_and_its_headers_agree(client: Any, path: str) -> None:
    resp = client.get(path)
    data = resp.get_data()
    assert data.count(MARKER.encode()) == 1
    assert resp.headers.getlist("Content-Length") == [str(len(data))]
    assert resp.headers.get("Content-Type") == "text/html; charset=utf-8"
    vary = {v.strip() for value in resp.headers.getlist("Vary") for v in value.split(",")}
    assert "Sec-Fetch-Dest" in vary
    if path == "/vary":
        assert {"Cookie", "Accept-Language"} <= vary and resp.headers["X-After"] == "1"  # the site's Vary kept
        framed = client.get("/vary", headers={"Sec-Fetch-Dest": "iframe"})
        assert framed.headers.getlist("Vary") == ["Cookie", "Accept-Language", "Sec-Fetch-Dest"]


def test_head_close_is_found_in_any_case_and_spacing(client: Any) -> None:
    body = client.get("/upper").get_data(as_text=True)
    assert body.count(MARKER) == 1 and body.index(MARKER) < body.index("</HEAD  >")


def test_without_head_the_tag_opens_the_body(client: Any) -> None:
    body = client.get("/no-head").get_data(as_text=True)
    assert body.count(MARKER) == 1
    assert '<body class="shop" data-x="1"><script data-lpcall-tag>' in body


@pytest.mark.parametrize("path", ["/fragment", "/json", "/text", "/xhtml", "/redirect", "/no-content", "/gzipped"])
def test_no_tag_where_there_is_no_html_document(client: Any, path: str) -> None:
    resp = client.get(path)
    assert MARKER.encode() not in resp.get_data()
    if path == "/gzipped":
        assert gzip.decompress(resp.get_data()).decode() == DOC  # bytes untouched


def test_streamed_responses_are_not_buffered_or_tagged(client: Any) -> None:
    resp = client.get("/stream")
    assert resp.is_streamed
    body = resp.get_data(as_text=True)
    assert "streamed" in body and MARKER not in body


def test_head_requests_are_not_tagged(client: Any) -> None:
    resp = client.head("/page")
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(DOC)  # the untouched page


def test_not_modified_responses_are_not_tagged(client: Any) -> None:
    assert client.get("/etag").get_data(as_text=True).count(MARKER) == 1
    resp = client.get("/etag", headers={"If-None-Match": '"v1"'})
    assert resp.status_code == 304 and resp.get_data() == b""


def test_an_already_tagged_page_is_left_alone(client: Any) -> None:
    body = client.get("/pretagged").get_data(as_text=True)
    assert body.count(MARKER) == 1 and "the site's own copy" in body


def test_error_pages_are_pages_too(client: Any) -> None:
    assert client.get("/error").get_data(as_text=True).count(MARKER) == 1


@pytest.mark.parametrize("path", ["/exempt", "/exempt-method"])
def test_exempt_decorator(client: Any, path: str) -> None:
    assert MARKER not in client.get(path).get_data(as_text=True)


def test_exempt_paths_match_whole_segments() -> None:
    client = make_app(LPCALL_EXEMPT_PATHS=["/admin"]).test_client()
    assert MARKER not in client.get("/admin").get_data(as_text=True)
    assert MARKER not in client.get("/admin/users").get_data(as_text=True)
    assert MARKER in client.get("/administrator").get_data(as_text=True)
    assert MARKER in client.get("/page").get_data(as_text=True)
    assert path_matches("/a/b", "/a/") and path_matches("/anything", "/") and not path_matches("/ab", "/a")


def test_extension_pages_are_not_brand_pages() -> None:
    app = make_app(LPCALL_URL_PREFIX="/help-desk")

    @app.get("/help-desk-info")
    def lookalike() -> str:
        return DOC

    @app.get("/help-desk/own-page")
    def own_page() -> str:
        return DOC

    client = app.test_client()
    assert MARKER not in client.get("/help-desk/own-page").get_data(as_text=True)
    assert MARKER in client.get("/help-desk-info").get_data(as_text=True)
    (m,) = tags_in(client.get("/page").get_data())
    assert json.loads(m[2])["base"] == "/help-desk"


def test_manual_tag_is_placed_where_the_template_says_and_only_once(client: Any) -> None:
    body = client.get("/manual").get_data(as_text=True)
    assert body.count(MARKER) == 1
    assert body.index("</main>") < body.index(MARKER) < body.index("</body>")
    assert MARKER in client.get("/page").get_data(as_text=True)  # the flag does not leak into the next request


def test_inject_off_leaves_only_manual_tags() -> None:
    client = make_app(LPCALL_INJECT_TAG=False).test_client()
    assert MARKER not in client.get("/page").get_data(as_text=True)
    assert client.get("/manual").get_data(as_text=True).count(MARKER) == 1


@pytest.mark.parametrize("dest", ["iframe", "frame", "embed", "object", "IFRAME"])
def test_frames_get_no_tag(client: Any, dest: str) -> None:
    resp = client.get("/page", headers={"Sec-Fetch-Dest": dest})
    assert MARKER not in resp.get_data(as_text=True)
    assert "Sec-Fetch-Dest" in resp.headers["Vary"]


def test_top_level_documents_get_the_tag_and_vary_on_the_destination(client: Any) -> None:
    for headers in ({"Sec-Fetch-Dest": "document"}, {}):
        resp = client.get("/page", headers=headers)
        assert resp.get_data(as_text=True).count(MARKER) == 1
        assert "Sec-Fetch-Dest" in resp.headers["Vary"]


def test_csp_nonce_from_config_callable() -> None:
    client = make_app(LPCALL_CSP_NONCE=lambda: 'n"1<').test_client()
    (m,) = tags_in(client.get("/page").get_data())
    assert m[1] == "n&#34;1&lt;"  # escaped into the attribute
    client = make_app(LPCALL_CSP_NONCE=lambda: None).test_client()
    (m,) = tags_in(client.get("/g-nonce").get_data())
    assert m[1] is None  # the callable decides, even when g has one


@pytest.mark.parametrize(("path", "nonce"), [("/g-nonce", "from-g"), ("/request-nonce", "from-request"), ("/page", None)])
def test_csp_nonce_from_g_or_request(client: Any, path: str, nonce: str | None) -> None:
    (m,) = tags_in(client.get(path).get_data())
    assert m[1] == nonce


def test_manual_tag_carries_the_nonce_too() -> None:
    client = make_app(LPCALL_CSP_NONCE=lambda: "abc").test_client()
    assert '<script data-lpcall-tag nonce="abc">' in client.get("/manual").get_data(as_text=True)


def test_debug_and_engagement_window_reach_the_page_config() -> None:
    client = make_app(LPCALL_DEBUG=True, LPCALL_ENGAGEMENT_WINDOW=True).test_client()
    (m,) = tags_in(client.get("/page").get_data())
    assert json.loads(m[2]) == {"base": "/lpcall", "win": True, "dbg": True, "v": tree_version()}


def test_eager_source_is_safe_to_inline_in_any_page(client: Any) -> None:
    src = eager_script_source()
    assert src.isascii()  # pages in any charset get the same bytes
    assert "</script" not in src.lower() and "<!--" not in src
    body = client.get("/latin1").get_data()
    assert body.count(MARKER.encode()) == 1 and "café".encode("latin-1") in body


def test_the_tag_is_served_as_a_file_too(client: Any) -> None:
    resp = client.get("/lpcall/static/lptag.js")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert resp.get_data(as_text=True) == (ROOT / "static" / "lptag.js").read_text(encoding="utf-8")


def test_inlined_source_is_the_stub_file_without_comment_lines_and_indentation() -> None:
    original = (ROOT / "static" / "lptag-stub.js").read_text(encoding="utf-8")
    inlined = eager_script_source()
    code_lines = [line.strip() for line in original.splitlines() if line.strip() and not line.strip().startswith("//")]
    code_lines = code_lines[code_lines.index("(function (w, d) {"):]  # after the header comment
    version = hashlib.sha256((ROOT / "static" / "lptag.js").read_bytes()).hexdigest()[:16]
    code_lines = [line.replace("@V@", version) for line in code_lines]
    assert [line for line in inlined.splitlines() if line] == code_lines  # same code, same order, same lines
    assert f'"/static/lptag.js?v={version}"' in inlined  # the bus it loads, named by its content


def test_the_eager_tag_is_a_small_stub(client: Any) -> None:
    """Config + stub: well under 1 KB per page; the bus (static/lptag.js) is not inlined."""
    body = client.get("/page").get_data(as_text=True)
    (tag,) = re.findall(r"<script data-lpcall-tag.*?</script>", body, flags=re.DOTALL)
    assert len(tag.encode()) < 1024
    assert "HISTORY_MAX" not in tag and "lpCoBrowse" not in tag


def test_the_bus_is_long_cached_only_at_its_current_version(client: Any) -> None:
    version = hashlib.sha256((ROOT / "static" / "lptag.js").read_bytes()).hexdigest()[:16]
    assert asset_version("lptag.js") == version and asset_version("nope.js") is None
    assert asset_version("../setup.cfg") is None  # never outside static/
    pinned = client.get(f"/lpcall/static/lptag.js?v={version}")
    assert pinned.status_code == 200
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert pinned.get_data() == (ROOT / "static" / "lptag.js").read_bytes()
    for url in ("/lpcall/static/lptag.js", "/lpcall/static/lptag.js?v=0000000000000000"):
        resp = client.get(url)  # no version, or one that is not the file's: an hour, revalidated after
        assert resp.status_code == 200 and "immutable" not in resp.headers["Cache-Control"]
        assert "max-age=3600" in resp.headers["Cache-Control"]
    assert client.get("/lpcall/static/nope.js?v=x").status_code == 404
