"""The tag: building the eager ``<script>`` and injecting it into HTML responses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Request, Response, current_app, g, request
from markupsafe import Markup, escape

from .assets import static_dir

if TYPE_CHECKING:
    from .extension import LPCallState

#: Attribute that marks a page as tagged; its presence prevents a second tag.
MARKER = "data-lpcall-tag"
_MARKER_BYTES = MARKER.encode()
_HEAD_CLOSE = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_OPEN = re.compile(rb"<body(?:\s[^>]*)?>", re.IGNORECASE)
_FRAME_DESTINATIONS = {"iframe", "frame", "embed", "object", "fencedframe"}

F = TypeVar("F", bound=Callable[..., Any])


def exempt(view: F) -> F:
    """Decorator: never inject the tag into this view's responses."""
    view._lpcall_exempt = True  # type: ignore[attr-defined]
    return view


_COMMENT_LINE = re.compile(r"^[ \t]*//[^\n]*\n", re.MULTILINE)
_LEADING_BLOCK_COMMENT = re.compile(r"\A/\*.*?\*/\n", re.DOTALL)
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)


def eager_script_source() -> str:
    """The eager part as inlined into every page: ``static/lptag.js`` without its comments and indentation.

    Nothing else changes (no renaming, line breaks kept), so it reads the same in the browser's
    devtools; every page carries it, so its bytes count (benchmarks/bench_tag.py). The file itself,
    comments included, is served at ``<prefix>/static/lptag.js``.
    """
    source = (static_dir() / "lptag.js").read_text(encoding="utf-8")
    source = _LEADING_BLOCK_COMMENT.sub("", source)
    source = _COMMENT_LINE.sub("", source)
    return _INDENT.sub("", source)


def client_config(state: LPCallState) -> dict[str, Any]:
    """The few settings the eager part needs; everything else is fetched lazily."""
    s = state.settings
    return {
        "base": state.url_prefix,
        "win": bool(s["LPCALL_ENGAGEMENT_WINDOW"]),
        "dbg": bool(s["LPCALL_DEBUG"]),
    }


def _nonce(state: LPCallState, gobj: Any = None, req: Request | None = None) -> str | None:
    getter = state.settings["LPCALL_CSP_NONCE"]
    if getter is not None:
        value = getter()
    else:
        gobj = gobj if gobj is not None else g._get_current_object()  # type: ignore[attr-defined]
        req = req if req is not None else request._get_current_object()  # type: ignore[attr-defined]
        value = gobj.get("csp_nonce") or getattr(req, "csp_nonce", None)
    return str(value) if value else None


def _build_tag(state: LPCallState, nonce: str | None) -> str:
    config = json.dumps(client_config(state), separators=(",", ":")).replace("</", "<\\/")
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    return f"<script {MARKER}{nonce_attr}>window.lpCallConfig={config};\n{state.eager_js}</script>"


def _tag_bytes(state: LPCallState, gobj: Any = None, req: Request | None = None) -> bytes:
    """The tag for the current request as UTF-8; built once per app when there is no nonce."""
    nonce = _nonce(state, gobj, req)
    if nonce:
        return _build_tag(state, nonce).encode("utf-8")
    s = state.settings
    key = (state.url_prefix, s["LPCALL_ENGAGEMENT_WINDOW"], s["LPCALL_DEBUG"], state.eager_js)
    tag = state.tag_cache.get(key)
    if tag is None:
        state.tag_cache.clear()
        tag = state.tag_cache[key] = _build_tag(state, None).encode("utf-8")
    return tag


def tag_html(state: LPCallState) -> str:
    """The complete tag for the current request (nonce included)."""
    return _tag_bytes(state).decode("utf-8")


def manual_tag(state: LPCallState) -> Markup:
    """Jinja global ``lpcall_tag()``: place the tag by hand (no second injection)."""
    g._lpcall_tagged = True
    return Markup(tag_html(state))


def path_matches(path: str, prefix: str) -> bool:
    """``prefix`` covers ``path`` segment-wise: '/admin' covers '/admin' and '/admin/x', not '/administrator'."""
    if path == prefix or prefix == "/":
        return True
    return path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _is_exempt(state: LPCallState, req: Request, gobj: Any) -> bool:
    if gobj.get("_lpcall_tagged"):
        return True  # placed by hand with lpcall_tag()
    path = req.path
    if path_matches(path, state.url_prefix):
        return True  # the extension's own pages (agent workspace) are not brand pages
    for prefix in state.settings["LPCALL_EXEMPT_PATHS"]:
        if path_matches(path, prefix):
            return True
    rule = req.url_rule
    if rule is not None:
        view = current_app.view_functions.get(rule.endpoint)
        if view is not None and getattr(view, "_lpcall_exempt", False):
            return True
    return False


def _in_frame(req: Request) -> bool:
    """The tag belongs in the topmost frame only (seed: "deployed in the topmost frame")."""
    dest = req.environ.get("HTTP_SEC_FETCH_DEST")
    return dest is not None and dest.lower() in _FRAME_DESTINATIONS


def inject(state: LPCallState, response: Response) -> Response:
    """``after_request`` hook: add the tag once to a full, buffered text/html document.

    It runs on every response, so the cheap and most selective checks come first and the
    request, ``g`` and the headers are each looked up once.
    """
    status = response.status_code
    if (
        not state.settings["LPCALL_INJECT_TAG"]
        or status < 200
        or 300 <= status < 400
        or status in (204, 304)
        or response.is_streamed
        or response.direct_passthrough
        or response.mimetype != "text/html"
    ):
        return response
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    if req.method == "HEAD":
        return response
    headers = response.headers
    has_vary = False
    for name, _ in headers.to_wsgi_list():  # one pass; `name in headers` raises a KeyError on a miss
        low = name.lower()
        if low == "content-encoding":
            return response  # compressed already: we cannot splice into it
        has_vary = has_vary or low == "vary"
    gobj = g._get_current_object()  # type: ignore[attr-defined]
    if _is_exempt(state, req, gobj):
        return response
    # Whether the page is tagged depends on where the browser shows it: caches must know.
    if has_vary:
        response.vary.add("Sec-Fetch-Dest")
    else:
        headers.add("Vary", "Sec-Fetch-Dest")  # none yet: append, no scan
    if _in_frame(req):
        return response
    body = response.get_data()
    if _MARKER_BYTES in body:
        return response  # tagged already (by the site's template or a second hook)
    tag = _tag_bytes(state, gobj, req)
    m = _HEAD_CLOSE.search(body)
    if m:
        pos = m.start()
    else:
        m = _BODY_OPEN.search(body)
        if not m:
            return response  # a fragment, not a document: nothing to tag
        pos = m.end()
    response.set_data(body[:pos] + tag + body[pos:])
    return response
