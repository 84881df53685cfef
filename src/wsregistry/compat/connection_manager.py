"""A drop-in for the hand-written FastAPI ``ConnectionManager``, backed by the registry.

Many applications carry a manager like this one (often named
``WebSocketManager``; the name does not matter)::

    class ConnectionManager:
        def __init__(self):
            self.active_connections: dict[str, WebSocket] = {}
        async def connect(self, user_id, websocket): ...      # accept + store
        def disconnect(self, user_id): ...                      # del the entry
        async def send_message(self, user_id, message: dict): ...
        async def broadcast(self, message): ...
        def get_connection(self, user_id) -> WebSocket | None: ...

    @lru_cache
    def get_websocket_manager() -> ConnectionManager: ...

    async def notify_frontend(user_id, manager, json_data) -> bool: ...

This module has the same names and call shapes, so migrating is an import
change; behind them, the :class:`~wsregistry.Registry` keeps every tab of a user
(not just the last one), never lets a handler's cleanup remove a newer
connection, isolates slow clients with bounded queues, and (with
``WSREGISTRY_REDIS_URL`` set) reaches users connected to other workers.
The behaviour changes are listed in the migration guide (``docs/migration.md``).

The registry needs a running lifecycle. Either give FastAPI the manager's
lifespan (``FastAPI(lifespan=manager.lifespan)``, or enter
``manager.lifespan(app)`` in your own), which also closes every socket with
1001 on shutdown; or let the first :meth:`ConnectionManager.connect` start it
on the loop that serves the sockets (asyncio only). Calls made while it is not
running (no lifespan, nobody connected yet) start nothing: nobody is online
then. Calls from another thread's event loop (``asyncio.run`` in a worker
thread) are carried out by the registry's own loop.

Tests that mock the WebSocket work: anything with the methods the manager calls
(``accept``, ``send_text``, ``send_bytes``, ``send_json``, ``close``) is
accepted, and a message is written with the socket's own ``send_json``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from .._types import check_key
from ..errors import BackendUnavailable, NotConnected, RegistryClosed
from ..registry import Registry
from ._managed import NOT_RUNNING, LazyRunner, SocketTransport, check_socket

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .. import Key
    from ..backends.base import Backend
    from ..connection import Connection

__all__ = [
    "MFA_DETAIL",
    "REDIS_NAMESPACE_ENV",
    "REDIS_URL_ENV",
    "REQUIRED_MESSAGES",
    "ConnectionManager",
    "get_websocket_manager",
    "logger",
    "notify_frontend",
]

REDIS_URL_ENV = "WSREGISTRY_REDIS_URL"
"""The environment variable :func:`get_websocket_manager` reads to use the Redis backend."""

REDIS_NAMESPACE_ENV = "WSREGISTRY_REDIS_NAMESPACE"
"""The Redis key prefix :func:`get_websocket_manager` uses (default ``wsregistry``)."""

REQUIRED_MESSAGES = frozenset({"MFA_REQUIRED"})
"""``json_data["message"]`` values that :func:`notify_frontend` must deliver (else HTTP 400)."""

MFA_DETAIL = "No WebSocket connection for user {user_id}"
"""The ``detail`` of :func:`notify_frontend`'s HTTP 400 (``str.format`` with ``user_id``)."""

logger = logging.getLogger(__name__)
"""Where connect and disconnect lines go (INFO, ``WebSocket connected for user 42``).

Configure it like any logger (its name is ``wsregistry.compat.connection_manager``),
patch it in tests, or give a manager its own (``ConnectionManager(logger=...)``)."""

# The connection registered by the current handler task: lets ``disconnect(user_id)``
# remove the caller's own connection, never a newer tab or reconnect of the same user.
_own_connection: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "wsregistry_compat_connection", default=None
)


