"""flask-lpcall: voice and video calls inside web messaging for any Flask site."""

from __future__ import annotations

from .core.agents import PERM_REPORTS, PERM_VIDEO, PERM_VOICE, Agent
from .errors import ConfigError, LPCallError
from .extension import LPCall
from .state import LPCallState, get_state
from .web.callpage import call_link
from .web.tag import exempt

__version__ = "0.1.0"

__all__ = [
    "PERM_REPORTS",
    "PERM_VIDEO",
    "PERM_VOICE",
    "Agent",
    "ConfigError",
    "LPCall",
    "LPCallError",
    "LPCallState",
    "call_link",
    "exempt",
    "get_state",
]
