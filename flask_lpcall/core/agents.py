"""Agents: who they are, what their profile allows (pure: no Flask).

A profile permission shows a call button only when the global switch is on too, and the server
enforces the same rule (:func:`check_can_invite`) on every ``call.Invite``. Agents come from the
site's hooks (``@lpcall.agent_loader``), Flask-Login (``web/auth.py``) or the built-in directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadFrameError, InvalidStateError, NotAllowedError, NotFoundError
from ..protocol import MODES
from ..store.keys import session_key

if TYPE_CHECKING:
    from ..config import Settings
    from ..state import LPCallState
    from ..store import Store

PERM_VOICE = "Initiate voice conversation"
PERM_VIDEO = "Initiate live video conversation"
PERM_REPORTS = "View reports"

#: mode -> (profile permission, global switch)
MODE_RULES: dict[str, tuple[str, str]] = {
    "VOICE_CALL": (PERM_VOICE, "LPCALL_VOICE_ENABLED"),
    "VIDEO_CALL": (PERM_VIDEO, "LPCALL_VIDEO_ENABLED"),
}

#: systemKey of the transcript event that asks the consumer to run the network check (PROTOCOL §3).
NETCHECK_REQUEST_KEY = "system.netcheck_request"



@dataclass(frozen=True)
class Agent:
    """An agent as the site's ``agent_loader`` returns it."""

    id: str
    name: str
    permissions: frozenset[str] = field(default_factory=frozenset)


# -- permissions (pure) ---------------------------------------------------------
def agent_permissions(agent: Any) -> frozenset[str]:
    return frozenset(getattr(agent, "permissions", None) or ())


def mode_allowed(agent: Any, mode: str, settings: Settings) -> bool:
    """The button rule: the profile permission AND the global switch (the switch overrides every profile)."""
    rule = MODE_RULES.get(mode)
    return bool(rule and settings.switch(rule[1]) and rule[0] in agent_permissions(agent))


def call_buttons(agent: Any, settings: Settings) -> dict[str, bool]:
    return {mode: mode_allowed(agent, mode, settings) for mode in MODES}


def check_can_invite(agent: Any, conversation: Mapping[str, Any] | None, mode: str, settings: Settings) -> None:
    """Raise unless ``agent`` may invite ``conversation``'s consumer to a ``mode`` call.

    Codes: ``BAD_FRAME`` (mode), ``MODE_DISABLED`` (global switch off), ``NO_PERMISSION``
    (profile), ``NOT_FOUND``, ``INVALID_STATE`` (closed), ``NOT_ASSIGNED`` (another
    agent's or an unassigned conversation), ``NO_COBROWSE`` (the consumer did not
    declare ``CO_BROWSE``).
    """
    rule = MODE_RULES.get(mode)
    if rule is None:
        raise BadFrameError("body.mode: must be VOICE_CALL or VIDEO_CALL", field="body.mode")
    permission, switch = rule
    if not settings.switch(switch):
        raise NotAllowedError(f"body.mode: {mode} is switched off for every agent ({switch})", code="MODE_DISABLED",
                              field="body.mode")
    if permission not in agent_permissions(agent):
        raise NotAllowedError(f"body.mode: your profile lacks the permission {permission!r}", code="NO_PERMISSION",
                              field="body.mode")
    if conversation is None:
        raise NotFoundError("body.conversationId: unknown conversation", field="body.conversationId")
    if conversation.get("state") != "OPEN":
        raise InvalidStateError("body.conversationId: the conversation is closed", field="body.conversationId")
    if conversation.get("agentId") != agent.id:
        raise NotAllowedError("body.conversationId: the conversation is not assigned to you", code="NOT_ASSIGNED",
                              field="body.conversationId")
    if "CO_BROWSE" not in (conversation.get("features") or []):
        raise NotAllowedError("body.conversationId: the consumer's window did not declare CO_BROWSE; it cannot receive "
                              "call invitations", code="NO_COBROWSE", field="body.conversationId")


# -- where agents come from: the site's hooks, Flask-Login, or the built-in directory ----
def uses_directory(extension: Any) -> bool:
    """No hooks and no Flask-Login: agents log in against the built-in directory."""
    return (extension.login_bridge is None and extension.agent_loader_fn is None
            and extension.agent_authenticator_fn is None)


def _from_entry(entry: Any) -> Agent | None:
    return Agent(id=entry.username, name=entry.name, permissions=entry.permissions) if entry is not None else None


def load_agent(state: LPCallState, agent_id: str) -> Any | None:
    """``agent_id`` -> the agent, from whichever source the site uses (None if unknown)."""
    ext = state.extension
    if ext.login_bridge is not None:
        return ext.login_bridge.load(agent_id)
    if ext.agent_loader_fn is not None:
        return ext.agent_loader_fn(agent_id)
    if uses_directory(ext):
        return _from_entry(state.agent_directory.get(agent_id))
    return None


def authenticate(state: LPCallState, username: str, password: str) -> Any | None:
    """The login form's check: the site's authenticator, else the built-in directory."""
    ext = state.extension
    if ext.agent_authenticator_fn is not None:
        return ext.agent_authenticator_fn(username, password)
    if uses_directory(ext):
        return _from_entry(state.agent_directory.authenticate(username, password))
    return None


# -- sessions: each login has an id; logout records it in the store, so a copied cookie dies with it ----
def session_valid(store: Store, agent_id: Any, sid: Any) -> bool:
    """Whether the cookie holds a login (agent and session id) that did not log out.

    A record of ended logins rather than of live ones: a store that lost its data (Redis restarted
    empty) keeps agents logged in instead of throwing everyone out.
    """
    if not agent_id or not sid:
        return False
    return store.get(session_key(str(sid))) is None