class ConnectionManager:
    """The hand-written manager's interface over a :class:`~wsregistry.Registry`.

    Args:
        registry: the registry to use (default: a new in-memory one). Pass one
            with a :class:`~wsregistry.backends.redis.RedisBackend` for several
            workers, or use :func:`get_websocket_manager`, which reads
            ``WSREGISTRY_REDIS_URL``.
        logger: where connect and disconnect lines go (default: :data:`logger`).

    Attributes:
        registry: the registry behind the manager, for everything the old
            interface cannot say (groups, presence, stats).
    """

    def __init__(
        self, registry: Registry | None = None, *, logger: logging.Logger | None = None
    ) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a wsregistry Registry, got {type(registry).__name__}"
            )
        self.registry = registry if registry is not None else Registry()
        self._logger = logger
        self._sockets: weakref.WeakKeyDictionary[Connection, WebSocket] = (
            weakref.WeakKeyDictionary()
        )
        self._runner = LazyRunner(self.registry)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.registry!r}>"

    @property
    def logger(self) -> logging.Logger:
        """The logger of connect and disconnect lines.

        The module's :data:`logger` unless one was given, looked up at each
        line, so patching the module's logger works.
        """
        return self._logger if self._logger is not None else logger

    # -- lifecycle ---------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the registry for the life of the application.

        Give it to FastAPI/Starlette (``FastAPI(lifespan=manager.lifespan)``) or
        enter it in your own lifespan. On exit, queued messages are drained and
        the sockets still open are closed with 1001 (plain uvicorn closes them
        with 1012 before the lifespan ends; see :mod:`wsregistry.adapters.uvicorn`).
        Entered again after it ended (a test suite that opens a ``TestClient``
        per test), it starts a fresh run.
        """
        async with self._runner.lifespan():
            yield

    async def aclose(self) -> None:
        """Stop a registry that :meth:`connect` started lazily. Idempotent.

        Does nothing when the registry runs under :meth:`lifespan`.
        """
        await self._runner.aclose()

    # -- the hand-written manager's interface ------------------------------------------

    @property
    def active_connections(self) -> Mapping[Key, WebSocket]:
        """A live, read-only view: user id → their newest WebSocket in this process.

        ``user_id in manager.active_connections``, ``len(...)``, iteration and
        ``.get(user_id)`` work as before; assigning or deleting entries does not
        (use :meth:`connect` and :meth:`disconnect`).
        """
        return _ActiveConnections(self)

    async def connect(self, user_id: Key, websocket: WebSocket) -> None:
        """Accept ``websocket`` and register it under ``user_id``, next to the user's other tabs.

        Both arguments are checked **before** the socket is accepted; any object
        with the methods the manager calls (``accept``, ``send_text``,
        ``send_bytes``, ``send_json``, ``close``) will do, a mock too. Starts
        the registry on this event loop when no lifespan did.

        Raises:
            TypeError: ``user_id`` is not ``str``/``int``, or ``websocket`` lacks
                one of those methods (nothing was accepted then).
            RegistryNotStarted: no lifespan runs and the loop is not asyncio.
            RegistryClosed: the registry is shutting down (the socket is
                closed with 1001).
        """
        check_key(user_id)
        check_socket(websocket)
        await websocket.accept()
        await self._runner.start_here("connect")
        transport = SocketTransport(websocket)
        try:
            conn = await self.registry.connect(transport, key=user_id)
        except RegistryClosed:
            await transport.close(1001, "server shutdown")
            raise
        self._sockets[conn] = websocket
        _own_connection.set(conn)
        self.logger.info("WebSocket connected for user %s", user_id)

    def disconnect(self, user_id: Key, websocket: WebSocket | None = None) -> None:
        """Unregister a connection of ``user_id`` (synchronous, idempotent; the socket stays open).

        * With ``websocket``: exactly that socket's connection.
        * Without it, from the handler that called :meth:`connect` (the usual
          ``except WebSocketDisconnect: manager.disconnect(user_id)``): that
          handler's own connection only. A reconnect that registered a newer
          socket for the same user is never removed by the old handler's cleanup.
        * Without it, from anywhere else: every connection of ``user_id`` in this
          process (the old "forget this user").
        """
        if websocket is not None:
            for conn in self.registry.lookup(user_id):
                if self._sockets.get(conn) is websocket:
                    self.registry.disconnect_nowait(conn)
        else:
            own = _own_connection.get()
            if own is not None and own.key == user_id and own in self._sockets:
                self.registry.disconnect_nowait(own)
            else:
                for conn in self.registry.lookup(user_id):
                    self.registry.disconnect_nowait(conn)
        self.logger.info("WebSocket disconnected for user %s", user_id)

    async def send_message(self, user_id: Key, message: Any) -> int:
        """Queue ``message`` (a ``dict`` is sent as JSON) to every tab of ``user_id``.

        Returns when the message is queued, without waiting for slow clients;
        reaches tabs on other workers with a shared backend. Sending to an
        offline user is a no-op, as before, and so is sending while the registry
        is not running (nobody is connected then). Works from any event loop (a
        worker thread's ``asyncio.run`` too).

        Returns:
            How many connections of this process the message was queued to.

        Raises:
            SerializationError: the message cannot be serialised (nothing sent).
        """
        if not self.registry.running:
            return 0
        try:
            queued = await self.registry.send(user_id, message)
        except NOT_RUNNING:
            return 0
        await anyio.lowlevel.checkpoint()  # the sockets' own sends start, as they did before
        return queued

    async def broadcast(self, message: Any) -> int:
        """Queue ``message`` to every connection (every worker with a shared backend).

        A dead or slow client never stops the others. Like :meth:`send_message`,
        a no-op while the registry is not running.

        Returns:
            How many connections of this process the message was queued to.
        """
        if not self.registry.running:
            return 0
        try:
            queued = await self.registry.broadcast(message)
        except NOT_RUNNING:
            return 0
        await anyio.lowlevel.checkpoint()
        return queued

    def get_connection(self, user_id: Key) -> WebSocket | None:
        """The user's **newest** WebSocket in this process, or ``None``.

        With several tabs this is one of them: use :meth:`get_connections`
        for all, and :meth:`send_message` to write (it reaches every tab).
        """
        sockets = self.get_connections(user_id)
        return sockets[-1] if sockets else None

    def get_connections(self, user_id: Key) -> list[WebSocket]:
        """Every WebSocket of ``user_id`` in this process, oldest first."""
        sockets = self._sockets
        return [sockets[conn] for conn in self.registry.lookup(user_id) if conn in sockets]

    async def is_online(self, user_id: Key) -> bool:
        """Whether ``user_id`` has a connection on any worker (``False`` while not running).

        Raises:
            BackendUnavailable: the backend cannot tell about other workers.
        """
        if not self.registry.running:
            return False
        try:
            return await self.registry.is_online(user_id)
        except NOT_RUNNING:
            return False

    async def notify(self, user_id: Key, message: Any, *, required: bool) -> bool:
        """Send ``message`` to every tab of ``user_id`` if the user is connected anywhere.

        What :func:`notify_frontend` does with this manager.

        Returns:
            ``True`` if the user has a connection on some worker (the message
            was queued to all of them), ``False`` if not (nothing was sent).

        Raises:
            NotConnected: ``required`` and the user has no connection anywhere.
            BackendUnavailable: ``required``, and the backend cannot tell whether
                the user is connected to another worker.
            SerializationError: the message cannot be serialised (nothing sent).
        """
        registry = self.registry
        try:
            if not registry.running:
                raise NotConnected(user_id)
            if required:
                await registry.send(user_id, message, require=True)
            else:
                try:
                    online = await registry.is_online(user_id)
                except BackendUnavailable:  # other workers unreachable: this one's tabs only
                    online = bool(registry.lookup(user_id))
                if not online:
                    return False
                await registry.send(user_id, message)
        except NOT_RUNNING:
            if required:
                raise NotConnected(user_id) from None
            return False
        except NotConnected:
            if required:
                raise
            return False
        await anyio.lowlevel.checkpoint()
        return True


class _ActiveConnections(Mapping["Key", "WebSocket"]):
    """User id → newest WebSocket in this process, computed from the registry on access."""

    __slots__ = ("_manager",)

    def __init__(self, manager: ConnectionManager) -> None:
        self._manager = manager

    def __getitem__(self, user_id: Key) -> WebSocket:
        websocket = self._manager.get_connection(user_id)
        if websocket is None:
            raise KeyError(user_id)
        return websocket

    def __iter__(self) -> Iterator[Key]:
        seen: dict[Key, None] = {}
        for conn in self._manager.registry.connections():
            seen.setdefault(conn.key)
        return iter(seen)

    def __len__(self) -> int:
        return self._manager.registry.stats().keys

    def __contains__(self, user_id: object) -> bool:
        if not isinstance(user_id, (str, int)) or isinstance(user_id, bool):
            return False
        return bool(self._manager.registry.lookup(user_id))


@functools.lru_cache(maxsize=1)
def get_websocket_manager() -> ConnectionManager:
    """The process-wide manager (cached), usable as a FastAPI dependency.

    Uses the Redis backend when ``WSREGISTRY_REDIS_URL`` is set (read on the
    first call, with the namespace in ``WSREGISTRY_REDIS_NAMESPACE``), so
    several workers share users; else the in-memory backend.
    """
    url = os.environ.get(REDIS_URL_ENV)
    backend: Backend | None = None
    if url:
        from ..backends.redis import RedisBackend

        backend = RedisBackend(url, namespace=os.environ.get(REDIS_NAMESPACE_ENV) or "wsregistry")
    return ConnectionManager(Registry(backend=backend))


async def notify_frontend(
    user_id: Key,
    manager: Any,
    json_data: dict[str, Any],
    *,
    required: bool | None = None,
) -> bool:
    """Send ``json_data`` to every tab of ``user_id``; say whether the user was reachable.

    Args:
        user_id: the recipient.
        manager: the :class:`ConnectionManager`, or whatever the application
            substitutes for it (a subclass, or a test double or mock with
            ``get_connection`` and ``send_message``, used as the hand-written
            function used them).
        json_data: the message (sent as JSON).
        required: whether a missing connection is an error. Default: when
            ``json_data.get("message")`` is in :data:`REQUIRED_MESSAGES`
            (``"MFA_REQUIRED"``).

    Returns:
        ``True`` if the user has a connection (on some worker, with this
        module's manager), so the message was queued to it; ``False`` if not
        (nothing was sent).

    Raises:
        fastapi.HTTPException: status 400 with the detail
            :data:`MFA_DETAIL` (``No WebSocket connection for user 42``) when
            the message is required and the user has no connection anywhere.
        BackendUnavailable: required, and the backend cannot tell whether the
            user is connected to another worker.
    """
    if required is None:
        required = json_data.get("message") in REQUIRED_MESSAGES
    if isinstance(manager, ConnectionManager) and isinstance(
        getattr(manager, "registry", None), Registry
    ):
        try:
            return await manager.notify(user_id, json_data, required=required)
        except NotConnected:
            raise _http_error(400, MFA_DETAIL.format(user_id=user_id)) from None
    # A substituted or mocked manager: its public interface, as the hand-written function.
    if manager.get_connection(user_id):
        await manager.send_message(user_id, json_data)
        return True
    if required:
        raise _http_error(400, MFA_DETAIL.format(user_id=user_id))
    return False


def _http_error(status: int, detail: str) -> Exception:
    try:
        import fastapi
    except ImportError:  # a Starlette-only application
        import starlette.exceptions

        return starlette.exceptions.HTTPException(status_code=status, detail=detail)
    return fastapi.HTTPException(status_code=status, detail=detail)
