"""The call-session state machine (pure logic, no Flask, no store).

``INVITED`` → ``ACCEPTED`` → ``CLOSED``; ``INVITED`` → ``CLOSED`` too (declined, cancelled,
expired, error). Every illegal transition raises :class:`InvalidStateError`. A session
serialises to the call record of docs/PROTOCOL.md §10 (``to_dict``) and back
(``from_dict``), and renders the COBROWSE dialog of seed 003 (``cobrowse_dialog``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidStateError
from ..protocol import ACCEPTED, CLOSE_REASONS, CLOSED, INVITED, MODES, ROLES, SESSION_ERROR_IDS

#: close reason -> states it may close from, and who ended the call.
CLOSE_RULES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "declined": ((INVITED,), "consumer"),
    "cancelled": ((INVITED,), "agent"),
    "expired": ((INVITED,), "system"),
    "hangup_agent": ((ACCEPTED,), "agent"),
    "hangup_consumer": ((ACCEPTED,), "consumer"),
    "agent_disconnected": ((INVITED, ACCEPTED), "system"),
    "consumer_disconnected": ((INVITED, ACCEPTED), "system"),  # INVITED: the visitor's page went away
    "error": ((INVITED, ACCEPTED), None),  # ended by whoever reported the error
}
#: frames a *listening* consumer socket (before its Accept, PROTOCOL §5) may not send: ``NOT_ACCEPTED``
LISTENER_REFUSES = frozenset(("description", "candidate", "quality", "connected", "failure"))

assert tuple(CLOSE_RULES) == CLOSE_REASONS, "protocol.CLOSE_REASONS and CLOSE_RULES name the same reasons"


def now_ms(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 1000)


def new_service_id(consumer_id: str) -> str:
    """``<consumerId>#<uuid4>`` as in seed 003."""
    return f"{consumer_id}#{uuid.uuid4()}"


