"""Agents: who they are, what their profile allows. (Workspace views: issue 3.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint

PERM_VOICE = "Initiate voice conversation"
PERM_VIDEO = "Initiate live video conversation"
PERM_REPORTS = "View reports"


@dataclass(frozen=True)
class Agent:
    """An agent as the site's ``agent_loader`` returns it."""

    id: str
    name: str
    permissions: frozenset[str] = field(default_factory=frozenset)


def register(bp: Blueprint) -> None:
    return None
