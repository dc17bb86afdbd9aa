"""marshmallow schemas: the single source of validation for every payload and frame.

Sections: lpCoBrowse event payloads (seed 003) · consumer socket frames ·
agent socket frames · call signaling frames. The browser applies the same
lpCoBrowse rules (``static/lptag.js``); ``static/lpcall/vectors.json`` keeps both honest.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from ..errors import BadFrameError
from ..protocol import (
    MAX_CANDIDATE_CHARS,
    MAX_GEN_CHARS,
    MAX_MLINE_INDEX,
    MAX_SDP_CHARS,
    MAX_SDP_MID_CHARS,
    MAX_UFRAG_CHARS,
    MODES,
    QUALITY_LEVELS,
    QUALITY_REASONS,
    SDP_TYPES,
    SESSION_ERROR_IDS,
    SESSION_STATES,
)

_non_empty = validate.Length(min=1, error="must be a non-empty string")


class StrictBoolean(fields.Boolean):
    """A JSON ``true``/``false`` only: ``0``, ``1``, ``"true"`` are refused (marshmallow's Boolean with
    ``truthy={True}`` lets ``0`` and ``1`` through, since ``0 == False``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) is not bool:
            raise ValidationError("must be true or false")
        return value


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


# -- consumer socket frames (docs/PROTOCOL.md §3) -----------------------------------
FEATURE_COBROWSE = "CO_BROWSE"
#: Longest visitor name accepted (characters).
MAX_VISITOR_NAME = 100
_id_len = validate.Length(min=1, max=200, error="must be a non-empty string of at most 200 characters")