@dataclass
class CallSession:
    """One call between a conversation's consumer and its agent."""

    service_id: str
    conversation_id: str
    dialog_id: str
    consumer_id: str
    agent_id: str
    agent_name: str
    visitor_name: str
    mode: str
    state: str = INVITED
    created_ts: int = 0
    expires: float = 0.0
    accepted_ts: int | None = None
    connected_ts: int | None = None
    ended_ts: int | None = None
    updated_ts: int = 0
    close_reason: str | None = None
    error_id: str | None = None
    ended_by: str | None = None
    joined: list[str] = field(default_factory=list)
    quality: dict[str, Any] | None = None  # the sides' `quality` frames folded (records.fold_quality, issue 17)
    #: role -> ``{"muted", "cameraOff"}``: what each side last said of its own media (a rejoining peer learns it)
    media: dict[str, dict[str, bool]] = field(default_factory=dict)
    #: role -> epoch seconds its signaling socket closed; the role is back when it joins again
    gone: dict[str, float] = field(default_factory=dict)

    # -- creation ---------------------------------------------------------------
    @classmethod
    def invite(
        cls,
        *,
        conversation_id: str,
        consumer_id: str,
        agent_id: str,
        agent_name: str,
        visitor_name: str,
        mode: str,
        ttl: float,
        now: float | None = None,
    ) -> CallSession:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} (got {mode!r})")
        t = time.time() if now is None else now
        return cls(
            service_id=new_service_id(consumer_id),
            conversation_id=conversation_id,
            dialog_id=str(uuid.uuid4()),
            consumer_id=consumer_id,
            agent_id=agent_id,
            agent_name=agent_name,
            visitor_name=visitor_name,
            mode=mode,
            created_ts=now_ms(t),
            updated_ts=now_ms(t),
            expires=round(t + ttl, 3),
        )

    # -- queries ----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.state != CLOSED

    def is_expired(self, now: float | None = None) -> bool:
        return self.state == INVITED and (time.time() if now is None else now) >= self.expires

    def listens(self, role: str) -> bool:
        """A socket of ``role`` opened now *listens*: the consumer's before its Accept. It hears the agent's
        offer ahead of the Accept and holds no presence; the Accept (on that socket) makes it join."""
        return role == "consumer" and self.state == INVITED

    @staticmethod
    def listener_may_send(kind: str) -> bool:
        """Whether a listening socket may send a frame of ``kind`` (nothing of the media path)."""
        return kind not in LISTENER_REFUSES

    def uid_of(self, role: str) -> str:
        if role == "agent":
            return self.agent_id
        if role == "consumer":
            return self.consumer_id
        raise ValueError(f"unknown role {role!r}")

    def duration_seconds(self, now: float | None = None) -> int:
        """Seconds since the call connected (else accepted) until it ended (else now)."""
        start = self.connected_ts or self.accepted_ts
        if start is None:
            return 0
        end = self.ended_ts if self.ended_ts is not None else now_ms(now)
        return max(0, round((end - start) / 1000))

    # -- transitions ------------------------------------------------------------
    def accept(self, now: float | None = None) -> None:
        if self.state != INVITED:
            raise InvalidStateError(f"cannot accept a call that is {self.state}")
        if self.is_expired(now):
            raise InvalidStateError("the invitation has expired")
        self.state = ACCEPTED
        self.accepted_ts = self.updated_ts = now_ms(now)

    def mark_connected(self, now: float | None = None) -> bool:
        """Stamp ``connectedTs`` the first time ICE connects; True when it was the first time."""
        if self.state != ACCEPTED:
            raise InvalidStateError(f"cannot connect a call that is {self.state}")
        if self.connected_ts is not None:
            return False
        self.connected_ts = now_ms(now)
        return True

    def mark_joined(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        if role not in self.joined:
            self.joined.append(role)
        self.gone.pop(role, None)

    def mark_gone(self, role: str, now: float | None = None) -> None:
        """``role``'s socket closed; the sweeper closes the call when it stays away past the grace."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.gone[role] = time.time() if now is None else now

    def set_media(self, role: str, *, muted: bool, camera_off: bool) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        self.media[role] = {"muted": muted, "cameraOff": camera_off}

    def close(self, reason: str, *, error_id: str | None = None, by: str | None = None, now: float | None = None) -> None:
        if reason not in CLOSE_RULES:
            raise ValueError(f"unknown close reason {reason!r}")
        allowed, ended_by = CLOSE_RULES[reason]
        if self.state not in allowed:
            raise InvalidStateError(f"cannot close a call that is {self.state} as {reason}")
        if reason == "error":
            if error_id not in SESSION_ERROR_IDS:
                raise ValueError(f"error_id must be one of {SESSION_ERROR_IDS} (got {error_id!r})")
            if by not in (*ROLES, "system"):
                raise ValueError("an error close needs by='agent'|'consumer'|'system'")
            ended_by = by
        elif error_id is not None:
            raise ValueError("error_id is only for reason='error'")
        if reason == "agent_disconnected":
            error_id = "AGENT_DISCONNECTED"
        self.state = CLOSED
        self.close_reason = reason
        self.error_id = error_id
        self.ended_by = ended_by
        self.ended_ts = self.updated_ts = now_ms(now)

    # -- views ------------------------------------------------------------------
    def cobrowse_dialog(self) -> dict[str, Any]:
        """The COBROWSE dialog of seed 003 (full shape while open, short shape once CLOSED)."""
        if self.state == CLOSED:
            return {
                "dialogId": self.dialog_id,
                "dialogType": "OTHER",
                "channelType": "COBROWSE",
                "metaData": {"sessionState": CLOSED},
            }
        return {
            "dialogId": self.dialog_id,
            "participants": [self.consumer_id, self.agent_id],
            "dialogType": "OTHER",
            "channelType": "COBROWSE",
            "metaData": {
                "serviceId": self.service_id,
                "mode": self.mode,
                "expires": float(self.expires),
                "sessionState": self.state,
                "dialogId": self.dialog_id,
            },
            "state": "OPEN",
            "creationTs": self.created_ts,
            "metaDataLastUpdateTs": self.updated_ts,
        }

    def to_dict(self) -> dict[str, Any]:
        """The call record (PROTOCOL §10)."""
        return {
            "serviceId": self.service_id,
            "conversationId": self.conversation_id,
            "dialogId": self.dialog_id,
            "consumerId": self.consumer_id,
            "agentId": self.agent_id,
            "agentName": self.agent_name,
            "visitorName": self.visitor_name,
            "mode": self.mode,
            "sessionState": self.state,
            "createdTs": self.created_ts,
            "expires": float(self.expires),
            "acceptedTs": self.accepted_ts,
            "connectedTs": self.connected_ts,
            "endedTs": self.ended_ts,
            "updatedTs": self.updated_ts,
            "closeReason": self.close_reason,
            "errorId": self.error_id,
            "endedBy": self.ended_by,
            "participants": len(self.joined),
            "joined": list(self.joined),
            **({"quality": self.quality} if self.quality else {}),
        }

    def to_doc(self) -> dict[str, Any]:
        """What the store keeps: the call record plus ``media`` and ``gone`` per role."""
        return {**self.to_dict(), "media": {r: dict(m) for r, m in self.media.items()}, "gone": dict(self.gone)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallSession:
        return cls(
            service_id=data["serviceId"],
            conversation_id=data["conversationId"],
            dialog_id=data["dialogId"],
            consumer_id=data["consumerId"],
            agent_id=data["agentId"],
            agent_name=data["agentName"],
            visitor_name=data["visitorName"],
            mode=data["mode"],
            state=data["sessionState"],
            created_ts=data["createdTs"],
            expires=data["expires"],
            accepted_ts=data.get("acceptedTs"),
            connected_ts=data.get("connectedTs"),
            ended_ts=data.get("endedTs"),
            updated_ts=data.get("updatedTs", data["createdTs"]),
            close_reason=data.get("closeReason"),
            error_id=data.get("errorId"),
            ended_by=data.get("endedBy"),
            joined=list(data.get("joined", [])),
            quality=data.get("quality") if isinstance(data.get("quality"), dict) else None,
            media=dict(data.get("media") or {}),
            gone={role: float(ts) for role, ts in (data.get("gone") or {}).items()},
        )
