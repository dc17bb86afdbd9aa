"""Serving the browser code in ``static/`` (inside the wheel: ``flask_lpcall/static``).

A request naming the file's current content hash (``?v=<asset_version(name)>``, as the tag stub asks
for the bus) is cacheable for a year and immutable: a new version has a new URL. Anything else is
cacheable for an hour.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Response, request, send_from_directory
from werkzeug.security import safe_join

#: ``Cache-Control: max-age`` of a versioned asset (a year) and of an unversioned one.
VERSIONED_MAX_AGE = 31536000
MAX_AGE = 3600


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


def register(bp: Blueprint) -> None:
    folder = static_dir()

    @bp.get("/static/<path:filename>")
    def lpcall_static(filename: str) -> Response:
        version = request.args.get("v")
        pinned = version is not None and version == asset_version(filename, folder)
        resp = send_from_directory(folder, filename, max_age=VERSIONED_MAX_AGE if pinned else MAX_AGE)
        if pinned:
            resp.cache_control.public = True
            resp.cache_control.immutable = True
        if filename.endswith(".js"):
            resp.headers["Content-Type"] = "text/javascript; charset=utf-8"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