class RequestIdField(fields.Field[Any]):
    """A request ``id``: a non-empty string or an integer (not a boolean)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be a string or an integer")
        if isinstance(value, str) and not 0 < len(value) <= 100:
            raise ValidationError("must be 1 to 100 characters")
        return value


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class FrameEnvelopeSchema(Schema):
    """``{"kind":"req","id","type","body"}``; InitConnection carries ``headers`` instead of a body."""

    class Meta:
        unknown = EXCLUDE

    kind = fields.String(validate=validate.OneOf(["req"], error="must be 'req' (or omitted)"))
    id = RequestIdField(required=True)
    type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    body = fields.Dict(load_default=dict)
    headers = fields.List(fields.Dict(), load_default=list)


class ClientPropertiesHeaderSchema(_Lenient):
    type = fields.String(required=True)
    deviceFamily = fields.String()
    os = fields.String()
    features = fields.List(fields.String(validate=validate.Length(min=1, max=50)), load_default=list,
                           validate=validate.Length(max=20))


class ConsumerAuthenticationHeaderSchema(_Lenient):
    type = fields.String(required=True)
    jwt = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class RequestConversationSchema(_Lenient):
    visitorName = fields.String(validate=validate.Length(max=MAX_VISITOR_NAME), allow_none=True)
    brandId = fields.String(validate=validate.Length(max=100), allow_none=True)


class ContentEventSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True, validate=validate.OneOf(["ContentEvent"], error="must be 'ContentEvent'"))
    contentType = fields.String(load_default="text/plain",
                                validate=validate.OneOf(["text/plain"], error="must be 'text/plain'"))
    message = fields.String(required=True)


class PublishEventSchema(_Lenient):
    conversationId = fields.String(required=True, validate=_id_len)
    dialogId = fields.String(validate=_id_len)
    event = fields.Nested(ContentEventSchema, required=True)


class SubscribeExConversationsSchema(_Lenient):
    convState = fields.List(fields.String(validate=validate.OneOf(["OPEN", "CLOSE"])), load_default=lambda: ["OPEN"])


class SubscribeMessagingEventsSchema(_Lenient):
    conversationId = fields.String(required=True, validate=_id_len)
    fromSeq = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))


class ConversationIdSchema(_Lenient):
    conversationId = fields.String(required=True, validate=_id_len)


class EmptyBodySchema(_Lenient):
    pass


#: consumer socket request type -> body schema (InitConnection is checked through its headers).
CONSUMER_REQUESTS: dict[str, type[Schema]] = {
    "InitConnection": EmptyBodySchema,
    "cm.ConsumerRequestConversation": RequestConversationSchema,
    "ms.PublishEvent": PublishEventSchema,
    "cqm.SubscribeExConversations": SubscribeExConversationsSchema,
    "ms.SubscribeMessagingEvents": SubscribeMessagingEventsSchema,
    "cm.CloseConversation": ConversationIdSchema,
    "ping": EmptyBodySchema,
}


def validate_envelope(data: Any) -> dict[str, Any]:
    """The request envelope; raise BadFrameError naming the field."""
    if not isinstance(data, dict):
        raise BadFrameError("(frame): must be a JSON object", field="(frame)")
    return load_or_raise(_schema_instance(FrameEnvelopeSchema), data)


#: One instance per schema class: building a marshmallow Schema costs more than loading with it.
_SCHEMA_INSTANCES: dict[type[Schema], Schema] = {}


def _schema_instance(cls: type[Schema]) -> Schema:
    schema = _SCHEMA_INSTANCES.get(cls)
    if schema is None:
        schema = _SCHEMA_INSTANCES[cls] = cls()
    return schema


def validate_request_body(registry: dict[str, type[Schema]], kind: str, body: Any) -> dict[str, Any]:
    """The body of request ``kind`` from ``registry``; unknown types name the ``type`` field."""
    schema = registry.get(kind)
    if schema is None:
        raise BadFrameError(f"type: unknown request type {kind!r}; one of {', '.join(registry)}", field="type")
    return load_or_raise(_schema_instance(schema), body, prefix="body")


def validate_init_headers(headers: list[Any]) -> dict[str, Any]:
    """InitConnection headers -> ``{"features": [...], "jwt": str}``; raise BadFrameError."""
    features: list[str] = []
    jwt: str | None = None
    for i, header in enumerate(headers):
        kind = header.get("type") if isinstance(header, dict) else None
        if kind == ".ams.headers.ClientProperties":
            features = load_or_raise(ClientPropertiesHeaderSchema(), header, prefix=f"headers.{i}")["features"]
        elif kind == ".ams.headers.ConsumerAuthentication":
            jwt = load_or_raise(ConsumerAuthenticationHeaderSchema(), header, prefix=f"headers.{i}")["jwt"]
    if jwt is None:
        raise BadFrameError("headers: a .ams.headers.ConsumerAuthentication header with 'jwt' is required",
                            field="headers")
    return {"features": features, "jwt": jwt}


# -- agent socket frames (docs/PROTOCOL.md §4) --------------------------------------
class _AgentStrict(Schema):
    class Meta:
        unknown = RAISE


class AgentSubscribeSchema(_AgentStrict):
    available = StrictBoolean(load_default=True)


class AgentOpenSchema(_AgentStrict):
    conversationId = fields.String(required=True, validate=_id_len)
    fromSeq = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))


class AgentConversationSchema(_AgentStrict):
    conversationId = fields.String(required=True, validate=_id_len)


class AgentPublishEventSchema(_AgentStrict):
    conversationId = fields.String(required=True, validate=_id_len)
    dialogId = fields.String(validate=_id_len)
    event = fields.Nested(ContentEventSchema, required=True)


class CallInviteSchema(_AgentStrict):
    conversationId = fields.String(required=True, validate=_id_len)
    mode = fields.String(required=True, validate=validate.OneOf(MODES, error="must be VOICE_CALL or VIDEO_CALL"))


class CallCancelSchema(_AgentStrict):
    serviceId = fields.String(required=True, validate=validate.Length(min=1, max=300))


class AgentEmptySchema(_AgentStrict):
    pass


class NetcheckRequestSchema(_AgentStrict):
    """``netcheck.Request``: ask the conversation's consumer to run the pre-call network check."""

    conversationId = fields.String(required=True, validate=_id_len)


