"""A drop-in for the hand-written FastAPI ``ConnectionManager``, backed by the registry.

Many applications carry a manager like this one::

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
1001 on shutdown; or let the first call start it lazily (asyncio only).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable, NotConnected, RegistryClosed, RegistryNotStarted
from ..registry import Registry

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .._types import Key
    from ..backends.base import Backend
    from ..connection import Connection

__all__ = [
    "REDIS_NAMESPACE_ENV",
    "REDIS_URL_ENV",
    "REQUIRED_MESSAGES",
    "ConnectionManager",
    "get_websocket_manager",
    "notify_frontend",
]

REDIS_URL_ENV = "WSREGISTRY_REDIS_URL"
"""The environment variable :func:`get_websocket_manager` reads to use the Redis backend."""

REDIS_NAMESPACE_ENV = "WSREGISTRY_REDIS_NAMESPACE"
"""The Redis key prefix :func:`get_websocket_manager` uses (default ``wsregistry``)."""

REQUIRED_MESSAGES = frozenset({"MFA_REQUIRED"})
"""``json_data["message"]`` values that :func:`notify_frontend` must deliver (else HTTP 400)."""

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

    Attributes:
        registry: the registry behind the manager, for everything the old
            interface cannot say (groups, presence, stats).
    """

    def __init__(self, registry: Registry | None = None) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a wsregistry Registry, got {type(registry).__name__}"
            )
        self.registry = registry if registry is not None else Registry()
        self._sockets: weakref.WeakKeyDictionary[Connection, WebSocket] = (
            weakref.WeakKeyDictionary()
        )
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lifespan_over = False

    def __repr__(self) -> str:
        return f"<ConnectionManager {self.registry!r}>"

    # -- lifecycle ---------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Run the registry for the life of the application.

        Give it to FastAPI/Starlette (``FastAPI(lifespan=manager.lifespan)``) or
        enter it in your own lifespan. On exit, queued messages are drained and
        the sockets still open are closed with 1001 (plain uvicorn closes them
        with 1012 before the lifespan ends; see :mod:`wsregistry.adapters.uvicorn`).
        """
        try:
            async with self.registry:
                yield
        finally:
            self._lifespan_over = True

    async def aclose(self) -> None:
        """Stop a registry that the manager started lazily. Idempotent.

        Does nothing when the registry runs under :meth:`lifespan`.
        """
        runner = self._runner
        if runner is None or self._stop is None:
            return
        self._stop.set()
        await runner

    async def _ensure_running(self, operation: str) -> None:
        """Start the registry on first use when no lifespan started it (asyncio only)."""
        if self.registry.running:
            return
        if self._lifespan_over:
            raise RegistryClosed(operation)
        if self._ready is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RegistryNotStarted(operation) from None
            self._ready = loop.create_future()
            self._stop = asyncio.Event()
            self._runner = loop.create_task(self._run(self._ready, self._stop))
        await asyncio.shield(self._ready)

    async def _run(self, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        try:
            async with self.registry:
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise

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

        Raises:
            TypeError: ``user_id`` is not ``str``/``int``.
            RegistryNotStarted: no lifespan runs and the loop is not asyncio.
        """
        from ..adapters.starlette import StarletteTransport

        await websocket.accept()
        await self._ensure_running("connect")
        conn = await self.registry.connect(StarletteTransport(websocket), key=user_id)
        self._sockets[conn] = websocket
        _own_connection.set(conn)

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
            return
        own = _own_connection.get()
        if own is not None and own.key == user_id:
            self.registry.disconnect_nowait(own)
            return
        for conn in self.registry.lookup(user_id):
            self.registry.disconnect_nowait(conn)

    async def send_message(self, user_id: Key, message: Any) -> int:
        """Queue ``message`` (a ``dict`` is sent as JSON) to every tab of ``user_id``.

        Returns when the message is queued, without waiting for slow clients;
        reaches tabs on other workers with a shared backend. Sending to an
        offline user is a no-op, as before.

        Returns:
            How many connections of this process the message was queued to.
        """
        await self._ensure_running("send_message")
        return await self.registry.send(user_id, message)

    async def broadcast(self, message: Any) -> int:
        """Queue ``message`` to every connection (every worker with a shared backend).

        A dead or slow client never stops the others.

        Returns:
            How many connections of this process the message was queued to.
        """
        await self._ensure_running("broadcast")
        return await self.registry.broadcast(message)

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
        """Whether ``user_id`` has a connection on any worker."""
        await self._ensure_running("is_online")
        return await self.registry.is_online(user_id)


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
    manager: ConnectionManager,
    json_data: dict[str, Any],
    *,
    required: bool | None = None,
) -> bool:
    """Send ``json_data`` to every tab of ``user_id``; say whether the user was reachable.

    Args:
        user_id: the recipient.
        manager: the :class:`ConnectionManager`.
        json_data: the message (sent as JSON).
        required: whether a missing connection is an error. Default: when
            ``json_data.get("message")`` is in :data:`REQUIRED_MESSAGES`
            (``"MFA_REQUIRED"``).

    Returns:
        ``True`` if the user has a connection on some worker (the message was
        queued to it), ``False`` if not (nothing was sent).

    Raises:
        fastapi.HTTPException: status 400 when the message is required and the
            user has no connection anywhere.
        BackendUnavailable: required, and the backend cannot tell whether the
            user is connected to another worker.
    """
    if required is None:
        required = json_data.get("message") in REQUIRED_MESSAGES
    registry = manager.registry
    await manager._ensure_running("notify_frontend")
    if required:
        try:
            await registry.send(user_id, json_data, require=True)
        except NotConnected:
            raise _http_error(400, f"no WebSocket connection for user {user_id!r}") from None
        return True
    if not registry.lookup(user_id):
        try:
            if not await registry.is_online(user_id):
                return False
        except BackendUnavailable:
            return False  # other workers are unreachable: nothing could be sent there
    await registry.send(user_id, json_data)
    return True


def _http_error(status: int, detail: str) -> Exception:
    try:
        import fastapi
    except ImportError:  # a Starlette-only application
        import starlette.exceptions

        return starlette.exceptions.HTTPException(status_code=status, detail=detail)
    return fastapi.HTTPException(status_code=status, detail=detail)
