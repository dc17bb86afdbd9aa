"""Errors of flask-lpcall, each with a stable ``code`` (like simple-peer's ``err.code``)."""

from __future__ import annotations

from .protocol import ERROR_CODES


class LPCallError(Exception):
    """Base class. ``code`` is stable and machine-readable; the message is for people."""

    code = "LPCALL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.field = field

    def to_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": str(self)}
        if self.field:
            out["field"] = self.field
        return out


class ConfigError(LPCallError, ValueError):
    """A ``LPCALL_*`` key has a wrong type or value. Raised by ``init_app``."""

    code = "CONFIG_ERROR"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}", field=key)
        self.key = key


class InvalidStateError(LPCallError):
    """An illegal call-state transition (named after the DOM exception)."""

    code = "INVALID_STATE"


class NotAllowedError(LPCallError):
    """The caller may not do this (permission, switch, not its conversation)."""

    code = "NOT_ALLOWED"


class NotFoundError(LPCallError):
    """Unknown conversation, call or id."""

    code = "NOT_FOUND"


class BadFrameError(LPCallError):
    """A frame or payload failed validation; ``field`` names the bad field."""

    code = "BAD_FRAME"


class StoreUnavailableError(LPCallError):
    """The store (e.g. Redis) cannot be reached right now."""

    code = "STORE_UNAVAILABLE"


class TooLargeError(LPCallError):
    """A frame or message is over its configured limit (answered with 413)."""

    code = "TOO_LARGE"


class NotImplementedYetError(LPCallError):
    """A capability that is not installed on this server (answered with 501)."""

    code = "NOT_IMPLEMENTED"


def http_status(exc: LPCallError) -> int:
    """The HTTP status (and socket error-frame ``code``) that answers ``exc``: the registry's, else by class."""
    entry = ERROR_CODES.get(exc.code)
    if entry is not None:
        return entry.status
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, NotImplementedYetError):
        return 501
    if isinstance(exc, StoreUnavailableError):
        return 503
    if isinstance(exc, NotAllowedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidStateError):
        return 409
    return 400
