"""The call-session state machine (flask_lpcall/calls.py): transitions, records, the seed 003 dialog."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from flask_lpcall.core import calls
from flask_lpcall.core.calls import CallSession
from flask_lpcall.errors import InvalidStateError

SEED = Path("/work/shared/seeds/003_a5f652f95239795f.txt")
#: Seed 003's two COBROWSE dialogs, verbatim (used when the seed file is not at hand).
SEED_DIALOGS = [
    {
        "dialogId": "c26b9d3b-e943-42af-8047-aba830de64ea",
        "participants": ["cc05f2b9-916b-496e-89fe-66a46d975ae2", "le83624296.356285412"],
        "dialogType": "OTHER",
        "channelType": "COBROWSE",
        "metaData": {
            "serviceId": "cc05f2b9-916b-496e-89fe-66a46d975ae2#7904fffd-fc68-4d93-b611-4dc06ab26bf4",
            "mode": "VIDEO_CALL",
            "expires": 1.502893131855e9,
            "sessionState": "INVITED",
            "dialogId": "c26b9d3b-e943-42af-8047-aba830de64ea",
        },
        "state": "OPEN",
        "creationTs": 1502893041905,
        "metaDataLastUpdateTs": 1502893041905,
    },
    {
        "dialogId": "c26b9d3b-e943-42af-8047-aba830de64ea",
        "dialogType": "OTHER",
        "channelType": "COBROWSE",
        "metaData": {"sessionState": "CLOSED"},
    },
]
T0 = 1_700_000_000.0


def _session(mode: str = "VIDEO_CALL", ttl: float = 120) -> CallSession:
    return CallSession.invite(
        conversation_id="conv-1",
        consumer_id=str(uuid.uuid4()),
        agent_id="bob",
        agent_name="Bob",
        visitor_name="Vera",
        mode=mode,
        ttl=ttl,
        now=T0,
    )


def _seed_dialogs() -> list[dict]:
    if not SEED.exists():
        return SEED_DIALOGS
    blocks = re.findall(r"```json\n(.*?)```", SEED.read_text(), re.DOTALL)
    found = [json.loads(b) for b in blocks if '"COBROWSE"' in b]
    assert found == SEED_DIALOGS
    return found


def _shape(value: object) -> object:
    """Keys and value types, recursively (the contract is keys + types)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


def test_service_id_is_consumer_id_hash_uuid4() -> None:
    s = _session()
    consumer, _, tail = s.service_id.partition("#")
    assert consumer == s.consumer_id
    assert uuid.UUID(tail).version == 4
    assert _session().service_id != s.service_id


def test_invited_dialog_has_exactly_the_seed_keys_and_types() -> None:
    seeds = _seed_dialogs()
    invited = seeds[0]
    dialog = _session().cobrowse_dialog()
    assert _shape(dialog) == _shape(invited)
    assert dialog["dialogType"] == "OTHER" and dialog["channelType"] == "COBROWSE" and dialog["state"] == "OPEN"
    assert dialog["metaData"]["sessionState"] == "INVITED"
    assert dialog["metaData"]["expires"] == pytest.approx(T0 + 120)
    assert dialog["metaData"]["dialogId"] == dialog["dialogId"]
    assert dialog["creationTs"] == int(T0 * 1000)


def test_closed_dialog_has_the_seed_short_shape() -> None:
    seeds = _seed_dialogs()
    s = _session()
    s.close("cancelled", now=T0 + 1)
    closed = s.cobrowse_dialog()
    assert closed == {"dialogId": s.dialog_id, "dialogType": "OTHER", "channelType": "COBROWSE", "metaData": {"sessionState": "CLOSED"}}
    assert _shape(closed) == _shape(seeds[-1])


def test_accept_then_hangup_records_everything() -> None:
    s = _session()
    s.accept(now=T0 + 5)
    assert s.state == "ACCEPTED" and s.accepted_ts == int((T0 + 5) * 1000)
    assert s.cobrowse_dialog()["metaData"]["sessionState"] == "ACCEPTED"
    assert s.cobrowse_dialog()["metaDataLastUpdateTs"] == s.accepted_ts
    s.mark_joined("agent")
    s.mark_joined("consumer")
    s.mark_joined("consumer")
    assert s.mark_connected(now=T0 + 6) is True
    assert s.mark_connected(now=T0 + 7) is False
    s.close("hangup_consumer", now=T0 + 66)
    rec = s.to_dict()
    assert rec["sessionState"] == "CLOSED" and rec["closeReason"] == "hangup_consumer" and rec["endedBy"] == "consumer"
    assert rec["participants"] == 2
    assert s.duration_seconds() == 60
    for key in (
        "serviceId", "conversationId", "dialogId", "consumerId", "agentId", "agentName", "visitorName", "mode",
        "sessionState", "createdTs", "expires", "acceptedTs", "connectedTs", "endedTs", "closeReason", "errorId",
        "endedBy", "participants",
    ):
        assert key in rec
    assert CallSession.from_dict(json.loads(json.dumps(rec))) == s


