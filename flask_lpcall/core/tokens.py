"""Signed, expiring tokens (consumer identity, call signaling, resume).

Built on itsdangerous (a Flask dependency) keyed by the app's SECRET_KEY with a
per-purpose salt, so a token for one purpose never passes as another.
"""

from __future__ import annotations

import math
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..errors import NotAllowedError


class TokenSigner:
    def __init__(self, secret_key: str | bytes) -> None:
        self._secret = secret_key

    def _s(self, purpose: str) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret, salt=f"lpcall.{purpose}")

    def sign(self, purpose: str, payload: dict[str, Any]) -> str:
        return self._s(purpose).dumps(payload)

    def verify(self, purpose: str, token: Any, max_age: float) -> dict[str, Any]:
        """Return the payload or raise NotAllowedError (code TOKEN_EXPIRED / TOKEN_INVALID)."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise NotAllowedError("missing or malformed token", code="TOKEN_INVALID", field="token")
        try:
            data = self._s(purpose).loads(token, max_age=math.ceil(max_age))
        except SignatureExpired:
            raise NotAllowedError("token expired", code="TOKEN_EXPIRED", field="token") from None
        except BadSignature:
            raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token") from None
        if not isinstance(data, dict):
            raise NotAllowedError("token is not valid", code="TOKEN_INVALID", field="token")
        return data
