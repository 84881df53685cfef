"""Connection: the application's handle on one registered socket.

A ``Connection`` is a thin, read-only view of the registry's record of the
socket (``_outbox.Outbox``); what it does (send, close, abort, wait) is done
by the registry run that owns it, seen here only through the small
``ConnectionOwner`` protocol, so this module imports no part of the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._outbox import ConnectionState
from .codes import CloseCode

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._outbox import Outbox
    from ._types import Key
    from .transport import Transport

__all__ = ["Connection", "ConnectionState"]


class ConnectionOwner(Protocol):
    """What a :class:`Connection` needs from the registry run that registered it."""

    async def send_to(self, outbox: Outbox, message: Any) -> None: ...

    async def close(self, outbox: Outbox, code: int, reason: str, *, flush: bool) -> None: ...

    def abort(self, outbox: Outbox) -> None: ...

    async def wait_closed(self, outbox: Outbox) -> None: ...


class Connection:
    """One live socket registered under a key.

    Created by :meth:`Registry.connect`; do not instantiate it yourself. Its
    identity (``id``, ``key``) is read-only; ``metadata`` is the application's
    own dict.

    Attributes:
        connected_at: when it was registered (``time.time()``).
    """

    __slots__ = ("__weakref__", "_metadata", "_outbox", "_owner", "connected_at")

    def __init__(
        self,
        outbox: Outbox,
        owner: ConnectionOwner,
        *,
        connected_at: float,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._outbox = outbox
        self._owner = owner
        self._metadata: dict[str, Any] | None = dict(metadata) if metadata else None
        self.connected_at = connected_at

    def __repr__(self) -> str:
        outbox = self._outbox
        return f"<Connection id={outbox.id} key={outbox.key!r} {outbox.state.value}>"

    @property
    def id(self) -> str:
        """Unique across the cluster (random 128-bit hex). Read-only."""
        return self._outbox.id

    @property
    def key(self) -> Key:
        """The key the connection is registered under. Read-only."""
        return self._outbox.key

    @property
    def metadata(self) -> dict[str, Any]:
        """The application's data about this connection (a dict you may update)."""
        metadata = self._metadata
        if metadata is None:
            metadata = self._metadata = {}
        return metadata

    @property
    def transport(self) -> Transport:
        """The transport the registry writes to."""
        return self._outbox.transport

    @property
    def groups(self) -> frozenset[str]:
        """The groups this connection belongs to (a snapshot)."""
        return frozenset(self._outbox.groups)

    @property
    def state(self) -> ConnectionState:
        """Open, closing (flushing before the close frame) or closed."""
        return self._outbox.state

    @property
    def closed(self) -> bool:
        """Whether the connection is no longer registered (closing or closed)."""
        return self._outbox.state is not ConnectionState.OPEN

    @property
    def close_code(self) -> int | None:
        """The close code the registry used, if the registry closed it."""
        return self._outbox.close_code

    @property
    def queued(self) -> int:
        """Messages waiting in this connection's outbound queue."""
        queue = self._outbox.queue
        return len(queue) if queue else 0

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or being written for this connection right now."""
        return self._outbox.idle

    @property
    def queued_bytes(self) -> int:
        """UTF-8 bytes of payload waiting in this connection's outbound queue."""
        return self._outbox.queued_bytes

    async def send(self, message: Any) -> None:
        """Queue ``message`` for this connection only.

        Serialises like :meth:`Registry.send`; keeps order with every other
        send and broadcast that targets this connection. Does not wait for the
        peer. A checkpoint. Awaited from another event loop or thread, it is
        handed to the registry's loop.

        Raises:
            SerializationError: the message cannot be serialised (nothing queued).
            ConnectionClosed: the connection is no longer registered (also
                after the registry shut down, which closed it: ``code`` 1001).
        """
        await self._owner.send_to(self._outbox, message)

    async def close(
        self, code: int = CloseCode.NORMAL, reason: str = "", *, flush: bool = True
    ) -> None:
        """Unregister the connection, deliver what is queued, then close the socket.

        Idempotent. With ``flush`` (the default) messages already queued are
        written before the close frame; flushing and the transport's close
        together take at most the registry's ``close_timeout``, after which
        the socket is aborted and what is left is counted as dropped. With
        ``flush=False`` the queue is discarded at once (see also :meth:`abort`).
        In a cancelled scope it unregisters, aborts the transport (if it can)
        and raises the cancellation.
        """
        await self._owner.close(self._outbox, code, reason, flush=flush)

    def abort(self) -> None:
        """Unregister at once, discard the queue and drop the socket without a close handshake.

        Non-blocking and idempotent. The transport's ``abort()`` is used when
        it has one; otherwise the socket is closed with 1011 in the background.
        """
        self._owner.abort(self._outbox)

    async def wait_closed(self) -> None:
        """Wait until the connection is unregistered (by anyone, for any reason)."""
        await self._owner.wait_closed(self._outbox)
