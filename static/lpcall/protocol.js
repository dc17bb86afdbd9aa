// Generated from flask_lpcall/protocol.py by `./dev.sh protocol`: do not edit.
// tests/test_layout.py fails when the two differ.
export const MODES = Object.freeze(["VOICE_CALL", "VIDEO_CALL"]);
export const ROLES = Object.freeze(["agent", "consumer"]);
export const SESSION_STATES = Object.freeze(["INVITED", "ACCEPTED", "CLOSED"]);
export const SESSION_ERROR_IDS = Object.freeze(["UNABLE_TO_CONNECT", "BROWSER_NOT_SUPPORTED", "NO_CAMERA_ACCESS", "AGENT_DISCONNECTED"]);
export const CLOSE_REASONS = Object.freeze(["declined", "cancelled", "expired", "hangup_agent", "hangup_consumer", "agent_disconnected", "consumer_disconnected", "error"]);
export const QUALITY_LEVELS = Object.freeze(["good", "fair", "poor", "lost"]);
export const QUALITY_REASONS = Object.freeze(["loss", "rtt", "jitter", "bandwidth", "frames", "nomedia"]);
export const SESSION_ERRORS = Object.freeze({UNABLE_TO_CONNECT: "UNABLE_TO_CONNECT", BROWSER_NOT_SUPPORTED: "BROWSER_NOT_SUPPORTED", NO_CAMERA_ACCESS: "NO_CAMERA_ACCESS", AGENT_DISCONNECTED: "AGENT_DISCONNECTED"});
export const ERROR_CODES = Object.freeze(["BAD_FRAME", "TOO_LARGE", "METHOD_NOT_ALLOWED", "NOT_AUTHENTICATED", "TOKEN_INVALID", "TOKEN_EXPIRED", "NOT_ALLOWED", "NOT_ASSIGNED", "NO_PERMISSION", "MODE_DISABLED", "NO_COBROWSE", "CALL_IN_PROGRESS", "CALL_ENDED", "CALL_IN_OTHER_TAB", "NOT_ACCEPTED", "NOT_FOUND", "INVALID_STATE", "NOT_IMPLEMENTED", "STORE_UNAVAILABLE", "BUSY", "TIMEOUT", "INTERNAL"]);
