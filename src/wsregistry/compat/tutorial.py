"""A drop-in for the ``ConnectionManager`` of FastAPI's WebSockets tutorial.

FastAPI's documentation ("WebSockets", "Handling disconnections and multiple
clients") defines this manager in the application's module::

    class ConnectionManager:
        def __init__(self):
            self.active_connections: list[WebSocket] = []
        async def connect(self, websocket: WebSocket): ...            # accept + append
        def disconnect(self, websocket: WebSocket): ...               # remove
        async def send_personal_message(self, message: str, websocket: WebSocket): ...
        async def broadcast(self, message: str): ...                  # send_text to each

Replace the class with one import line and the application is unchanged::

    from wsregistry.compat.tutorial import ConnectionManager

    manager = ConnectionManager()

Behind the same calls, a :class:`~wsregistry.Registry` keeps the sockets: a
broadcast queues to every socket and returns without waiting on any of them (a
slow one is closed with 1013 when its bounded queue is full, a dead one is
unregistered), and personal messages keep their order with broadcasts. The
registry starts on the first :meth:`ConnectionManager.connect` (or give FastAPI
``lifespan=manager.lifespan`` for a clean shutdown that closes sockets with
1001). Each socket is registered under a key of its own; use
:mod:`wsregistry.compat.connection_manager` or the adapters to address users.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from ..errors import RegistryClosed
from ..registry import Registry
from ._managed import NOT_RUNNING, LazyRunner, SocketTransport, check_socket

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from ..connection import Connection

__all__ = ["ConnectionManager"]

logger = logging.getLogger(__name__)


class ConnectionManager:
    """The FastAPI tutorial's manager over a :class:`~wsregistry.Registry`.

    Args:
        registry: the registry to use (default: a new in-memory one).

    Attributes:
        registry: the registry behind the manager.
    """

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a wsregistry Registry, got {type(registry).__name__}"
            )
        self.registry = registry if registry is not None else Registry()
        self._runner = LazyRunner(self.registry)
        # socket → its connection; by id() since a Starlette WebSocket is not hashable
        self._by_socket: dict[int, Connection] = {}
        self._sockets: weakref.WeakKeyDictionary[Connection, WebSocket] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"<tutorial ConnectionManager {self.registry!r}>"

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the registry for the life of the application (``FastAPI(lifespan=...)``)."""
        async with self._runner.lifespan():
            yield

    async def aclose(self) -> None:
        """Stop a registry that :meth:`connect` started. Idempotent."""
        await self._runner.aclose()

    @property
    def active_connections(self) -> list[WebSocket]:
        """The sockets connected to this process, oldest first (a snapshot)."""
        sockets = self._sockets
        return [sockets[conn] for conn in self.registry.connections() if conn in sockets]

    async def connect(self, websocket: WebSocket) -> None:
        """Accept ``websocket`` and register it.

        Raises:
            TypeError: ``websocket`` lacks a method the manager calls (checked
                before accepting).
            RegistryClosed: the registry is shutting down (the socket is
                closed with 1001).
        """
        check_socket(websocket)
        await websocket.accept()
        await self._runner.start_here("connect")
        transport = SocketTransport(websocket)
        try:
            conn = await self.registry.connect(transport, key=uuid.uuid4().hex)
        except RegistryClosed:
            await transport.close(1001, "server shutdown")
            raise
        for key, old in list(self._by_socket.items()):  # forget what the registry dropped
            if old.closed:
                del self._by_socket[key]
        self._by_socket[id(websocket)] = conn
        self._sockets[conn] = websocket
        logger.debug("connected %r", conn)

    def disconnect(self, websocket: WebSocket) -> None:
        """Unregister ``websocket`` (synchronous, idempotent; the socket stays open)."""
        conn = self._by_socket.pop(id(websocket), None)
        if conn is not None:
            self.registry.disconnect_nowait(conn)

    async def send_personal_message(self, message: Any, websocket: WebSocket) -> None:
        """Queue ``message`` (``str``: a text frame) to ``websocket`` only, in order.

        A socket the manager does not know is written to directly, as before.

        Raises:
            SerializationError: the message cannot be serialised.
        """
        conn = self._by_socket.get(id(websocket))
        if conn is None or conn.closed:
            await websocket.send_text(message)
            return
        await conn.send(message)
        await anyio.lowlevel.checkpoint()

    async def broadcast(self, message: Any) -> int:
        """Queue ``message`` to every connected socket; never waits on a slow one.

        Returns:
            How many sockets of this process it was queued to.
        """
        if not self.registry.running:
            return 0
        try:
            queued = await self.registry.broadcast(message)
        except NOT_RUNNING:
            return 0
        await anyio.lowlevel.checkpoint()
        return queued
