"""``LPCallState``: what the extension keeps for one app, at ``app.extensions["lpcall"]``.

Every service is a typed field, built by ``LPCall.init_app`` in the order written there
(extension.py); nothing is added later by side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app

if TYPE_CHECKING:
    from .config import Settings
    from .core.callmanager import CallManager
    from .core.conversations import ConversationService
    from .core.directory import AgentDirectory
    from .core.reports import ReportService
    from .core.tokens import TokenSigner
    from .extension import LPCall
    from .sockets.keepalive import Keepalive
    from .store import Store
    from .web.netcheck import NetcheckService


@dataclass
class LPCallState:
    """Everything the extension keeps for one app."""

    extension: LPCall
    settings: Settings
    texts: dict[str, str]
    store: Store
    signer: TokenSigner
    #: pings every socket of this worker and drops the silent ones (sockets/keepalive.py)
    keepalive: Keepalive
    conversations: ConversationService
    calls: CallManager
    #: the built-in agent directory (used when the site registers no agent hooks)
    agent_directory: AgentDirectory
    reports: ReportService
    netcheck: NetcheckService
    eager_js: str
    url_prefix: str
    #: the nonce-less tag as bytes, keyed by what it is built from (web/tag.py)
    tag_cache: dict[Any, bytes] = field(default_factory=dict)
    #: the after_request hook that injects the tag (tag.make_injector: settings read once, at init_app)
    injector: Callable[[Response], Response] | None = None


def get_state(app: Flask | None = None) -> LPCallState:
    """The extension state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    try:
        return target.extensions["lpcall"]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("LPCall(app) / init_app(app) has not been called for this app") from None
