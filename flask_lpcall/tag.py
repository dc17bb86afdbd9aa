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


def eager_script_source() -> str:
    """The eager part, read once: the lpTag bus, monitoring SDK and lazy loader."""
    return (static_dir() / "lptag.js").read_text(encoding="utf-8")


def client_config(state: LPCallState) -> dict[str, Any]:
    """The few settings the eager part needs; everything else is fetched lazily."""
    s = state.settings
    return {
        "base": state.url_prefix,
        "win": bool(s["LPCALL_ENGAGEMENT_WINDOW"]),
        "dbg": bool(s["LPCALL_DEBUG"]),
    }


def _nonce(state: LPCallState) -> str | None:
    getter = state.settings["LPCALL_CSP_NONCE"]
    if getter is not None:
        value = getter()
    else:
        value = g.get("csp_nonce") or getattr(request._get_current_object(), "csp_nonce", None)  # type: ignore[attr-defined]
    return str(value) if value else None


def _build_tag(state: LPCallState, nonce: str | None) -> str:
    config = json.dumps(client_config(state), separators=(",", ":")).replace("</", "<\\/")
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    return f"<script {MARKER}{nonce_attr}>window.lpCallConfig={config};\n{state.eager_js}</script>"


def _tag_bytes(state: LPCallState) -> bytes:
    """The tag for the current request as UTF-8; built once per app when there is no nonce."""
    nonce = _nonce(state)
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


def _is_exempt(state: LPCallState, req: Request) -> bool:
    if g.get("_lpcall_tagged"):
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
    """``after_request`` hook: add the tag once to a full, buffered text/html document."""
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    status = response.status_code
    headers = response.headers
    if (
        not state.settings["LPCALL_INJECT_TAG"]
        or response.mimetype != "text/html"
        or req.method == "HEAD"
        or status < 200
        or status in (204, 304)
        or 300 <= status < 400
        or response.is_streamed
        or response.direct_passthrough
        or headers.getlist("Content-Encoding")  # getlist: a miss raises nothing (`in` builds a KeyError)
        or _is_exempt(state, req)
    ):
        return response
    # Whether the page is tagged depends on where the browser shows it: caches must know.
    if headers.getlist("Vary"):
        response.vary.add("Sec-Fetch-Dest")
    else:
        headers["Vary"] = "Sec-Fetch-Dest"
    if _in_frame(req):
        return response
    body = response.get_data()
    if _MARKER_BYTES in body:
        return response  # tagged already (by the site's template or a second hook)
    tag = _tag_bytes(state)
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
