"""marshmallow schemas: the single source of validation for every payload and frame.

Sections: lpCoBrowse event payloads (seed 003) · consumer socket frames ·
agent socket frames · call signaling frames. The browser applies the same
lpCoBrowse rules (``static/lptag.js``); ``static/lpcall/vectors.json`` keeps both honest.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .errors import BadFrameError

MODES = ("VOICE_CALL", "VIDEO_CALL")
SESSION_STATES = ("INVITED", "ACCEPTED", "CLOSED")

_non_empty = validate.Length(min=1, error="must be a non-empty string")


def first_error(messages: Any, prefix: str = "") -> tuple[str, str]:
    """(dotted field path, message) of the first error in marshmallow's messages."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == "_schema":
            path = prefix or "(frame)"
        return first_error(value, path)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], prefix)
    return prefix or "(frame)", str(messages)


def load_or_raise(schema: Schema, data: Any, prefix: str = "") -> dict[str, Any]:
    """Validate ``data``; on failure raise BadFrameError naming the first bad field."""
    try:
        result: dict[str, Any] = schema.load(data)
        return result
    except ValidationError as exc:
        field_name, message = first_error(exc.messages, prefix)
        raise BadFrameError(f"{field_name}: {message}", field=field_name) from None


# -- lpCoBrowse event payloads (seed 003, verbatim field names) ------------------
class CoBrowseEventSchema(Schema):
    """``cobrowseOffered`` / ``cobrowseAccepted`` / ``cobrowseDeclined`` payload."""

    class Meta:
        unknown = RAISE

    serviceId = fields.String(required=True, validate=_non_empty)
    agentId = fields.String(required=True, validate=_non_empty)
    visitorName = fields.String(required=True, validate=_non_empty)
    mode = fields.String(required=True, validate=validate.OneOf(MODES, error="must be VOICE_CALL or VIDEO_CALL"))
    ssid = fields.String(required=True, validate=_non_empty)
    svid = fields.String(required=True, validate=_non_empty)
    scid = fields.String()
    cid = fields.String()
    eid = fields.String()


#: lpCoBrowse events and whether they carry the payload above.
COBROWSE_EVENTS = {"cobrowseOffered": True, "cobrowseAccepted": True, "cobrowseDeclined": True, "sliderOpened": False}


def validate_cobrowse_event(event: str, data: Any) -> dict[str, Any] | None:
    """Validate an lpCoBrowse publish the way the browser bus does; raise BadFrameError."""
    if event not in COBROWSE_EVENTS:
        raise BadFrameError(f"event: unknown lpCoBrowse event {event!r}", field="event")
    if not COBROWSE_EVENTS[event]:
        return None
    if not isinstance(data, dict):
        raise BadFrameError("data: must be an object", field="data")
    return load_or_raise(CoBrowseEventSchema(), data)


# -- call signaling frames (docs/PROTOCOL.md §5) ------------------------------------
class _Strict(Schema):
    class Meta:
        unknown = RAISE


class SessionDescriptionSchema(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(["offer", "answer", "rollback", "pranswer"]))
    sdp = fields.String(load_default="", validate=validate.Length(max=200_000))


class IceCandidateSchema(_Strict):
    candidate = fields.String(required=True, validate=validate.Length(max=2048))
    sdpMid = fields.String(allow_none=True, validate=validate.Length(max=64))
    sdpMLineIndex = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=1024))
    usernameFragment = fields.String(allow_none=True, validate=validate.Length(max=256))


class DescriptionFrameSchema(_Strict):
    type = fields.String(required=True)
    description = fields.Nested(SessionDescriptionSchema, required=True)


class CandidateFrameSchema(_Strict):
    type = fields.String(required=True)
    candidate = fields.Nested(IceCandidateSchema, required=True, allow_none=True)


class MediaStateFrameSchema(_Strict):
    type = fields.String(required=True)
    muted = fields.Boolean(required=True, truthy={True}, falsy={False})
    cameraOff = fields.Boolean(required=True, truthy={True}, falsy={False})


class FailureFrameSchema(_Strict):
    type = fields.String(required=True)
    id = fields.String(
        required=True,
        validate=validate.OneOf(["UNABLE_TO_CONNECT", "BROWSER_NOT_SUPPORTED", "NO_CAMERA_ACCESS", "AGENT_DISCONNECTED"]),
    )


class BareFrameSchema(_Strict):
    type = fields.String(required=True)


#: client → server signaling frame type -> its schema.
SIGNAL_FRAMES: dict[str, type[Schema]] = {
    "description": DescriptionFrameSchema,
    "candidate": CandidateFrameSchema,
    "state": MediaStateFrameSchema,
    "hangup": BareFrameSchema,
    "connected": BareFrameSchema,
    "failure": FailureFrameSchema,
    "ping": BareFrameSchema,
}


def validate_signal_frame(data: Any) -> dict[str, Any]:
    """Validate one client → server call-signaling frame; raise BadFrameError naming the field."""
    if not isinstance(data, dict):
        raise BadFrameError("(frame): must be a JSON object", field="(frame)")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in SIGNAL_FRAMES:
        raise BadFrameError(f"type: must be one of {', '.join(SIGNAL_FRAMES)}", field="type")
    return load_or_raise(SIGNAL_FRAMES[kind](), data)
