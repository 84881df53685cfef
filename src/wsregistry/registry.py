"""Registry: the live connections of an application, by key and by group.

A façade: it checks arguments, decides where a call runs, and hands the work
to the current run (``_run.Run``), which lives for one ``async with`` block.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import uuid
from contextlib import asynccontextmanager
from functools import partial
from threading import get_ident
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._encode import encode, json_serializer
from ._run import Run, RunState
from ._types import Key, Serializer, check_group, check_key
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .codes import CloseCode
from .connection import Connection
from .envelope import Envelope, EnvelopeKind
from .errors import (
    BackendUnavailable,
    ConnectionClosed,
    NotConnected,
    RegistryAlreadyRunning,
    RegistryClosed,
    RegistryNotStarted,
)
from .limits import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, OverflowPolicy, QueueLimits
from .stats import RegistryStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from types import TracebackType

    from .observer import Observer
    from .transport import Transport

__all__ = ["Registry"]

logger = logging.getLogger("wsregistry")

_RUNNING = RunState.RUNNING
_CLOSED = RunState.CLOSED

T = TypeVar("T")


class Registry:
    """The registry of live WebSocket connections.

    Start it with ``async with registry:``; leaving the block drains outbound
    queues, flushes the backend, closes every connection with 1001 and stops
    the backend, within ``drain_timeout + close_timeout``. A registry can be
    entered again after it exits (each run starts from a clean state), so a
    module-level registry serves one FastAPI lifespan after another.

    A run belongs to the event loop that entered it. Every public coroutine
    method may be awaited from another loop or thread too: the call is handed
    to the registry's loop and its result comes back (plain threads use the
    ``*_threadsafe`` methods).

    Args:
        backend: how registries in other processes are reached. Defaults to a
            private :class:`~wsregistry.backends.MemoryBackend` (one process).
        serializer: turns ``dict``/``list`` messages into ``str`` (text frame) or
            ``bytes`` (binary frame). Defaults to compact JSON. Called once per
            send/broadcast, whatever the number of targets. Every message that
            is not ``str``/``bytes`` goes through it: the default accepts any
            JSON value (so ``42`` or ``None`` become the frames ``42``/``null``)
            and raises :class:`~wsregistry.errors.SerializationError` for the rest.
        max_queue: most messages waiting in one connection's outbound queue
            (default 1024).
        max_queue_bytes: most payload bytes (UTF-8 for text) waiting in one
            connection's queue (default 1 MiB).
        overflow: what to do when a message does not fit (see
            :class:`~wsregistry.OverflowPolicy`; default: close with 1013).
        drain_timeout: seconds shutdown waits for queues to drain, sends in
            flight to finish and the backend to flush (default 5).
        close_timeout: seconds to flush and close one connection before aborting
            it; at shutdown, the bound of the whole closing phase (default 2).
        node_id: this registry's id in the cluster (default: random).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a limit or timeout is out of range.
    """

    def __init__(
        self,
        *,
        backend: Backend | None = None,
        serializer: Serializer | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        overflow: OverflowPolicy | str = OverflowPolicy.CLOSE,
        drain_timeout: float = 5.0,
        close_timeout: float = 2.0,
        node_id: str | None = None,
    ) -> None:
        if backend is not None and not isinstance(backend, Backend):
            raise TypeError(f"backend must be a wsregistry Backend, got {type(backend).__name__}")
        if serializer is not None and not callable(serializer):
            raise TypeError("serializer must be callable: message -> str | bytes")
        for name, value in (("drain_timeout", drain_timeout), ("close_timeout", close_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds")
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.limits = QueueLimits(max_queue, max_queue_bytes, OverflowPolicy(overflow))
        self.backend: Backend = backend if backend is not None else MemoryBackend()
        self.serializer: Serializer = serializer if serializer is not None else json_serializer
        self.drain_timeout = float(drain_timeout)
        self.close_timeout = float(close_timeout)
        self._node_id = node_id if node_id is not None else uuid.uuid4().hex
        self._run: Run | None = None  # the current run, or the last one after it ended
        self._starting = False
        self._observer: Observer | None = None

    def __repr__(self) -> str:
        run = self._run
        state = "new" if run is None else run.state.value
        connections = len(run.index) if run is not None else 0
        return (
            f"<Registry {state} node={self._node_id} "
            f"connections={connections} backend={type(self.backend).__name__}>"
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This registry's id in the cluster (the same for every run)."""
        return self._node_id

    @property
    def observer(self) -> Observer | None:
        """The :class:`~wsregistry.observer.Observer` fed timings and refusals, or ``None``.

        Set it before entering the registry or on its loop (a collector such
        as :class:`~wsregistry.prometheus.RegistryCollector` sets it); it
        carries over from run to run. ``None`` (the default) costs nothing.
        """
        return self._observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._observer = observer
        run = self._run
        if run is not None and run.state is not RunState.CLOSED:
            run.observe(observer)

    @property
    def running(self) -> bool:
        """Whether the registry accepts calls (started and not closing)."""
        run = self._run
        return run is not None and run.state is _RUNNING

    async def __aenter__(self) -> Registry:
        """Start a run: bind to the current event loop and start the backend.

        Raises:
            RegistryAlreadyRunning: the registry is already running (or
                starting, or closing); leave it before entering it again.
            BackendUnavailable: the backend could not start (the registry stays
                stopped and can be entered again).
        """
        run = self._run
        if self._starting or (run is not None and run.state is not RunState.CLOSED):
            raise RegistryAlreadyRunning
        self._starting = True
        try:
            run = Run(
                backend=self.backend,
                node_id=self._node_id,
                serializer=self.serializer,
                limits=self.limits,
                drain_timeout=self.drain_timeout,
                close_timeout=self.close_timeout,
            )
            await run.start()
            if self._observer is not None:
                run.observe(self._observer)
            self._run = run
        finally:
            self._starting = False
        logger.debug("registry %s started with %s", self._node_id, type(self.backend).__name__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """End the run: drain, flush, close every connection with 1001, stop the backend.

        Runs the same way when the block raised or was cancelled: shutdown is
        shielded and bounded by ``drain_timeout`` plus ``close_timeout``; the
        block's exception then propagates unchanged. Pending thread-safe calls
        fail with :class:`~wsregistry.errors.RegistryClosed`. Idempotent.
        """
        run = self._run
        if run is not None:
            await run.stop()

    async def close_connections(
        self, *, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown"
    ) -> int:
        """Drain the outbound queues, then close every local connection; keep running.

        Use it when the server is about to close its sockets before the
        registry's own shutdown runs (uvicorn closes WebSockets with 1012
        *before* the lifespan shutdown): queued messages are delivered (up to
        ``drain_timeout``) and each socket gets ``code`` (1001 by default).
        Connections made afterwards are served normally. Waits for the closes,
        each bounded by ``close_timeout``. Concurrent calls each wait only as
        long as the queues need.

        Returns:
            How many connections were closed.

        Raises:
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        run = self._run
        if run is None or not run.here:
            call = partial(self.close_connections, code=code, reason=reason)
            return await self._elsewhere(run, "close_connections", call)
        await run.checkpoint()
        self._check_running(run, "close_connections")
        with anyio.move_on_after(self.drain_timeout):
            await run.drained()
        return await run.close_everyone(code, reason)

    # -- registration ------------------------------------------------------------------

    async def connect(
        self,
        transport: Transport,
        *,
        key: Key,
        groups: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> Connection:
        """Register an accepted socket under ``key``. A key may hold many connections.

        Returns once the connection is reachable (cluster-wide, with a shared
        backend). Pair it with :meth:`disconnect`, or use :meth:`session`.

        Args:
            transport: the socket, wrapped by an adapter or your own
                :class:`~wsregistry.Transport`. The registry writes to it from
                its own loop.
            key: who the connection belongs to (``str`` or ``int``).
            groups: groups to join at once.
            metadata: the application's data about the connection (copied).

        Raises:
            TypeError: ``transport`` is not a transport, ``key`` or a group has the wrong type.
            RegistryNotStarted: before ``async with registry``.
            RegistryClosed: the registry is closing or closed.
        """
        if not _is_transport(transport):
            raise TypeError(
                "transport must have 'async send(data)' and 'async close(code, reason)', "
                f"got {type(transport).__name__}"
            )
        key = check_key(key)
        group_names = [check_group(group) for group in _iter_groups(groups)]
        run = self._run
        if run is None or not run.here:
            call = partial(self.connect, transport, key=key, groups=group_names, metadata=metadata)
            return await self._elsewhere(run, "connect", call)
        await run.checkpoint()
        self._check_running(run, "connect")
        return await run.connect(transport, key, group_names, metadata)

    async def disconnect(self, conn: Connection) -> None:
        """Unregister exactly ``conn`` (never another connection of its key). Idempotent.

        Does not close the socket (use :meth:`Connection.close` for that);
        queued messages are discarded. A checkpoint; works after close too.
        In a cancelled scope (a ``finally:`` of a cancelled handler) it still
        unregisters, then raises the cancellation, like trio's ``aclose()``.

        Raises:
            TypeError: ``conn`` is not a :class:`Connection`.
            ValueError: ``conn`` belongs to another registry (nothing changes).
        """
        _check_connection(conn, "disconnect")
        run = self._run
        if run is not None and not run.here and run.state is not RunState.CLOSED:
            await run.elsewhere("disconnect", partial(self.disconnect, conn))
            return
        if run is not None and run.state is not RunState.CLOSED:
            outbox = run.outbox_of(conn)
            if outbox is not None:
                run.unregister(outbox, None, flush=False)
            await run.checkpoint()
        else:
            await anyio.lowlevel.checkpoint()

    def disconnect_nowait(self, conn: Connection) -> None:
        """:meth:`disconnect` for synchronous code (no checkpoint). Idempotent.

        Non-blocking; removes exactly ``conn``. Works in any state and from any
        thread (from another thread it takes effect on the registry's loop soon).

        Raises:
            TypeError: ``conn`` is not a :class:`Connection`.
            ValueError: ``conn`` belongs to another registry (nothing changes).
        """
        _check_connection(conn, "disconnect_nowait")
        run = self._run
        if run is None or run.state is RunState.CLOSED:
            return
        if run.here:
            outbox = run.outbox_of(conn)
            if outbox is not None:
                run.unregister(outbox, None, flush=False)
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone, its connections too
            run.loop.call_soon(partial(self.disconnect_nowait, conn))

    @asynccontextmanager
    async def session(
        self,
        transport: Transport,
        *,
        key: Key,
        groups: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Connection]:
        """Register ``transport`` for the life of an ``async with`` block.

        Unregisters on every exit path: normal exit, exception, cancellation.
        Arguments and errors are those of :meth:`connect`.
        """
        conn = await self.connect(transport, key=key, groups=groups, metadata=metadata)
        try:
            yield conn
        finally:
            self.disconnect_nowait(conn)

    async def join(self, conn: Connection, group: str) -> None:
        """Add ``conn`` to ``group``. Idempotent.

        Returns once group traffic reaches the connection (cluster-wide, with
        a shared backend).

        Raises:
            ConnectionClosed: ``conn`` is no longer registered.
            TypeError, ValueError: ``group`` is not a non-empty ``str``, ``conn``
                is not a :class:`Connection` of this registry.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        group = check_group(group)
        _check_connection(conn, "join")
        run = self._run
        if run is None or not run.here:
            return await self._elsewhere(run, "join", partial(self.join, conn, group))
        await run.checkpoint()
        self._check_running(run, "join")
        outbox = run.outbox_of(conn)
        if outbox is None:
            raise ConnectionClosed(conn.id, conn.close_code)
        await run.join(outbox, group)

    async def leave(self, conn: Connection, group: str) -> None:
        """Remove ``conn`` from ``group``. Idempotent (also for a closed connection).

        Like :meth:`disconnect`, it does its work even in a cancelled scope,
        then raises the cancellation. Takes effect at once: a group broadcast
        that reaches this process afterwards (even one another node published
        just before) is not delivered to ``conn``.

        Raises:
            TypeError, ValueError: ``group`` is not a non-empty ``str``, ``conn``
                is not a :class:`Connection` of this registry.
        """
        group = check_group(group)
        _check_connection(conn, "leave")
        run = self._run
        if run is not None and not run.here and run.state is not RunState.CLOSED:
            await run.elsewhere("leave", partial(self.leave, conn, group))
            return
        if run is not None and run.state is not RunState.CLOSED:
            outbox = run.outbox_of(conn)
            if outbox is not None:
                run.leave(outbox, group)
            await run.checkpoint()
        else:
            await anyio.lowlevel.checkpoint()

    # -- delivery ----------------------------------------------------------------------

    async def send(self, key: Key, message: Any, *, require: bool = False) -> int:
        """Queue ``message`` to every connection of ``key``, here and on other nodes.

        Serialises once; never waits on a peer. With a shared backend the
        message is also published to the other nodes (one broker call).

        Args:
            key: the recipient key.
            message: ``dict``/``list`` (serialised), ``str`` (text) or ``bytes`` (binary).
            require: raise :class:`~wsregistry.errors.NotConnected` if the key has no
                connection anywhere in the cluster (nothing is sent then).

        Returns:
            How many connections **of this process** the message was queued to.
            Remote deliveries are not counted; use ``require=True`` or
            :meth:`is_online` to learn whether the key is online elsewhere.

        Raises:
            SerializationError: the message cannot be serialised (nothing sent).
            NotConnected: ``require=True`` and the key is offline everywhere.
            BackendUnavailable: ``require=True``, the key is not local and the
                backend cannot tell whether it is online elsewhere.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        run = self._run
        # run.here, inlined on the hottest call
        if run is None or run.state is _CLOSED or run.thread_id != get_ident():
            key = check_key(key)
            payload = encode(message, self.serializer)
            call = partial(self.send, key, payload, require=require)
            return await self._elsewhere(run, "send", call)
        await run.checkpoint()
        if run.state is not _RUNNING:
            raise self._refusal("send")
        if type(key) is not str and type(key) is not int:
            key = check_key(key)
        payload = encode(message, self.serializer)
        if require and not run.index.count_of_key(key) and not await _online_elsewhere(run, key):
            raise NotConnected(key)
        delivered = run.deliver_to_key(key, payload)
        if self.backend.reaches_other_nodes:
            await run.publish(Envelope(EnvelopeKind.KEY, payload, key, None, self._node_id))
        return delivered

    async def broadcast(
        self,
        message: Any,
        *,
        group: str | None = None,
        exclude: Connection | str | None = None,
    ) -> int:
        """Queue ``message`` to everyone, or to every member of ``group``, on every node.

        Serialises once; never waits on a peer; a stalled or dead connection
        does not affect the others.

        Args:
            message: ``dict``/``list`` (serialised), ``str`` (text) or ``bytes`` (binary).
            group: limit delivery to this group's members.
            exclude: a connection (or connection id) that must not receive it,
                typically the sender's own.

        Returns:
            How many connections **of this process** the message was queued to.

        Raises:
            SerializationError: the message cannot be serialised (nothing sent).
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        if group is not None:
            group = check_group(group)
        exclude_id = _exclude_id(exclude)
        run = self._run
        if run is None or not run.here:
            payload = encode(message, self.serializer)
            call = partial(self.broadcast, payload, group=group, exclude=exclude_id)
            return await self._elsewhere(run, "broadcast", call)
        await run.checkpoint()
        if run.state is not _RUNNING:
            raise self._refusal("broadcast")
        payload = encode(message, self.serializer)
        if group is None:
            envelope = Envelope(EnvelopeKind.BROADCAST, payload, None, exclude_id, self._node_id)
        else:
            envelope = Envelope(EnvelopeKind.GROUP, payload, group, exclude_id, self._node_id)
        delivered = run.deliver(envelope)
        if self.backend.reaches_other_nodes:
            await run.publish(envelope)
        return delivered

    async def send_to_connection(self, connection_id: str, message: Any) -> int:
        """Queue ``message`` to the one connection with ``connection_id``, on any node.

        Returns:
            1 if the connection is in this process and took the message, else 0
            (the message is published to the other nodes then).

        Raises:
            SerializationError: the message cannot be serialised (nothing sent).
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        if not isinstance(connection_id, str):
            raise TypeError(f"connection_id must be str, got {type(connection_id).__name__}")
        run = self._run
        if run is None or not run.here:
            payload = encode(message, self.serializer)
            call = partial(self.send_to_connection, connection_id, payload)
            return await self._elsewhere(run, "send_to_connection", call)
        await run.checkpoint()
        self._check_running(run, "send_to_connection")
        payload = encode(message, self.serializer)
        envelope = Envelope(EnvelopeKind.CONNECTION, payload, connection_id, None, self._node_id)
        delivered = run.deliver(envelope)
        if not delivered and self.backend.reaches_other_nodes:
            await run.publish(envelope)
        return delivered

    def send_threadsafe(
        self, key: Key, message: Any, *, require: bool = False
    ) -> concurrent.futures.Future[int]:
        """:meth:`send` from any thread, including one running its own event loop.

        Serialises in the calling thread (errors raise here, nothing is sent),
        hands the payload to the registry's loop and returns at once; sockets are
        only touched by the registry's loop. Calls from one thread keep their
        order; a slow call from one thread never delays another thread's calls.

        Returns:
            A future with :meth:`send`'s result or exception (``.result(timeout)``
            to wait; ``asyncio.wrap_future`` to await it from another loop).

        Raises:
            SerializationError: the message cannot be serialised.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        key = check_key(key)
        payload = encode(message, self.serializer)
        run = self._running_run("send_threadsafe")
        return run.calls.submit(
            "send_threadsafe", partial(self.send, key, payload, require=require)
        )

    def broadcast_threadsafe(
        self, message: Any, *, group: str | None = None
    ) -> concurrent.futures.Future[int]:
        """:meth:`broadcast` from any thread; see :meth:`send_threadsafe`."""
        if group is not None:
            group = check_group(group)
        payload = encode(message, self.serializer)
        run = self._running_run("broadcast_threadsafe")
        call = partial(self.broadcast, payload, group=group)
        return run.calls.submit("broadcast_threadsafe", call)

    # -- lookups -----------------------------------------------------------------------

    def lookup(self, key: Key) -> tuple[Connection, ...]:
        """This process's live connections of ``key``, oldest first (a snapshot).

        Non-blocking; works in any state (empty before start and after close).
        Call it on the registry's loop.

        Raises:
            TypeError: ``key`` is not ``str``/``int``.
        """
        key = check_key(key)
        run = self._run
        return _handles(run.index.all_of_key(key)) if run is not None else ()

    def members(self, group: str) -> tuple[Connection, ...]:
        """This process's live members of ``group``, oldest first (a snapshot)."""
        group = check_group(group)
        run = self._run
        return _handles(run.index.of_group(group)) if run is not None else ()

    def connections(self) -> tuple[Connection, ...]:
        """Every live connection of this process, oldest first (a snapshot)."""
        run = self._run
        return _handles(run.index.everyone()) if run is not None else ()

    async def is_online(self, key: Key) -> bool:
        """Whether ``key`` has a live connection anywhere in the cluster.

        Answers from this process when the key is local; otherwise asks the
        backend (one broker round trip for Redis).

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        key = check_key(key)
        run = self._run
        if run is None or not run.here:
            return await self._elsewhere(run, "is_online", partial(self.is_online, key))
        await run.checkpoint()
        self._check_running(run, "is_online")
        return run.index.count_of_key(key) > 0 or await _online_elsewhere(run, key)

    async def online_count(self, key: Key) -> int:
        """How many live connections ``key`` holds across the cluster.

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        key = check_key(key)
        run = self._run
        if run is None or not run.here:
            return await self._elsewhere(run, "online_count", partial(self.online_count, key))
        await run.checkpoint()
        self._check_running(run, "online_count")
        return await self.backend.presence_count(key)

    async def online_keys(self) -> frozenset[Key]:
        """Every key with a live connection across the cluster (O(online keys)).

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        run = self._run
        if run is None or not run.here:
            return await self._elsewhere(run, "online_keys", self.online_keys)
        await run.checkpoint()
        self._check_running(run, "online_keys")
        return await self.backend.online_keys()

    def stats(self) -> RegistryStats:
        """A snapshot of the current (or last) run's counters (non-blocking, any state)."""
        run = self._run
        if run is None:
            return RegistryStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, self.backend.health())
        counters = run.counters
        index = run.index
        return RegistryStats(
            connections=len(index),
            keys=index.key_count,
            groups=index.group_count,
            queued=counters.queued,
            queued_bytes=counters.queued_bytes,
            sent=counters.sent,
            dropped=counters.dropped,
            slow_consumer_closes=counters.slow_consumer_closes,
            send_errors=counters.send_errors,
            backend_errors=counters.backend_errors,
            backend=self.backend.health(),
            writer_tasks=run.writers.tasks,
            connects=counters.connects,
            disconnects=counters.disconnects,
            overflows=counters.overflows,
            dropped_closed=counters.dropped_closed,
        )

    # -- where calls run ---------------------------------------------------------------

    def _refusal(self, operation: str) -> RegistryClosed:
        if self._run is None:
            return RegistryNotStarted(operation)
        return RegistryClosed(operation)

    def _check_running(self, run: Run, operation: str) -> None:
        if run.state is not _RUNNING:
            raise self._refusal(operation)

    def _running_run(self, operation: str) -> Run:
        run = self._run
        if run is None or run.state is not _RUNNING:
            raise self._refusal(operation)
        return run

    async def _elsewhere(
        self, run: Run | None, operation: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``call`` on the registry's loop for a caller on another loop or thread."""
        if run is None or run.state is not _RUNNING:
            await anyio.lowlevel.checkpoint()
            raise self._refusal(operation)
        return await run.elsewhere(operation, call)


async def _online_elsewhere(run: Run, key: Key) -> bool:
    try:
        return await run.backend.presence_count(key) > 0
    except BackendUnavailable:
        run.counters.backend_errors += 1
        raise


def _handles(outboxes: tuple[Any, ...]) -> tuple[Connection, ...]:
    return tuple(outbox.connection for outbox in outboxes)


def _is_transport(obj: object) -> bool:
    return callable(getattr(obj, "send", None)) and callable(getattr(obj, "close", None))


def _check_connection(conn: object, operation: str) -> None:
    if not isinstance(conn, Connection):
        raise TypeError(f"{operation}() takes a Connection, got {type(conn).__name__}")


def _iter_groups(groups: Iterable[str]) -> Iterable[object]:
    if isinstance(groups, str):
        raise TypeError("groups must be an iterable of group names, not a single str")
    return groups


def _exclude_id(exclude: Connection | str | None) -> str | None:
    if exclude is None or isinstance(exclude, str):
        return exclude
    if isinstance(exclude, Connection):
        return exclude.id
    raise TypeError(
        f"exclude must be a Connection, a connection id or None, got {type(exclude).__name__}"
    )
