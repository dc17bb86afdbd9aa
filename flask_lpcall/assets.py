"""Serving the browser code in ``static/`` (inside the wheel: ``flask_lpcall/static``)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory


def static_dir() -> Path:
    """The folder holding the browser code: packaged copy first, source checkout second."""
    packaged = Path(__file__).with_name("static")
    if (packaged / "lptag.js").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "static"


def register(bp: Blueprint) -> None:
    folder = static_dir()

    @bp.get("/static/<path:filename>")
    def lpcall_static(filename: str) -> Response:
        resp = send_from_directory(folder, filename, max_age=3600)
        if filename.endswith(".js"):
            resp.headers["Content-Type"] = "text/javascript; charset=utf-8"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp
