"""The protocol's words and limits, once (PROTOCOL.md; the seeds' vocabulary verbatim).

Schemas, errors, records, the call state machine and the browser (through the generated
``static/lpcall/vectors.json``) read them from here. Pure data: no Flask, no store.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- the seeds' vocabulary ------------------------------------------------------------------
#: call modes of ``cobrowseOffered`` / ``call.Invite`` (seed 003)
MODES = ("VOICE_CALL", "VIDEO_CALL")
VOICE_CALL, VIDEO_CALL = MODES
#: the two participants of a call
ROLES = ("agent", "consumer")
AGENT, CONSUMER = ROLES
#: ``sessionState`` of a call (seed 003): INVITED -> ACCEPTED -> CLOSED
INVITED = "INVITED"
ACCEPTED = "ACCEPTED"
CLOSED = "CLOSED"
SESSION_STATES = (INVITED, ACCEPTED, CLOSED)
#: The error ids of the ``cobrowse``/``sessionError`` event (seed 003), verbatim.
SESSION_ERROR_IDS = ("UNABLE_TO_CONNECT", "BROWSER_NOT_SUPPORTED", "NO_CAMERA_ACCESS", "AGENT_DISCONNECTED")
#: why a call closed (PROTOCOL §10 ``closeReason``); calls.CLOSE_RULES says from which state and who
CLOSE_REASONS = ("declined", "cancelled", "expired", "hangup_agent", "hangup_consumer", "agent_disconnected",
                 "consumer_disconnected", "error")
#: a session description's ``type`` (RTCSdpType)
SDP_TYPES = frozenset({"offer", "answer", "rollback", "pranswer"})
#: the quality frame's levels and reasons (PROTOCOL §5, issue 17)
QUALITY_LEVELS = ("good", "fair", "poor", "lost")
QUALITY_REASONS = ("loss", "rtt", "jitter", "bandwidth", "frames", "nomedia")

# -- limits of a signaling frame (PROTOCOL §5; the schema and the fast path both use them) -------
MAX_SDP_CHARS = 200_000
MAX_CANDIDATE_CHARS = 2048
MAX_SDP_MID_CHARS = 64
MAX_MLINE_INDEX = 1024
MAX_UFRAG_CHARS = 256
MAX_GEN_CHARS = 64
#: deepest JSON nesting and largest integer a frame or body may carry (PROTOCOL §1)
MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1

# -- close codes of the sockets (RFC 6455) ----------------------------------------------------
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


# -- the error-code registry ------------------------------------------------------------------
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


#: Codes of errors made on the client side, never answered by the server: the browser's ``CallError``
#: (static/lpcall/engine.js; besides the seed's session-error ids), the Python peer's and the demo
#: agent's exceptions, and two that never leave the process (PROTOCOL.md "Client-side error codes").
CLIENT_ERROR_CODES: dict[str, str] = {
    "SIGNALING_FAILED": "browser: the call socket refused the join or closed before it (the server's code when it sent one)",
    "CALL_ENDED": "browser: the call ended while the engine was still starting it (also a server code)",
    "ERROR": "browser: a socket request failed without a code of the server's (static/lpcall/socket.js)",
    "HTTP_ERROR": "browser: a network-check request failed without a code of the server's",
    "PEER_ERROR": "Python peer: the base code of its errors",
    "SIGNALING_UNREACHABLE": "Python peer: the signaling socket cannot be opened",
    "SIGNALING_REFUSED": "Python peer: the signaling handshake was refused",
    "BAD_SERVER_FRAME": "Python peer: the server sent a frame that fails its schema",
    "SIGNALING_ERROR": "Python peer: the signaling socket failed or refused a frame",
    "NOT_JOINED": "Python peer: a frame sent before the socket joined",
    "NEGOTIATION_FAILED": "Python peer: applying a description or a candidate failed",
    "CALL_CLOSED": "Python peer: the call closed (its `closed` frame's reason is on the error)",
    "DEMO_AGENT_ERROR": "demo agent: the base code of its errors",
    "NO_LOGIN_FORM": "demo agent: the site has no workspace login form at the URL",
    "BAD_LOGIN": "demo agent: the site refused its user name or password",
    "LOGIN_FAILED": "demo agent: the login request failed (HTTP error)",
    "SOCKET_CLOSED": "demo agent: its agent socket closed",
    "UNREACHABLE": "demo agent: the site cannot be reached (it retries until its --wait is over)",
    "CONFIG_ERROR": "`init_app`: an `LPCALL_*` key (or `SECRET_KEY`) is wrong; names the key",
    "LPCALL_ERROR": "the base class's code; never raised as such",
}


def client_error_table() -> str:
    """The Markdown table of :data:`CLIENT_ERROR_CODES` that docs/PROTOCOL.md carries."""
    rows = ["| code | where | meaning |", "|---|---|---|"]
    for code, meaning in CLIENT_ERROR_CODES.items():
        where, _, what = meaning.partition(": ") if ": " in meaning else ("", "", meaning)
        rows.append(f"| `{code}` | {where} | {what or meaning} |")
    return "\n".join(rows)


# -- the browser's copy ---------------------------------------------------------------------------
#: what static/lpcall/protocol.js exports (generated by :func:`browser_module`; a test keeps it equal)
BROWSER_WORDS = {
    "MODES": MODES,
    "ROLES": ROLES,
    "SESSION_STATES": SESSION_STATES,
    "SESSION_ERROR_IDS": SESSION_ERROR_IDS,
    "CLOSE_REASONS": CLOSE_REASONS,
    "QUALITY_LEVELS": QUALITY_LEVELS,
    "QUALITY_REASONS": QUALITY_REASONS,
}


def browser_module() -> str:
    """``static/lpcall/protocol.js``: the same words for the browser (``./dev.sh protocol`` writes it)."""
    lines = ["// Generated from flask_lpcall/protocol.py by `./dev.sh protocol`: do not edit.",
             "// tests/test_layout.py fails when the two differ."]
    for name, words in BROWSER_WORDS.items():
        lines.append(f"export const {name} = Object.freeze([{', '.join(repr(w).replace(chr(39), chr(34)) for w in words)}]);")
    ids = ", ".join(f"{w}: \"{w}\"" for w in SESSION_ERROR_IDS)
    lines.append(f"export const SESSION_ERRORS = Object.freeze({{{ids}}});")
    lines.append(f"export const ERROR_CODES = Object.freeze([{', '.join(chr(34) + c + chr(34) for c in ERROR_CODES)}]);")
    return "\n".join(lines) + "\n"

