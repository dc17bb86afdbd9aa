"""flask-lpcall: voice and video calls inside web messaging for any Flask site."""

from __future__ import annotations

from .errors import ConfigError, LPCallError
from .extension import LPCall, LPCallState, get_state
from .web.tag import exempt

__version__ = "0.1.0"

__all__ = ["ConfigError", "LPCall", "LPCallError", "LPCallState", "exempt", "get_state"]