#: agent socket request type -> body schema.
AGENT_REQUESTS: dict[str, type[Schema]] = {
    "agent.Subscribe": AgentSubscribeSchema,
    "agent.SetAvailable": AgentSubscribeSchema,
    "agent.Take": AgentConversationSchema,
    "agent.Open": AgentOpenSchema,
    "ms.PublishEvent": AgentPublishEventSchema,
    "cm.CloseConversation": AgentConversationSchema,
    "call.Invite": CallInviteSchema,
    "call.Cancel": CallCancelSchema,
    "call.Active": AgentEmptySchema,
    "netcheck.Request": NetcheckRequestSchema,
    "ping": AgentEmptySchema,
}


# -- call signaling frames (docs/PROTOCOL.md §5) ------------------------------------
class _Strict(Schema):
    class Meta:
        unknown = RAISE


class SessionDescriptionSchema(_Strict):
    """An RTCSessionDescriptionInit: ``sdp`` is required (non-empty) except for a ``rollback``."""

    type = fields.String(required=True, validate=validate.OneOf(["offer", "answer", "rollback", "pranswer"]))
    sdp = fields.String(load_default="", validate=validate.Length(max=MAX_SDP_CHARS))

    @validates_schema(pass_original=True)
    def _sdp_required(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
        if data.get("type") != "rollback" and not data.get("sdp"):
            raise ValidationError("required (non-empty) unless type is rollback", "sdp")


class IceCandidateSchema(_Strict):
    candidate = fields.String(required=True, validate=validate.Length(max=MAX_CANDIDATE_CHARS))
    sdpMid = fields.String(allow_none=True, validate=validate.Length(max=MAX_SDP_MID_CHARS))
    sdpMLineIndex = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_MLINE_INDEX))
    usernameFragment = fields.String(allow_none=True, validate=validate.Length(max=MAX_UFRAG_CHARS))


#: the optional negotiation tag of ``description`` / ``candidate`` frames (PROTOCOL §5 `gen`):
#: "<session>" or "<session>:<offer id>", relayed unchanged; a receiver drops a stale frame by it
_GEN_RE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{MAX_GEN_CHARS}}}\Z")


def _gen_field() -> fields.String:
    return fields.String(validate=validate.Regexp(_GEN_RE, error=f"must be 1-{MAX_GEN_CHARS} of A-Z a-z 0-9 _ . : -"))


def _valid_gen(value: Any) -> bool:
    return type(value) is str and _GEN_RE.fullmatch(value) is not None


def refused_gen(data: Any) -> str | None:
    """The valid ``gen`` of a refused ``description``/``candidate`` frame, echoed in its error frame."""
    if isinstance(data, dict) and data.get("type") in ("description", "candidate") and _valid_gen(data.get("gen")):
        return data["gen"]  # type: ignore[no-any-return]
    return None


class DescriptionFrameSchema(_Strict):
    type = fields.String(required=True)
    description = fields.Nested(SessionDescriptionSchema, required=True)
    gen = _gen_field()


class CandidateFrameSchema(_Strict):
    type = fields.String(required=True)
    candidate = fields.Nested(IceCandidateSchema, required=True, allow_none=True)
    gen = _gen_field()


class MediaStateFrameSchema(_Strict):
    type = fields.String(required=True)
    muted = StrictBoolean(required=True)
    cameraOff = StrictBoolean(required=True)


class FailureFrameSchema(_Strict):
    type = fields.String(required=True)
    id = fields.String(
        required=True,
        validate=validate.OneOf(SESSION_ERROR_IDS),
    )


class BareFrameSchema(_Strict):
    type = fields.String(required=True)


class AcceptFrameSchema(_Strict):
    """The consumer's Accept on a socket opened before it (PROTOCOL §5): the ``cobrowseAccepted`` payload."""

    type = fields.String(required=True)
    payload = fields.Nested(CoBrowseEventSchema, required=True)


#: connection quality (issue 17, static/lpcall/quality.js): levels and the reasons a level is not good


