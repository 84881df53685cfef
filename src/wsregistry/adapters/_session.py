"""The life of one admitted socket, shared by every adapter.

An adapter checks the handshake (``Endpoint._admit``), then calls
``Endpoint._run`` with its transport and a ``receive`` coroutine: it accepts, registers the socket,
evicts over-limit connections, runs the application's hooks and the receive
loop, and unregisters on every exit path (peer close, TCP reset, send error,
hook exception, cancellation, registry shutdown).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar

import anyio

from .._encode import encode
from ..codes import CloseCode
from ..errors import ConnectionClosed, RegistryClosed
from ..registry import Registry
from ._handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    EVICTED_REASON,
    TOO_BIG_REASON,
    Identity,
    LimitPolicy,
    Policy,
    Refusal,
    RefusalMode,
    Refuse,
    check_heartbeat,
    identify,
)
from ._workers import warn_if_split

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..connection import Connection
    from ..transport import Transport

logger = logging.getLogger("wsregistry")

SocketT = TypeVar("SocketT")

OnMessage = Callable[["Connection", "str | bytes"], Awaitable[None]]
OnConnection = Callable[["Connection"], Awaitable[None]]

HEARTBEAT_MESSAGE = '{"type":"ping"}'
SHUTDOWN_REASON = "server shutdown"
UNAVAILABLE_REFUSAL = Refusal(503, CloseCode.GOING_AWAY, "server unavailable")


class EndpointOptions(TypedDict, total=False):
    """The options of every adapter endpoint, given as keyword arguments.

    :class:`~wsregistry.adapters.starlette.RegistryEndpoint`,
    :class:`~wsregistry.adapters.fastapi.RegistryEndpoint`,
    :class:`~wsregistry.adapters.websockets.RegistryHandler` and
    :func:`~wsregistry.adapters.websockets.serve` all take these keywords, checked
    by type checkers against this one definition. To share them between
    endpoints, build them once::

        options: EndpointOptions = {"allowed_origins": ["https://app.example.com"],
                                    "max_connections_per_key": 5}
        chat = RegistryEndpoint(registry, authenticate=authenticate, **options)

    Every key is optional; an unknown key raises ``TypeError``.
    """

    on_message: OnMessage | None
    """``async (conn, data)`` for every inbound message (``str`` for text frames,
    ``bytes`` for binary), one at a time per connection. An exception closes that
    connection with 1011 (logged at ERROR with its traceback)."""
    on_connect: OnConnection | None
    """``async (conn)`` once registered, before the first message."""
    on_disconnect: OnConnection | None
    """``async (conn)`` after unregistering, on every exit path (shielded from
    cancellation, bounded by the registry's ``close_timeout``)."""
    allowed_origins: Iterable[str] | None
    """Origins allowed to connect (``scheme://host[:port]``); ``None`` (default)
    checks nothing."""
    allow_missing_origin: bool
    """Admit requests without an ``Origin`` header (default ``True``)."""
    max_connections_per_key: int | None
    """Most connections one key may hold in this process (default ``None``: unlimited)."""
    limit_policy: LimitPolicy | str
    """``"reject_new"`` (default) or ``"evict_oldest"`` (only connections registered
    before the new one are evicted)."""
    refusal: RefusalMode | str
    """``"http"`` (default, refuse before accept) or ``"close"`` (accept, then close 44xx)."""
    max_message_size: int | None
    """Most bytes in one inbound message (default 1 MiB; ``None``: no check here);
    larger messages close the socket with 1009 (logged at INFO)."""
    heartbeat_interval: float | None
    """Seconds between app-level heartbeats (default ``None``: rely on the server's
    protocol pings)."""
    heartbeat_timeout: float | None
    """Close (1011) a peer that sends nothing within this many seconds of a heartbeat."""
    heartbeat_message: Any
    """The heartbeat sent (serialised like any message; default ``{"type":"ping"}``)."""


OPTION_NAMES = frozenset(EndpointOptions.__optional_keys__)


class Endpoint(Generic[SocketT]):
    """Options and hooks of one adapter endpoint; see the adapters for the public classes."""

    def __init__(
        self,
        registry: Registry,
        *,
        authenticate: Callable[[SocketT], Awaitable[Identity | None]],
        **options: Unpack[EndpointOptions],
    ) -> None:
        unknown = options.keys() - OPTION_NAMES
        if unknown:
            raise TypeError(
                f"unexpected endpoint option(s): {', '.join(sorted(unknown))} "
                "(see wsregistry.adapters.EndpointOptions)"
            )
        if not isinstance(registry, Registry):
            raise TypeError(
                f"registry must be a wsregistry Registry, got {type(registry).__name__}"
            )
        if not callable(authenticate):
            raise TypeError("authenticate must be an async callable returning Identity | None")
        on_message = options.get("on_message")
        on_connect = options.get("on_connect")
        on_disconnect = options.get("on_disconnect")
        for name, hook in (
            ("on_message", on_message),
            ("on_connect", on_connect),
            ("on_disconnect", on_disconnect),
        ):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name} must be an async callable or None")
        heartbeat_interval = options.get("heartbeat_interval")
        heartbeat_timeout = options.get("heartbeat_timeout")
        check_heartbeat(heartbeat_interval, heartbeat_timeout)
        self.registry = registry
        self._checked_workers = False
        self._authenticate = authenticate
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._policy = Policy(
            allowed_origins=options.get("allowed_origins"),
            allow_missing_origin=options.get("allow_missing_origin", True),
            max_connections_per_key=options.get("max_connections_per_key"),
            limit_policy=options.get("limit_policy", LimitPolicy.REJECT_NEW),
            refusal=options.get("refusal", RefusalMode.HTTP),
            max_message_size=options.get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE),
        )
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._heartbeat_payload = encode(
            options.get("heartbeat_message", HEARTBEAT_MESSAGE), registry.serializer
        )

    @property
    def refusal_mode(self) -> RefusalMode:
        """How refusals look on the wire (see :class:`~wsregistry.adapters.RefusalMode`)."""
        return self._policy.refusal_mode

    async def _admit(self, socket: SocketT, origin: str | None) -> Identity | Refusal:
        """Run the ``Origin`` check, the authentication hook and the limit check."""
        if not self.registry.running:
            logger.warning(
                "refusing a WebSocket: the registry is not running "
                "(start it in the app's lifespan; it stops at shutdown)"
            )
            return _refused(self.registry, "unavailable", UNAVAILABLE_REFUSAL)
        if not self._checked_workers:
            self._checked_workers = True
            warn_if_split(self.registry)
        refusal = self._policy.check_origin(origin)
        if refusal is not None:
            return _refused(self.registry, "origin", refusal)
        try:
            result = identify(await self._authenticate(socket))
        except Refuse as exc:
            return _refused(self.registry, "auth", exc.refusal)
        if isinstance(result, Refusal):
            return _refused(self.registry, "auth", result)
        refusal = self._policy.check_limit(self.registry, result.key)
        return result if refusal is None else _refused(self.registry, "limit", refusal)

    async def _run(
        self,
        transport: Transport,
        identity: Identity,
        receive: Callable[[], Awaitable[str | bytes | None]],
        *,
        accept: Callable[[], Awaitable[None]] | None = None,
        abort_scope: Callable[[anyio.CancelScope], None] | None = None,
        watch: Callable[[Serving], None] | None = None,
    ) -> None:
        """Register, serve and always unregister one socket.

        Args:
            transport: the registry's view of the socket.
            identity: what the authentication hook returned.
            receive: the next inbound message, or ``None`` once the peer is gone.
            accept: completes the handshake (when not done yet); runs while the
                connection counts against the key's limit.
            abort_scope: given the cancel scope of the receive loop, so that the
                transport's ``abort`` can end it.
            watch: given the :class:`Serving` handle once the socket is
                registered, so that the adapter can report at once that the
                server decided to close it or the peer is gone
                (:meth:`Serving.peer_gone`), even while a hook runs.
        """
        registry = self.registry
        policy = self._policy
        refusal = policy.check_limit(registry, identity.key)
        if refusal is not None:  # another handshake of the key won the race since admit()
            _refused(registry, "limit", refusal)
            if accept is not None:
                await accept()
            await transport.close(refusal.code, refusal.reason)
            return
        conn: Connection | None = None
        try:
            with policy.reserve(identity.key):
                if accept is not None:
                    await accept()
                    accept = None  # done with it: this frame lives as long as the socket
                try:
                    conn = await registry.connect(
                        transport,
                        key=identity.key,
                        groups=identity.groups,
                        metadata=identity.metadata,
                    )
                except RegistryClosed:
                    await transport.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)
                    return
            serving = Serving(registry, conn)
            if watch is not None:
                watch(serving)
                watch = None  # done with it: this frame lives as long as the socket
            try:
                # Evict, greet and receive in this one frame: every frame an idle
                # connection keeps alive costs a few hundred bytes.
                for old in policy.to_evict(registry, conn):
                    logger.info("evicting %r: %s", old, EVICTED_REASON)
                    await old.close(CloseCode.TOO_MANY_CONNECTIONS, EVICTED_REASON)
                if self._on_connect is not None:
                    await self._on_connect(conn)
                with anyio.CancelScope() as scope:
                    serving.scope = scope
                    if abort_scope is not None:
                        abort_scope(scope)
                    if self._heartbeat_interval is None:
                        await self._receive_loop(serving, receive, None)
                    else:
                        await self._receive_with_heartbeat(serving, receive)
            except Exception as exc:
                if isinstance(exc, ConnectionClosed) and conn.closed:
                    # a hook sent on its connection while it was being closed
                    logger.debug("%r closed while its handler ran: %s", conn, exc)
                else:
                    logger.exception("WebSocket handler of %r failed", conn)
                    await conn.close(CloseCode.INTERNAL_ERROR, "internal error")
            finally:
                # Unregistered without yielding first, even under cancellation; only
                # then does the application hear of it. (A plain try/finally rather
                # than registry.session(): no context-manager objects per connection.)
                registry.disconnect_nowait(conn)
        finally:
            if conn is not None and self._on_disconnect is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(registry.close_timeout):
                    await _call_hook(self._on_disconnect, conn)

    async def _receive_with_heartbeat(
        self, serving: Serving, receive: Callable[[], Awaitable[str | bytes | None]]
    ) -> None:
        alive = _Alive()
        error: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._heartbeat, serving.conn, alive)
            try:
                await self._receive_loop(serving, receive, alive)
            except Exception as exc:
                # Raised as itself, not wrapped in an ExceptionGroup by the task
                # group: the caller classifies it the same with or without heartbeat.
                error = exc
            tasks.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _receive_loop(
        self,
        serving: Serving,
        receive: Callable[[], Awaitable[str | bytes | None]],
        alive: _Alive | None,
    ) -> None:
        conn = serving.conn
        policy = self._policy
        on_message = self._on_message
        while not serving.stopped:
            serving.receiving = True
            try:
                data = await receive()
            finally:
                serving.receiving = False
            if data is None or serving.stopped:
                return
            if conn.close_code is not None:
                continue  # the registry closed it: wait for the socket, drop the rest
            if alive is not None:
                alive.last = anyio.current_time()
            if policy.too_big(data):
                _refused(self.registry, "size", None)
                logger.info(
                    "closing %r: inbound message of over %d bytes", conn, policy.max_message_size
                )
                await conn.close(CloseCode.MESSAGE_TOO_BIG, TOO_BIG_REASON)
                return
            if on_message is not None:
                await on_message(conn, data)

    async def _heartbeat(self, conn: Connection, alive: _Alive) -> None:
        interval = self._heartbeat_interval
        timeout = self._heartbeat_timeout
        assert interval is not None
        while True:
            await anyio.sleep(interval)
            pinged_at = anyio.current_time()
            try:
                await conn.send(self._heartbeat_payload)
            except ConnectionClosed:
                return
            if timeout is None:
                continue
            await anyio.sleep(timeout)
            if alive.last < pinged_at:
                logger.info("closing %r: no message within %ss of a heartbeat", conn, timeout)
                await conn.close(CloseCode.INTERNAL_ERROR, "heartbeat timeout")
                return


