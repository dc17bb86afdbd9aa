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
        gobj = gobj if gobj is not None else g._get_current_object()
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
    return _Injector(state)


class _Injector:
    """The hook of one app (:func:`make_injector`): each step a method, the settings read once."""

    def __init__(self, state: LPCallState) -> None:
        self.state = state
        self.inject_on = bool(state.settings.inject_tag)
        self.nonce_getter = state.settings.csp_nonce
        self.exact, self.starts, self.exempt_all = _exempt_paths(state)
        self.view_exempt: dict[str | None, bool] = {}  # endpoint -> decorated with @exempt
        self.get_request, self.get_g = request._get_current_object, g._get_current_object  # type: ignore[attr-defined]

    def __call__(self, response: Response) -> Response:
        status = response.status_code
        if not self.inject_on or status < 200 or 300 <= status < 400 or status == 204 or response.direct_passthrough:
            return response
        scanned = _scan_headers(response)
        if scanned is None or response.is_streamed:
            return response
        length_at, varies = scanned
        req: Request = self.get_request()
        gvars = self.get_g().__dict__
        if req.method == "HEAD" or gvars.get("_lpcall_tagged") or self._exempt(req):
            return response  # a HEAD, placed by hand with lpcall_tag(), or an exempt page or view
        # Whether the page is tagged depends on where the browser shows it: caches must know. Appended as
        # a header of its own (several Vary headers are one list, RFC 9110), so the site's Vary stays whole.
        if not varies:
            response.headers.add("Vary", "Sec-Fetch-Dest")
        dest = req.environ.get("HTTP_SEC_FETCH_DEST")
        if dest is not None and dest.lower() in _FRAME_DESTINATIONS:
            return response  # the tag belongs in the topmost frame only
        body = _body_of(response)
        pos = _tag_position(body)
        if pos is None:
            return response  # tagged already, or a fragment rather than a document
        nonce = self.nonce_getter() if self.nonce_getter is not None else (
            gvars.get("csp_nonce") or getattr(req, "csp_nonce", None))
        tag = _build_tag(self.state, str(nonce)).encode("utf-8") if nonce else _plain_tag(self.state)
        _set_body(response, b"".join((body[:pos], tag, body[pos:])), length_at)
        return response

    def _exempt(self, req: Request) -> bool:
        """The extension's own pages (agent workspace), ``LPCALL_EXEMPT_PATHS``, and ``@exempt`` views."""
        path = req.path
        if self.exempt_all or path in self.exact or path.startswith(self.starts):
            return True
        rule = req.url_rule
        if rule is None:
            return False
        flagged = self.view_exempt.get(rule.endpoint)
        if flagged is None:
            view = current_app.view_functions.get(rule.endpoint)
            flagged = self.view_exempt[rule.endpoint] = bool(getattr(view, "_lpcall_exempt", False))
        return flagged


def _scan_headers(response: Response) -> tuple[int, bool] | None:
    """One pass over the headers: ``(index of Content-Length or -1, Vary names Sec-Fetch-Dest)``, or None
    unless the response is uncompressed text/html (``name in headers`` would raise a KeyError on a miss)."""
    ctype = None
    varies = False
    length_at = -1
    for i, (name, value) in enumerate(response.headers):
        low = name.lower()
        if low == "content-type":
            ctype = value
        elif low == "content-length":
            length_at = i
        elif low == "content-encoding":
            return None  # compressed already: we cannot splice into it
        elif low == "vary":
            varies = varies or "sec-fetch-dest" in value.lower() or value.strip() == "*"
    if ctype is None or ctype.partition(";")[0].strip().lower() != "text/html":
        return None
    return length_at, varies


def _body_of(response: Response) -> bytes:
    chunks = response.response
    if type(chunks) is list and len(chunks) == 1 and type(chunks[0]) is bytes:
        return chunks[0]  # what Flask makes of a view's str or bytes: no join, no copy
    return response.get_data()


def _tag_position(body: bytes) -> int | None:
    """Where the tag goes: before ``</head>``, else after ``<body>``; None when the page is tagged already
    (by the site's template or a second hook) or is a fragment."""
    if _MARKER_BYTES in body:
        return None
    m = _HEAD_CLOSE.search(body)
    if m:
        return m.start()
    m = _BODY_OPEN.search(body)
    return m.end() if m else None


def _set_body(response: Response, body: bytes, length_at: int) -> None:
    if length_at >= 0 and response.automatically_set_content_length:
        # set_data() without its scan of the headers (Vary was appended: the index still holds)
        response.response = [body]
        response.headers[length_at] = ("Content-Length", str(len(body)))
    else:
        response.set_data(body)


def inject(state: LPCallState, response: Response) -> Response:
    """Tag ``response`` as the ``after_request`` hook of ``state``'s app does (see :func:`make_injector`)."""
    if state.injector is None:
        state.injector = make_injector(state)
    return state.injector(response)
