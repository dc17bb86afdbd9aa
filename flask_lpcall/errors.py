"""Errors of flask-lpcall, each with a stable ``code`` (like simple-peer's ``err.code``)."""

from __future__ import annotations

from dataclasses import dataclass

#: The error ids of the ``cobrowse``/``sessionError`` event (seed 003), verbatim.
SESSION_ERROR_IDS = ("UNABLE_TO_CONNECT", "BROWSER_NOT_SUPPORTED", "NO_CAMERA_ACCESS", "AGENT_DISCONNECTED")


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


@dataclass(frozen=True)
class ErrorCode:
    """One entry of the registry: the wire ``code``, the HTTP status (and the ``code`` of a socket's
    error response) that carries it, and what it means."""

    code: str
    status: int
    meaning: str


#: Every error ``code`` the server answers with, on the sockets and the JSON APIs (PROTOCOL.md
#: "Error codes" is generated from this table; tests/test_hardening.py keeps the two equal).
ERROR_CODES: dict[str, ErrorCode] = {
    e.code: e
    for e in (
        ErrorCode("BAD_FRAME", 400, "a frame or request body failed validation (not JSON, nested too deeply, an "
                  "integer beyond \u00b1(2^53-1), a lone surrogate, a wrong type or value); `field` names it"),
        ErrorCode("TOO_LARGE", 413, "over a size limit: a frame or body over `LPCALL_MAX_FRAME_BYTES` (UTF-8 "
                  "bytes, field `(frame)`/`(body)`), a message over `LPCALL_MAX_MESSAGE_LENGTH`"),
        ErrorCode("METHOD_NOT_ALLOWED", 405, "the JSON endpoint does not take this HTTP method"),
        ErrorCode("NOT_AUTHENTICATED", 401, "no identity yet: InitConnection first, or log in to the workspace"),
        ErrorCode("TOKEN_INVALID", 401, "a token that is missing, malformed, forged or for another purpose"),
        ErrorCode("TOKEN_EXPIRED", 401, "a token older than its TTL"),
        ErrorCode("NOT_ALLOWED", 403, "the caller may not do this (not its conversation or call, wrong role)"),
        ErrorCode("NOT_ASSIGNED", 403, "the conversation is not (or no longer) this agent's"),
        ErrorCode("NO_PERMISSION", 403, "the agent's profile lacks the permission for this call mode"),
        ErrorCode("MODE_DISABLED", 403, "the call mode is switched off site-wide"),
        ErrorCode("NO_COBROWSE", 403, "the visitor's window did not declare `CO_BROWSE`"),
        ErrorCode("CALL_IN_PROGRESS", 403, "the conversation already has an open call"),
        ErrorCode("CALL_ENDED", 403, "joining a call that is over"),
        ErrorCode("CALL_IN_OTHER_TAB", 403, "another browser tab holds this role of the call"),
        ErrorCode("NOT_ACCEPTED", 403, "a listening consumer's media frame before its `accept`"),
        ErrorCode("NOT_FOUND", 404, "unknown conversation, call, check or id"),
        ErrorCode("INVALID_STATE", 409, "the conversation or call is not in a state that allows this"),
        ErrorCode("NOT_IMPLEMENTED", 501, "the capability is not installed on this server"),
        ErrorCode("STORE_UNAVAILABLE", 503, "the store (Redis) cannot be reached right now; retry"),
        ErrorCode("BUSY", 503, "too many network checks at once; retry"),
        ErrorCode("TIMEOUT", 504, "the server's media loop did not answer in time"),
        ErrorCode("INTERNAL", 500, "a fault of the server (logged with a traceback); never an answer to client input"),
    )
}

#: Codes an older server sent for a rule that now has one code (PROTOCOL.md "Error codes").
RENAMED_CODES = {"FRAME_TOO_LARGE": "TOO_LARGE"}


def error_table() -> str:
    """The Markdown table of :data:`ERROR_CODES` that docs/PROTOCOL.md carries."""
    rows = ["| code | HTTP status | meaning |", "|---|---|---|"]
    rows += [f"| `{e.code}` | {e.status} | {e.meaning} |" for e in ERROR_CODES.values()]
    return "\n".join(rows)


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