class StrictNumber(fields.Float):
    """A JSON number only (``"12"`` and ``true`` are refused), finite, within ``0..maximum``; or null."""

    def __init__(self, maximum: float, **kwargs: Any) -> None:
        super().__init__(allow_none=True, validate=validate.Range(min=0, max=maximum), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) not in (int, float):
            raise ValidationError("must be a number or null")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictCount(fields.Integer):
    """A JSON integer only (not ``1.0``, ``"1"`` or ``true``), ``0..1_000_000``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, validate=validate.Range(min=0, max=1_000_000), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if type(value) is not int:
            raise ValidationError("must be an integer")
        return super()._deserialize(value, attr, data, **kwargs)


class QualityFrameSchema(_Strict):
    """One side's connection-quality summary, about once a second at most (PROTOCOL §5 "quality")."""

    type = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(QUALITY_LEVELS))
    reason = fields.String(allow_none=True, validate=validate.OneOf(QUALITY_REASONS))
    rttMs = StrictNumber(60_000)
    lossPct = StrictNumber(100)
    jitterMs = StrictNumber(60_000)
    outKbps = StrictNumber(1_000_000)
    iceRestarts = StrictCount()  # this side's ICE restarts and network switches so far in the call
    networkSwitches = StrictCount()
    audioOnly = StrictBoolean()  # this side's network cannot carry video: both sides send audio only


#: client → server signaling frame type -> its schema.
SIGNAL_FRAMES: dict[str, type[Schema]] = {
    "description": DescriptionFrameSchema,
    "candidate": CandidateFrameSchema,
    "state": MediaStateFrameSchema,
    "hangup": BareFrameSchema,
    "connected": BareFrameSchema,
    "failure": FailureFrameSchema,
    "ping": BareFrameSchema,
    "accept": AcceptFrameSchema,
    "listening": BareFrameSchema,
    "quality": QualityFrameSchema,
}


def validate_signal_frame(data: Any) -> dict[str, Any]:
    """Validate one client → server call-signaling frame; raise BadFrameError naming the field."""
    return load_signal_frame(data)[0]


def load_signal_frame(data: Any) -> tuple[dict[str, Any], bool]:
    """:func:`validate_signal_frame`, and whether the frame is exactly what the client sent: the
    hand-checked fast path accepted it (its values have their JSON types, nothing was converted)
    and loading changed nothing (no default was added). The relay then forwards the client's
    own text (signaling.py)."""
    if not isinstance(data, dict):
        raise BadFrameError("(frame): must be a JSON object", field="(frame)")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in SIGNAL_FRAMES:
        raise BadFrameError(f"type: must be one of {', '.join(SIGNAL_FRAMES)}", field="type")
    fast = _fast_signal_frame(kind, data)
    if fast is not None:
        return fast, fast == data
    return load_or_raise(_signal_schema(kind), data), False


_CANDIDATE_KEYS = frozenset({"candidate", "sdpMid", "sdpMLineIndex", "usernameFragment"})


def _opt_str(value: Any, max_len: int) -> bool:
    return value is None or (type(value) is str and len(value) <= max_len)


