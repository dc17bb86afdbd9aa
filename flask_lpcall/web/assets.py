"""Serving the browser code in ``static/`` (inside the wheel: ``flask_lpcall/static``).

Every asset has a versioned URL, ``<prefix>/static/<version>/<file>``, where the version is the
content hash of the whole static tree (:func:`tree_version`): the browser code is plain ES modules
whose relative imports (``./engine.js``) and ``new URL('./x.css', import.meta.url)`` inherit the
version, so one version per deploy covers them all. A request at the current version is cacheable
for a year and immutable (a deploy makes new URLs). An older or unknown version (a page cached
across a deploy) still gets today's file, cacheable for an hour only. The unversioned URL
``<prefix>/static/<file>`` and the tag stub's ``<prefix>/static/lptag.js?v=<asset_version>`` (the
hash of that one file) keep working as before.
"""

from __future__ import annotations

import hashlib
import re
import time
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory, url_for
from werkzeug.security import safe_join

#: ``Cache-Control: max-age`` of a versioned asset (a year) and of an unversioned one.
VERSIONED_MAX_AGE = 31536000
MAX_AGE = 3600
#: A version path segment: 16 hex digits (no folder of ``static/`` looks like that).
_VERSION = re.compile(r"[0-9a-f]{16}")
#: How long a computed tree version is trusted before the files' sizes and times are looked at again.
_TREE_RECHECK_S = 1.0


def static_dir() -> Path:
    """The folder holding the browser code: packaged copy first, source checkout second."""
    package = Path(__file__).resolve().parent.parent  # flask_lpcall/
    packaged = package / "static"
    if (packaged / "lptag.js").is_file():
        return packaged
    return package.parent / "static"


@lru_cache(maxsize=64)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def asset_version(filename: str, folder: Path | None = None) -> str | None:
    """The content hash of ``static/<filename>`` (16 hex digits), or None when there is no such file."""
    path = safe_join(str(folder or static_dir()), filename)
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _digest(path, st.st_mtime_ns, st.st_size)


def _tree_files(folder: Path) -> tuple[tuple[str, str, int, int], ...]:
    """(relative path, absolute path, mtime, size) of every file under ``folder``, sorted."""
    out = []
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            out.append((path.relative_to(folder).as_posix(), str(path), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


@lru_cache(maxsize=8)
def _tree_digest(files: tuple[tuple[str, str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, path, mtime_ns, size in files:
        h.update(f"{rel}\0{_digest(path, mtime_ns, size)}\0".encode())
    return h.hexdigest()[:16]


_tree_checked: dict[str, tuple[float, str]] = {}


def tree_version(folder: Path | None = None) -> str:
    """The content hash of the whole static tree (16 hex digits): the version segment of asset URLs.

    Any file's change (content, a file added or removed) changes it. Recomputed from the files'
    sizes and times at most once a second (a developer's edit shows at once; serving stays cheap).
    """
    folder = folder or static_dir()
    key, now = str(folder), time.monotonic()
    seen = _tree_checked.get(key)
    if seen is None or now - seen[0] > _TREE_RECHECK_S:
        seen = _tree_checked[key] = (now, _tree_digest(_tree_files(folder)))
    return seen[1]


def asset_url(filename: str) -> str:
    """The versioned URL of ``static/<filename>`` (templates: ``lpcall_asset('lpcall/x.css')``)."""
    return url_for("lpcall.lpcall_static", filename=f"{tree_version()}/{filename}")


def _send(folder: Path, filename: str, immutable: bool) -> Response:
    resp = send_from_directory(folder, filename, max_age=VERSIONED_MAX_AGE if immutable else MAX_AGE)
    if immutable:
        resp.cache_control.public = True
        resp.cache_control.immutable = True
    if filename.endswith(".js"):
        resp.headers["Content-Type"] = "text/javascript; charset=utf-8"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def register(bp: Blueprint) -> None:
    folder = static_dir()
    bp.add_app_template_global(asset_url, "lpcall_asset")

    @bp.get("/static/<path:filename>")
    def lpcall_static(filename: str) -> Response:
        head, _, rest = filename.partition("/")
        if rest and _VERSION.fullmatch(head):
            # today's file either way; immutable only at today's version (an older one: a page from before a deploy)
            return _send(folder, rest, immutable=head == tree_version(folder))
        version = request.args.get("v")
        return _send(folder, filename, immutable=version is not None and version == asset_version(filename, folder))
