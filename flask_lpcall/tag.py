"""The tag: building the eager ``<script>`` and injecting it into HTML responses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Response, current_app, g, request
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
        value = g.get("csp_nonce") or getattr(request, "csp_nonce", None)
    return str(value) if value else None


def tag_html(state: LPCallState) -> str:
    """The complete tag for the current request (nonce included)."""
    config = json.dumps(client_config(state), separators=(",", ":")).replace("</", "<\\/")
    nonce = _nonce(state)
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    return f"<script {MARKER}{nonce_attr}>window.lpCallConfig={config};\n{state.eager_js}</script>"


def manual_tag(state: LPCallState) -> Markup:
    """Jinja global ``lpcall_tag()``: place the tag by hand (no second injection)."""
    g._lpcall_tagged = True
    return Markup(tag_html(state))


def path_matches(path: str, prefix: str) -> bool:
    """``prefix`` covers ``path`` segment-wise: '/admin' covers '/admin' and '/admin/x', not '/administrator'."""
    if path == prefix or prefix == "/":
        return True
    return path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _is_exempt(state: LPCallState) -> bool:
    if g.get("_lpcall_tagged"):
        return True  # placed by hand with lpcall_tag()
    path = request.path
    if path_matches(path, state.url_prefix):
        return True  # the extension's own pages (agent workspace) are not brand pages
    if any(path_matches(path, p) for p in state.settings["LPCALL_EXEMPT_PATHS"]):
        return True
    endpoint = request.endpoint
    if endpoint:
        view = current_app.view_functions.get(endpoint)
        if view is not None and getattr(view, "_lpcall_exempt", False):
            return True
    return False


def _in_frame() -> bool:
    """The tag belongs in the topmost frame only (seed: "deployed in the topmost frame")."""
    return request.headers.get("Sec-Fetch-Dest", "document").lower() in _FRAME_DESTINATIONS


def inject(state: LPCallState, response: Response) -> Response:
    """``after_request`` hook: add the tag once to a full, buffered text/html document."""
    if (
        not state.settings["LPCALL_INJECT_TAG"]
        or response.mimetype != "text/html"
        or request.method == "HEAD"
        or response.status_code < 200
        or response.status_code in (204, 304)
        or 300 <= response.status_code < 400
        or response.is_streamed
        or response.direct_passthrough
        or response.headers.get("Content-Encoding")
        or _is_exempt(state)
    ):
        return response
    # Whether the page is tagged depends on where the browser shows it: caches must know.
    response.vary.add("Sec-Fetch-Dest")
    if _in_frame():
        return response
    body = response.get_data()
    if _MARKER_BYTES in body:
        return response  # tagged already (by the site's template or a second hook)
    tag = tag_html(state).encode("utf-8")
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