class Serving:
    """An adapter's handle on a connection it serves (one per registered socket)."""

    __slots__ = ("conn", "gone", "receiving", "registry", "scope", "stopped")

    def __init__(self, registry: Registry, conn: Connection) -> None:
        self.registry = registry
        self.conn = conn
        self.scope: anyio.CancelScope | None = None
        self.receiving = False
        self.gone = False
        self.stopped = False

    def peer_gone(self, *, stop: bool) -> None:
        """The peer can no longer receive: unregister now. Idempotent.

        Synchronous, callable from the server's protocol callbacks (same event
        loop). With ``stop`` (the server decided to close: nothing more will be
        read), the receive loop also ends: at once if it waits for a message,
        after the running hook returns otherwise (a hook is never interrupted).
        Without it, the loop goes on handing over what the peer sent before it
        left, until ``receive`` reports the end.
        """
        if not self.gone:
            self.gone = True
            self.registry.disconnect_nowait(self.conn)
        if stop and not self.stopped:
            self.stopped = True
            if self.receiving and self.scope is not None:
                self.scope.cancel()


class _Alive:
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = anyio.current_time()


RefusalT = TypeVar("RefusalT", Refusal, None)


def _refused(registry: Registry, reason: str, refusal: RefusalT) -> RefusalT:
    """Tell the registry's observer (if any) of a refusal; returns ``refusal``."""
    observer = registry.observer
    if observer is not None:
        observer.refused(reason)
    return refusal


async def _call_hook(hook: OnConnection, conn: Connection) -> None:
    try:
        await hook(conn)
    except Exception:
        logger.exception("on_disconnect hook failed for %r", conn)
