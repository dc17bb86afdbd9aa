"""ICE configuration handed to both peers: STUN/TURN servers, relay policy, TURN credentials.

TURN credentials follow coturn's TURN REST API (``use-auth-secret``): the username
is ``<expiry unix time>:<id>`` and the password is
``base64(HMAC-SHA1(static-auth-secret, username))``, valid until the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings


def turn_credentials(secret: str, user_id: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl`` seconds, per coturn's use-auth-secret."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Settings, user_id: str, now: float | None = None) -> dict[str, Any]:
    """``{"iceServers": [...], "iceTransportPolicy": "all"|"relay"}`` for one participant."""
    servers: list[dict[str, Any]] = [dict(s) for s in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret:  # init_app refuses TURN URLs without a secret
        username, credential = turn_credentials(settings.turn_secret, user_id, settings.turn_ttl, now)
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return {"iceServers": servers, "iceTransportPolicy": "relay" if settings.force_relay else "all"}
