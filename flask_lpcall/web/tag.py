"""The tag: building the eager ``<script>`` and injecting it into HTML responses."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Request, Response, current_app, g, request
from markupsafe import Markup, escape

from .assets import asset_version, static_dir, tree_version

if TYPE_CHECKING:
    from ..state import LPCallState

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


#: The inlined stub (``static/lptag-stub.js``) and the bus it loads asynchronously (``static/lptag.js``).
STUB_FILE = "lptag-stub.js"
BUS_FILE = "lptag.js"


def minify(source: str) -> str:
    """A script without its leading block comment, comment lines and indentation.

    Nothing else changes (no renaming, line breaks kept), so it reads the same in the browser's devtools.
    """
    source = _LEADING_BLOCK_COMMENT.sub("", source)
    source = _COMMENT_LINE.sub("", source)
    return _INDENT.sub("", source)


def eager_script_source() -> str:
    """The eager part as inlined into every page: the stub ``static/lptag-stub.js``, minified.

    Every page carries it, so its bytes count (benchmarks/bench_tag.py). It queues ``lpTag.events``
    calls and loads the full bus from ``<prefix>/static/lptag.js?v=<content hash>`` (long-cached:
    assets.py), whose version it names here.
    """
    source = (static_dir() / STUB_FILE).read_text(encoding="utf-8")
    return minify(source).replace("@V@", asset_version(BUS_FILE) or "")


def client_config(state: LPCallState) -> dict[str, Any]:
    """The few settings the eager part needs; everything else is fetched lazily.

    ``v``: the version segment of the browser code's URLs (assets.tree_version): the bus imports
    ``<base>/static/<v>/lpcall/consumer.js``, whose relative imports inherit it.
    """
    s = state.settings
    return {
        "base": state.url_prefix,
        "win": bool(s.engagement_window),
        "dbg": bool(s.debug),
        "v": tree_version(),
    }


def _nonce(state: LPCallState, gobj: Any = None, req: Request | None = None) -> str | None:
    getter = state.settings.csp_nonce
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


def _plain_tag(state: LPCallState) -> bytes:
    """The nonce-less tag as UTF-8, built once per app (again if what it is built from changes)."""
    s = state.settings
    key = (state.url_prefix, s.engagement_window, s.debug, state.eager_js, tree_version())
    tag = state.tag_cache.get(key)
    if tag is None:
        state.tag_cache.clear()
        tag = state.tag_cache[key] = _build_tag(state, None).encode("utf-8")
    return tag


def _tag_bytes(state: LPCallState, gobj: Any = None, req: Request | None = None) -> bytes:
    """The tag for the current request as UTF-8."""
    nonce = _nonce(state, gobj, req)
    return _build_tag(state, nonce).encode("utf-8") if nonce else _plain_tag(state)


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


def _exempt_paths(state: LPCallState) -> tuple[frozenset[str], tuple[str, ...], bool]:
    """The extension's prefix and ``LPCALL_EXEMPT_PATHS`` as (exact paths, path starts, everything)."""
    prefixes = [state.url_prefix, *state.settings.exempt_paths]
    starts = tuple(p if p.endswith("/") else p + "/" for p in prefixes)
    return frozenset(prefixes), starts, "/" in prefixes


def make_injector(state: LPCallState) -> Callable[[Response], Response]:
    """The ``after_request`` hook: add the tag once to a full, buffered text/html document.

    It runs on every response, so what only depends on the settings (read once, at ``init_app``) is
    computed here, the cheap and most selective checks come first, and the request, ``g`` and the
    headers are each looked up once (one pass over the headers, no list copy).
    """
    settings = state.settings
    inject_on = bool(settings.inject_tag)
    nonce_getter = settings.csp_nonce
    exact, starts, exempt_all = _exempt_paths(state)
    view_exempt: dict[str | None, bool] = {}  # endpoint -> decorated with @exempt
    head_close, body_open, marker, frames = _HEAD_CLOSE.search, _BODY_OPEN.search, _MARKER_BYTES, _FRAME_DESTINATIONS
    get_request, get_g = request._get_current_object, g._get_current_object  # type: ignore[attr-defined]

    def inject(response: Response) -> Response:
        status = response.status_code
        if not inject_on or status < 200 or 300 <= status < 400 or status == 204 or response.direct_passthrough:
            return response
        headers = response.headers
        ctype = None
        varies = False  # a Vary header names Sec-Fetch-Dest already (or is "*")
        length_at = -1  # index of the Content-Length header
        for i, (name, value) in enumerate(headers):  # one pass; `name in headers` raises a KeyError on a miss
            low = name.lower()
            if low == "content-type":
                ctype = value
            elif low == "content-length":
                length_at = i
            elif low == "content-encoding":
                return response  # compressed already: we cannot splice into it
            elif low == "vary":
                varies = varies or "sec-fetch-dest" in value.lower() or value.strip() == "*"
        if ctype is None or ctype.partition(";")[0].strip().lower() != "text/html" or response.is_streamed:
            return response
        req: Request = get_request()
        if req.method == "HEAD":
            return response
        gobj = get_g()
        gvars = gobj.__dict__
        if gvars.get("_lpcall_tagged"):
            return response  # placed by hand with lpcall_tag()
        path = req.path
        if exempt_all or path in exact or path.startswith(starts):
            return response  # the extension's own pages (agent workspace), LPCALL_EXEMPT_PATHS
        rule = req.url_rule
        if rule is not None:
            endpoint = rule.endpoint
            flagged = view_exempt.get(endpoint)
            if flagged is None:
                view = current_app.view_functions.get(endpoint)
                flagged = view_exempt[endpoint] = bool(getattr(view, "_lpcall_exempt", False))
            if flagged:
                return response
        # Whether the page is tagged depends on where the browser shows it: caches must know. Appended as
        # a header of its own (several Vary headers are one list, RFC 9110), so the site's Vary stays whole.
        if not varies:
            headers.add("Vary", "Sec-Fetch-Dest")
        dest = req.environ.get("HTTP_SEC_FETCH_DEST")
        if dest is not None and dest.lower() in frames:
            return response  # the tag belongs in the topmost frame only
        chunks = response.response
        if type(chunks) is list and len(chunks) == 1 and type(chunks[0]) is bytes:
            body = chunks[0]  # what Flask makes of a view's str or bytes: no join, no copy
        else:
            body = response.get_data()
        if marker in body:
            return response  # tagged already (by the site's template or a second hook)
        m = head_close(body)
        if m:
            pos = m.start()
        else:
            m = body_open(body)
            if not m:
                return response  # a fragment, not a document: nothing to tag
            pos = m.end()
        if nonce_getter is not None:
            nonce = nonce_getter()
        else:
            nonce = gvars.get("csp_nonce") or getattr(req, "csp_nonce", None)
        tag = _build_tag(state, str(nonce)).encode("utf-8") if nonce else _plain_tag(state)
        body = b"".join((body[:pos], tag, body[pos:]))
        if length_at >= 0 and response.automatically_set_content_length:
            # set_data() without its scan of the headers (Vary was appended: the index still holds)
            response.response = [body]
            headers[length_at] = ("Content-Length", str(len(body)))
        else:
            response.set_data(body)
        return response

    return inject


def inject(state: LPCallState, response: Response) -> Response:
    """Tag ``response`` as the ``after_request`` hook of ``state``'s app does (see :func:`make_injector`)."""
    if state.injector is None:
        state.injector = make_injector(state)
    return state.injector(response)
