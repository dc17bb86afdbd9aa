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
from collections.abc import Mapping
from typing import Any


def turn_credentials(secret: str, user_id: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl`` seconds, per coturn's use-auth-secret."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(settings: Mapping[str, Any], user_id: str, now: float | None = None) -> dict[str, Any]:
    """``{"iceServers": [...], "iceTransportPolicy": "all"|"relay"}`` for one participant."""
    servers: list[dict[str, Any]] = [dict(s) for s in settings["LPCALL_ICE_SERVERS"]]
    if settings["LPCALL_TURN_URLS"]:
        username, credential = turn_credentials(settings["LPCALL_TURN_SECRET"], user_id, settings["LPCALL_TURN_TTL"], now)
        servers.append({"urls": list(settings["LPCALL_TURN_URLS"]), "username": username, "credential": credential})
    return {"iceServers": servers, "iceTransportPolicy": "relay" if settings["LPCALL_FORCE_RELAY"] else "all"}
