"""Imports of packages that a part of flask-lpcall needs, with a message that says what to install.

``pip install flask-lpcall`` installs everything the extension, the Python peer and the demo agent
import; the extras add what only some sites need (``[login]``: Flask-Login, ``[serve]``: gunicorn
and gevent). A part whose package is missing fails at import with :class:`MissingDependencyError`,
which names the package and the ``pip install`` line that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: package -> (distribution, the pip line that installs it)
INSTALL_HINTS: dict[str, tuple[str, str]] = {
    "websockets": ("websockets", "pip install --upgrade flask-lpcall (websockets is one of its dependencies)"),
    "aiortc": ("aiortc", "pip install --upgrade flask-lpcall (aiortc is one of its dependencies)"),
    "flask_login": ("Flask-Login", "pip install 'flask-lpcall[login]'"),
    "gevent": ("gevent", "pip install 'flask-lpcall[serve]'"),
    "gunicorn": ("gunicorn", "pip install 'flask-lpcall[serve]'"),
    # an accelerator, not a requirement: without it the Redis store's bus uses redis-py's own parser and packer
    "hiredis": ("hiredis", "pip install 'flask-lpcall[serve]'"),
}


class MissingDependencyError(ImportError):
    """A part of flask-lpcall needs a package that is not installed; the message says how to get it
    (an import-time error of the Python process, never an answer on the wire)."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature`` or raise :class:`MissingDependencyError` naming the install line."""
    top = module.split(".", 1)[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name not in (top, module) and not (exc.name or "").startswith(top + "."):
            raise  # the package is there but broken: its own error says more
        dist, hint = INSTALL_HINTS.get(top, (top, f"pip install {top}"))
        raise MissingDependencyError(f"{feature} needs {dist}, which is not installed: {hint}", name=top) from None
