"""WebSocket close codes used by wsregistry and its adapters."""

from __future__ import annotations

import enum

__all__ = ["CloseCode"]


class CloseCode(enum.IntEnum):
    """Close codes the registry and the adapters send.

    The 1xxx codes are RFC 6455's; the 44xx codes mirror the HTTP status a
    browser cannot see when a server refuses a WebSocket after accepting it.
    """

    NORMAL = 1000
    """The application closed the connection."""
    GOING_AWAY = 1001
    """The registry (server) is shutting down."""
    POLICY_VIOLATION = 1008
    """Generic refusal (e.g. a handshake check failed and no HTTP status could be sent)."""
    MESSAGE_TOO_BIG = 1009
    """An inbound message exceeded the adapter's size limit."""
    INTERNAL_ERROR = 1011
    """The transport failed while sending."""
    TRY_AGAIN_LATER = 1013
    """Slow consumer: the outbound queue overflowed; reconnect with back-off."""
    UNAUTHORIZED = 4401
    """The authentication hook refused the connection (browser-friendly mode)."""
    FORBIDDEN = 4403
    """The ``Origin`` header is not allowed (browser-friendly mode)."""
    TOO_MANY_CONNECTIONS = 4429
    """The key already holds its maximum number of connections."""
