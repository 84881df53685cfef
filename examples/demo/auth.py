"""Sign-in without a user store: the name is signed into a cookie (and a token).

There is no password: this is a demo. What it shows is the shape of real
authentication: the HTTP side issues a signed credential and the WebSocket
adapter's ``authenticate`` hook verifies it *before* the socket is accepted.
"""

from __future__ import annotations

import re

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "wsregistry_demo"
MAX_AGE_SECONDS = 7 * 24 * 3600
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,24}")


class Signer:
    """Issues and verifies the signed session token that carries a user name."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the signing secret must not be empty")
        self._serializer = URLSafeTimedSerializer(secret, salt="wsregistry-demo-session")

    def issue(self, name: str) -> str:
        """A token for ``name`` (which must match :data:`NAME_PATTERN`)."""
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError("a name is 1-24 letters, digits, '-' or '_'")
        return self._serializer.dumps({"name": name})

    def verify(self, token: str | None) -> str | None:
        """The name in ``token``, or ``None`` if it is missing, forged or expired."""
        if not token:
            return None
        try:
            data = self._serializer.loads(token, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return None
        name = data.get("name") if isinstance(data, dict) else None
        return name if isinstance(name, str) and NAME_PATTERN.fullmatch(name) else None