def _fast_signal_frame(kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """The relay's hot path (issue 7): a plainly valid ``candidate``/``description``/bare frame is
    checked here by hand (~10x cheaper than marshmallow) and returned exactly as its schema would load it.
    Anything else — including every invalid frame — returns None and goes through marshmallow, which
    stays the authority and names the bad field (tests/test_signal_fastpath.py proves the equivalence).
    """
    tag: dict[str, str] = {}
    if "gen" in data and kind in ("candidate", "description"):
        if not _valid_gen(data["gen"]):
            return None
        tag = {"gen": data["gen"]}
    if kind == "candidate":
        return _fast_candidate(data, tag) if len(data) == 2 + len(tag) and "candidate" in data else None
    if kind == "description":
        return _fast_description(data, tag) if len(data) == 2 + len(tag) else None
    if kind in ("ping", "hangup", "connected") and len(data) == 1:
        return {"type": kind}
    return None


def _fast_candidate(data: dict[str, Any], tag: dict[str, str]) -> dict[str, Any] | None:
    cand = data["candidate"]
    if cand is None:
        return {"type": "candidate", "candidate": None, **tag}
    if type(cand) is not dict or not cand.keys() <= _CANDIDATE_KEYS:
        return None
    text, index = cand.get("candidate"), cand.get("sdpMLineIndex")
    if type(text) is not str or len(text) > MAX_CANDIDATE_CHARS:
        return None
    if not (index is None or (type(index) is int and 0 <= index <= MAX_MLINE_INDEX)):
        return None
    if not (_opt_str(cand.get("sdpMid"), MAX_SDP_MID_CHARS) and _opt_str(cand.get("usernameFragment"), MAX_UFRAG_CHARS)):
        return None
    return {"type": "candidate", "candidate": dict(cand), **tag}


def _fast_description(data: dict[str, Any], tag: dict[str, str]) -> dict[str, Any] | None:
    desc = data.get("description")
    if type(desc) is not dict or not desc.keys() <= {"type", "sdp"}:
        return None
    sdp = desc.get("sdp", "")
    sdp_type = desc.get("type")
    if type(sdp_type) is not str or sdp_type not in SDP_TYPES or type(sdp) is not str or len(sdp) > MAX_SDP_CHARS:
        return None
    if not sdp and sdp_type != "rollback":  # an offer or answer without sdp: the schema names it
        return None
    return {"type": "description", "description": {"type": desc["type"], "sdp": sdp}, **tag}


_SIGNAL_SCHEMA_CACHE: dict[str, Schema] = {}


def _signal_schema(kind: str) -> Schema:
    """One reusable instance per frame type: building a Schema deep-copies its fields (the relay's hot path)."""
    schema = _SIGNAL_SCHEMA_CACHE.get(kind)
    if schema is None:
        schema = _SIGNAL_SCHEMA_CACHE[kind] = SIGNAL_FRAMES[kind]()
    return schema


# -- report filters (dashboard query string; reporting.py) --------------------------------
class ReportFilterSchema(Schema):
    """``since``/``until`` (UTC days, inclusive), ``agent`` id, ``mode`` of the reports page."""

    class Meta:
        unknown = RAISE

    since = fields.Date(format="%Y-%m-%d")
    until = fields.Date(format="%Y-%m-%d")
    agent = fields.String(validate=validate.Length(min=1, max=200))
    mode = fields.String(validate=validate.OneOf(MODES, error="must be VOICE_CALL or VIDEO_CALL"))


# -- call signaling frames as a client receives them (server → client; peer.py) ------------
class _Tolerant(Schema):
    """Server frames: required fields are checked, fields added by newer servers are ignored."""

    class Meta:
        unknown = EXCLUDE


_ROLE = validate.OneOf(["agent", "consumer"], error="must be agent or consumer")


class _IceServerOut(_Tolerant):
    urls = fields.Raw(required=True)
    username = fields.String()
    credential = fields.String()


class _MediaStateOut(_Tolerant):
    muted = StrictBoolean(required=True)
    cameraOff = StrictBoolean(required=True)


class JoinedFrameSchema(_Tolerant):
    type = fields.String(required=True)
    serviceId = fields.String(required=True, validate=_non_empty)
    role = fields.String(required=True, validate=_ROLE)
    mode = fields.String(required=True, validate=validate.OneOf(MODES, error="must be VOICE_CALL or VIDEO_CALL"))
    polite = StrictBoolean(required=True)
    peerPresent = StrictBoolean(required=True)
    peerState = fields.Nested(_MediaStateOut, allow_none=True, load_default=None)
    iceServers = fields.List(fields.Nested(_IceServerOut), required=True)
    iceTransportPolicy = fields.String(required=True, validate=validate.OneOf(["all", "relay"]))
    sessionState = fields.String(required=True, validate=validate.OneOf(SESSION_STATES))


class RelayedDescriptionSchema(_Tolerant):
    type = fields.String(required=True)
    description = fields.Nested(SessionDescriptionSchema, required=True)
    gen = _gen_field()
    from_ = fields.String(data_key="from", required=True, validate=_ROLE)


class RelayedCandidateSchema(_Tolerant):
    type = fields.String(required=True)
    candidate = fields.Nested(IceCandidateSchema, required=True, allow_none=True)
    gen = _gen_field()
    from_ = fields.String(data_key="from", required=True, validate=_ROLE)


class RelayedStateSchema(_Tolerant):
    type = fields.String(required=True)
    muted = StrictBoolean(required=True)
    cameraOff = StrictBoolean(required=True)
    from_ = fields.String(data_key="from", required=True, validate=_ROLE)


class RelayedQualitySchema(_Tolerant):
    type = fields.String(required=True)
    level = fields.String(required=True, validate=validate.OneOf(QUALITY_LEVELS))
    reason = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(QUALITY_REASONS))
    audioOnly = StrictBoolean(load_default=False)
    from_ = fields.String(data_key="from", required=True, validate=_ROLE)


