"""The tag: building the eager ``<script>`` and injecting it into HTML responses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Response, g, request
from markupsafe import Markup, escape

from .assets import static_dir

if TYPE_CHECKING:
    from .extension import LPCallState

#: Attribute that marks a page as tagged; its presence prevents a second tag.
MARKER = "data-lpcall-tag"
_MARKER_BYTES = MARKER.encode()
_HEAD_CLOSE = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_OPEN = re.compile(rb"<body(?:\s[^>]*)?>", re.IGNORECASE)

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


def _is_exempt(state: LPCallState) -> bool:
    if g.get("_lpcall_tagged"):
        return True
    path = request.path
    if path.startswith(state.url_prefix + "/") or path == state.url_prefix:
        return True  # the extension's own pages (agent workspace) are not brand pages
    if any(path.startswith(p) for p in state.settings["LPCALL_EXEMPT_PATHS"]):
        return True
    endpoint = request.endpoint
    if endpoint:
        from flask import current_app

        view = current_app.view_functions.get(endpoint)
        if view is not None and getattr(view, "_lpcall_exempt", False):
            return True
    # The tag belongs in the topmost frame only (seed: "deployed in the topmost frame").
    return request.headers.get("Sec-Fetch-Dest", "document") in {"iframe", "frame", "embed", "object"}


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
    body = response.get_data()
    if _MARKER_BYTES in body:
        return response
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