@pytest.mark.parametrize(
    ("reason", "by"),
    [("declined", "consumer"), ("cancelled", "agent"), ("expired", "system"), ("agent_disconnected", "system"),
     ("consumer_disconnected", "system")],  # the visitor's page is gone while invited (issue 13)
)
def test_invited_can_close_as(reason: str, by: str) -> None:
    s = _session()
    s.close(reason, now=T0 + 1)
    assert (s.state, s.close_reason, s.ended_by) == ("CLOSED", reason, by)


@pytest.mark.parametrize("reason", ["hangup_agent", "hangup_consumer"])
def test_invited_cannot_close_as(reason: str) -> None:
    with pytest.raises(InvalidStateError) as exc:
        _session().close(reason)
    assert exc.value.code == "INVALID_STATE"


@pytest.mark.parametrize("reason", ["declined", "cancelled", "expired"])
def test_accepted_cannot_close_as(reason: str) -> None:
    s = _session()
    s.accept(now=T0 + 1)
    with pytest.raises(InvalidStateError):
        s.close(reason)


def test_closed_is_final() -> None:
    s = _session()
    s.close("declined", now=T0 + 1)
    with pytest.raises(InvalidStateError):
        s.accept(now=T0 + 2)
    for reason in calls.CLOSE_REASONS:
        with pytest.raises(InvalidStateError):
            s.close(reason, error_id="UNABLE_TO_CONNECT" if reason == "error" else None, by="agent")
    with pytest.raises(InvalidStateError):
        s.mark_connected()


def test_accept_twice_and_after_expiry_are_refused() -> None:
    s = _session(ttl=10)
    with pytest.raises(InvalidStateError):
        s.accept(now=T0 + 10.5)
    assert s.is_expired(now=T0 + 10.5)
    s.accept(now=T0 + 9)
    with pytest.raises(InvalidStateError):
        s.accept(now=T0 + 9)
    assert not s.is_expired(now=T0 + 1000)  # only invitations expire


def test_error_close_needs_a_session_error_id_and_who() -> None:
    s = _session()
    s.accept(now=T0 + 1)
    with pytest.raises(ValueError):
        s.close("error", error_id="NOPE", by="agent")
    with pytest.raises(ValueError):
        s.close("error", error_id="UNABLE_TO_CONNECT")
    with pytest.raises(ValueError):
        s.close("hangup_agent", error_id="UNABLE_TO_CONNECT")
    s.close("error", error_id="NO_CAMERA_ACCESS", by="consumer", now=T0 + 2)
    assert (s.close_reason, s.error_id, s.ended_by) == ("error", "NO_CAMERA_ACCESS", "consumer")


def test_agent_disconnected_carries_its_error_id() -> None:
    s = _session()
    s.accept(now=T0 + 1)
    s.close("agent_disconnected", now=T0 + 40)
    assert s.error_id == "AGENT_DISCONNECTED"


def test_bad_mode_and_role_are_refused() -> None:
    with pytest.raises(ValueError):
        _session(mode="CHAT")
    with pytest.raises(ValueError):
        _session().mark_joined("stranger")
    with pytest.raises(ValueError):
        _session().close("bored")


def test_media_and_gone_are_typed_fields_kept_in_the_stored_document_not_in_the_record() -> None:
    s = _session()
    s.accept(now=T0 + 1)
    s.mark_joined("consumer")
    s.set_media("consumer", muted=True, camera_off=False)
    s.mark_gone("consumer", now=T0 + 5)
    doc = s.to_doc()
    assert doc["media"] == {"consumer": {"muted": True, "cameraOff": False}} and doc["gone"] == {"consumer": T0 + 5}
    assert "media" not in s.to_dict() and "gone" not in s.to_dict()  # the call record (PROTOCOL §10) is unchanged
    back = CallSession.from_dict(doc)
    assert (back.media, back.gone) == (s.media, s.gone)
    back.mark_joined("consumer")  # the role is back: no longer gone
    assert back.gone == {}
    with pytest.raises(ValueError):
        back.mark_gone("stranger")


def test_the_consumer_listens_before_its_accept_and_may_send_nothing_of_the_media_path() -> None:
    s = _session()
    assert s.listens("consumer") and not s.listens("agent")
    assert not CallSession.listener_may_send("description") and not CallSession.listener_may_send("candidate")
    assert CallSession.listener_may_send("accept") and CallSession.listener_may_send("ping")
    s.accept(now=T0 + 1)
    assert not s.listens("consumer")  # after the Accept a socket joins