class PeerJoinedSchema(_Tolerant):
    type = fields.String(required=True)
    role = fields.String(required=True, validate=_ROLE)
    accepted = fields.Boolean(load_default=False)  # a listening consumer accepted (PROTOCOL §5)


class PeerLeftSchema(_Tolerant):
    type = fields.String(required=True)
    role = fields.String(required=True, validate=_ROLE)
    graceUntil = fields.Float(allow_none=True, load_default=None)


class ClosedFrameSchema(_Tolerant):
    type = fields.String(required=True)
    reason = fields.String(required=True, validate=_non_empty)
    errorId = fields.String(allow_none=True, load_default=None)
    by = fields.String(allow_none=True, load_default=None)


class ErrorFrameSchema(_Tolerant):
    type = fields.String(required=True)
    code = fields.String(required=True, validate=_non_empty)
    message = fields.String(load_default="")
    field = fields.String(allow_none=True, load_default=None)


class PongFrameSchema(_Tolerant):
    type = fields.String(required=True)


class SessionFrameSchema(_Tolerant):
    type = fields.String(required=True)
    sessionState = fields.String(required=True, validate=validate.OneOf(SESSION_STATES))


#: server → client signaling frame type -> its schema (the Python peer validates every frame).
SERVER_SIGNAL_FRAMES: dict[str, type[Schema]] = {
    "joined": JoinedFrameSchema,
    "description": RelayedDescriptionSchema,
    "candidate": RelayedCandidateSchema,
    "state": RelayedStateSchema,
    "quality": RelayedQualitySchema,
    "peer-joined": PeerJoinedSchema,
    "peer-left": PeerLeftSchema,
    "closed": ClosedFrameSchema,
    "error": ErrorFrameSchema,
    "pong": PongFrameSchema,
    "session": SessionFrameSchema,
}


def validate_server_signal_frame(data: Any) -> dict[str, Any]:
    """Validate one server → client call-signaling frame; raise BadFrameError naming the field."""
    if not isinstance(data, dict):
        raise BadFrameError("(frame): must be a JSON object", field="(frame)")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in SERVER_SIGNAL_FRAMES:
        raise BadFrameError(f"type: must be one of {', '.join(SERVER_SIGNAL_FRAMES)}", field="type")
    return load_or_raise(SERVER_SIGNAL_FRAMES[kind](), data)


# -- the network check's HTTP API (PROTOCOL §9) ----------------------------------------
class NetcheckOfferSchema(Schema):
    class Meta:
        unknown = RAISE

    offer = fields.Nested(SessionDescriptionSchema, required=True)


class NetcheckResultSchema(Schema):
    class Meta:
        unknown = RAISE

    checkId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    connected = StrictBoolean(required=True)
    candidateType = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(["host", "srflx", "prflx", "relay"])
    )
    rttMs = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=60_000))
    downKbps = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=10_000_000))
    upKbps = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=10_000_000))
