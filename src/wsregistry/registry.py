"""Registry: the live connections of an application, by key and by group."""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import math
import threading
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._counters import Counters
from ._encode import encode, json_serializer
from ._index import Index
from ._loop import LoopHandle
from ._types import Key, Serializer, check_group, check_key
from ._writers import WriterPool
from .backends.base import Backend
from .backends.memory import MemoryBackend
from .codes import CloseCode
from .connection import Connection
from .envelope import Envelope, EnvelopeKind
from .errors import (
    BackendUnavailable,
    ConnectionClosed,
    NotConnected,
    RegistryClosed,
    RegistryNotStarted,
)
from .limits import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, OverflowPolicy, QueueLimits
from .stats import RegistryStats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Mapping
    from types import TracebackType

    from .transport import Transport

__all__ = ["Registry"]

logger = logging.getLogger("wsregistry")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Registry:
    """The registry of live WebSocket connections.

    Start it with ``async with registry:``; leaving the block drains outbound
    queues (up to ``drain_timeout``), closes every connection with 1001 and
    stops the backend. A registry is started once.

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
        max_queue_bytes: most payload bytes waiting in one connection's queue
            (default 1 MiB).
        overflow: what to do when a message does not fit (see
            :class:`~wsregistry.OverflowPolicy`; default: close with 1013).
        drain_timeout: seconds shutdown waits for queues to drain and sends in
            flight to finish (default 5).
        close_timeout: seconds to wait for one transport's close before aborting it
            (default 2).
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
        self._state = _State.NEW
        self._index: Index[Connection] = Index()
        self._ids: dict[str, Connection] = {}
        self._counters = Counters()
        self._writers = WriterPool(self)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._loop: LoopHandle | None = None
        self._drained: anyio.Event | None = None
        self._publish_failing = False  # log an outage once, not once per call
        self._jobs: deque[_Job] = deque()  # appended by any thread under _jobs_lock
        self._jobs_lock = threading.Lock()
        self._jobs_waiting: anyio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<Registry {self._state.value} node={self._node_id} "
            f"connections={len(self._index)} backend={type(self.backend).__name__}>"
        )

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This registry's id in the cluster."""
        return self._node_id

    @property
    def running(self) -> bool:
        """Whether the registry accepts calls (started and not closing)."""
        return self._state is _State.RUNNING

    async def __aenter__(self) -> Registry:
        """Start the registry and its backend.

        Raises:
            RegistryClosed: the registry was already started (it is running or
                closed; a ``RuntimeError`` too). A registry is started once:
                create a new one for each run (e.g. each ``anyio.run``).
            BackendUnavailable: the backend could not start.
        """
        if self._state is not _State.NEW:
            raise RegistryClosed(
                "__aenter__", "a Registry can be started only once; create a new one"
            )
        self._loop = LoopHandle()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await self.backend.start(_Node(self))
        except BaseException:
            # Close the (still empty) task group without handing it the error, so
            # the caller gets the backend's exception itself, not an ExceptionGroup
            # (trio's nursery would wrap it).
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            self._state = _State.CLOSED
            raise
        self._task_group = task_group
        with self._jobs_lock:
            self._state = _State.RUNNING
        task_group.start_soon(self._run_jobs)
        logger.debug("registry %s started with %s", self._node_id, type(self.backend).__name__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Drain, close every connection with 1001, stop the backend and all tasks.

        Runs the same way when the block raised or was cancelled: shutdown is
        shielded and bounded by ``drain_timeout`` plus ``close_timeout``; the
        block's exception then propagates unchanged. Pending thread-safe calls
        fail with :class:`~wsregistry.errors.RegistryClosed`. Idempotent.
        """
        if self._state is not _State.RUNNING:
            return
        with self._jobs_lock:  # from here on no thread can hand over a new call
            self._state = _State.CLOSING
        task_group = self._task_group
        assert task_group is not None
        try:
            with anyio.CancelScope(shield=True):
                await self._drain()
                await self._close_everyone()
                try:
                    await self.backend.aclose()
                except Exception:
                    self._counters.backend_errors += 1
                    logger.exception("backend failed to close")
        finally:
            self._fail_pending_jobs()
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            self._task_group = None
            self._state = _State.CLOSED
        logger.debug("registry %s closed", self._node_id)

    async def _drain(self) -> None:
        with anyio.move_on_after(self.drain_timeout):
            while self._counters.queued > 0 or self._writers.in_flight > 0:
                self._drained = anyio.Event()
                await self._drained.wait()
        self._drained = None

    async def _close_everyone(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown"
    ) -> int:
        conns = self._index.everyone()
        for conn in conns:
            self._forget(conn, code=code)
        if conns:
            async with anyio.create_task_group() as closers:
                for conn in conns:
                    closers.start_soon(self._close_transport, conn, code, reason)
        return len(conns)

    async def close_connections(
        self, *, code: int = CloseCode.GOING_AWAY, reason: str = "server shutdown"
    ) -> int:
        """Drain the outbound queues, then close every local connection; keep running.

        Use it when the server is about to close its sockets before the
        registry's own shutdown runs (uvicorn closes WebSockets with 1012
        *before* the lifespan shutdown): queued messages are delivered (up to
        ``drain_timeout``) and each socket gets ``code`` (1001 by default).
        Connections made afterwards are served normally. Waits for the closes,
        each bounded by ``close_timeout``.

        Returns:
            How many connections were closed.

        Raises:
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("close_connections")
        await self._drain()
        return await self._close_everyone(code, reason)

    def _check_running(self, operation: str) -> None:
        if self._state is _State.RUNNING:
            return
        if self._state is _State.NEW:
            raise RegistryNotStarted(operation)
        raise RegistryClosed(operation)

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
                :class:`~wsregistry.Transport`.
            key: who the connection belongs to (``str`` or ``int``).
            groups: groups to join at once.
            metadata: the application's data about the connection (copied).

        Raises:
            TypeError: ``transport`` is not a transport, ``key`` or a group has the wrong type.
            RegistryNotStarted: before ``async with registry``.
            RegistryClosed: the registry is closing or closed.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("connect")
        if not _is_transport(transport):
            raise TypeError(
                "transport must have 'async send(data)' and 'async close(code, reason)', "
                f"got {type(transport).__name__}"
            )
        key = check_key(key)
        group_names = [check_group(group) for group in _iter_groups(groups)]
        conn = Connection(self, transport, id=uuid.uuid4().hex, key=key, metadata=metadata)
        first_of_key = self._index.add(conn, key)
        self._ids[conn.id] = conn
        firsts: list[tuple[str, bool]] = []
        for group in group_names:
            if conn._add_group(group):
                firsts.append((group, self._index.join(conn, group)))
        try:
            await self._backend_call(
                self.backend.connection_added(conn.id, key, first_of_key=first_of_key)
            )
            for group, first in firsts:
                await self._backend_call(self.backend.group_joined(group, first_of_group=first))
        except BaseException:
            self._forget(conn, code=None)
            raise
        logger.debug("connected %r", conn)
        return conn

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
        if not isinstance(conn, Connection):
            raise TypeError(f"disconnect() takes a Connection, got {type(conn).__name__}")
        if conn._registry is not self:
            raise ValueError(f"{conn!r} belongs to another registry")
        self._forget(conn, code=None)
        await anyio.lowlevel.checkpoint()

    def disconnect_nowait(self, conn: Connection) -> None:
        """:meth:`disconnect` for synchronous code (no checkpoint). Idempotent.

        Non-blocking; removes exactly ``conn``. Works in any state.

        Raises:
            TypeError: ``conn`` is not a :class:`Connection`.
            ValueError: ``conn`` belongs to another registry (nothing changes).
        """
        if not isinstance(conn, Connection):
            raise TypeError(f"disconnect_nowait() takes a Connection, got {type(conn).__name__}")
        if conn._registry is not self:
            raise ValueError(f"{conn!r} belongs to another registry")
        self._forget(conn, code=None)

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
            self._forget(conn, code=None)

    async def join(self, conn: Connection, group: str) -> None:
        """Add ``conn`` to ``group``. Idempotent.

        Raises:
            ConnectionClosed: ``conn`` is no longer registered.
            TypeError, ValueError: ``group`` is not a non-empty ``str``.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("join")
        group = check_group(group)
        self._check_member(conn)
        if not conn._add_group(group):
            return
        first = self._index.join(conn, group)
        await self._backend_call(self.backend.group_joined(group, first_of_group=first))

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
        if not isinstance(conn, Connection):
            raise TypeError(f"leave() takes a Connection, got {type(conn).__name__}")
        if conn._registry is not self:
            raise ValueError(f"{conn!r} belongs to another registry")
        if not conn._closed and conn._remove_group(group):
            last = self._index.leave(conn, group)
            self._backend_sync(self.backend.group_left, group, last_of_group=last)
        await anyio.lowlevel.checkpoint()

    def _check_member(self, conn: Connection) -> None:
        if not isinstance(conn, Connection):
            raise TypeError(f"expected a Connection, got {type(conn).__name__}")
        if conn._registry is not self:
            raise ValueError(f"{conn!r} belongs to another registry")
        if conn._closed:
            raise ConnectionClosed(conn.id, conn._close_code)

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
        await anyio.lowlevel.checkpoint()
        self._check_running("send")
        key = check_key(key)
        payload = encode(message, self.serializer)
        if require and not self._index.count_of_key(key) and not await self._online_elsewhere(key):
            raise NotConnected(key)
        envelope = Envelope(EnvelopeKind.KEY, payload, key, None, self._node_id)
        delivered = self._deliver(envelope)
        await self._publish(envelope)
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
        await anyio.lowlevel.checkpoint()
        self._check_running("broadcast")
        if group is not None:
            group = check_group(group)
        exclude_id = _exclude_id(exclude)
        payload = encode(message, self.serializer)
        if group is None:
            envelope = Envelope(EnvelopeKind.BROADCAST, payload, None, exclude_id, self._node_id)
        else:
            envelope = Envelope(EnvelopeKind.GROUP, payload, group, exclude_id, self._node_id)
        delivered = self._deliver(envelope)
        await self._publish(envelope)
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
        await anyio.lowlevel.checkpoint()
        self._check_running("send_to_connection")
        if not isinstance(connection_id, str):
            raise TypeError(f"connection_id must be str, got {type(connection_id).__name__}")
        payload = encode(message, self.serializer)
        envelope = Envelope(EnvelopeKind.CONNECTION, payload, connection_id, None, self._node_id)
        delivered = self._deliver(envelope)
        if not delivered:
            await self._publish(envelope)
        return delivered

    def send_threadsafe(
        self, key: Key, message: Any, *, require: bool = False
    ) -> concurrent.futures.Future[int]:
        """:meth:`send` from any thread, including one running its own event loop.

        Serialises in the calling thread (errors raise here, nothing is sent),
        hands the payload to the registry's loop and returns at once; sockets are
        only touched by the registry's loop. Calls from one thread keep their order.

        Returns:
            A future with :meth:`send`'s result or exception (``.result(timeout)``
            to wait; ``asyncio.wrap_future`` to await it from another loop).

        Raises:
            SerializationError: the message cannot be serialised.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        key = check_key(key)
        payload = encode(message, self.serializer)
        return self._threadsafe("send_threadsafe", lambda: self.send(key, payload, require=require))

    def broadcast_threadsafe(
        self, message: Any, *, group: str | None = None
    ) -> concurrent.futures.Future[int]:
        """:meth:`broadcast` from any thread; see :meth:`send_threadsafe`."""
        if group is not None:
            group = check_group(group)
        payload = encode(message, self.serializer)
        return self._threadsafe(
            "broadcast_threadsafe", lambda: self.broadcast(payload, group=group)
        )

    def _threadsafe(
        self, operation: str, call: Callable[[], Awaitable[int]]
    ) -> concurrent.futures.Future[int]:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        job = _Job(operation, call, future)
        # Under the lock, a job is queued only while running; shutdown takes the
        # lock to stop, then fails whatever is left, so no future stays pending.
        with self._jobs_lock:
            self._check_running(operation)
            self._jobs.append(job)
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon(self._wake_jobs)
        except RuntimeError as exc:  # the loop is gone without closing the registry
            job.fail(RegistryClosed(operation))
            raise RegistryClosed(operation) from exc
        return future

    def _wake_jobs(self) -> None:
        """Runs in the loop thread: wake :meth:`_run_jobs` for newly queued calls."""
        if self._jobs_waiting is not None:
            self._jobs_waiting.set()

    async def _run_jobs(self) -> None:
        """Run thread-safe calls one at a time, in the order they arrived."""
        jobs = self._jobs
        while True:
            while jobs:
                await jobs.popleft().run()
            self._jobs_waiting = anyio.Event()
            await self._jobs_waiting.wait()
            self._jobs_waiting = None

    def _fail_pending_jobs(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            job.fail(RegistryClosed(job.operation))

    def _deliver(self, envelope: Envelope) -> int:
        """Enqueue an envelope to the matching local connections (sync)."""
        kind = envelope.kind
        if kind is EnvelopeKind.BROADCAST:
            targets = self._index.everyone()
        elif kind is EnvelopeKind.GROUP:
            targets = self._index.of_group(envelope.target)  # type: ignore[arg-type]
        elif kind is EnvelopeKind.KEY:
            targets = self._index.of_key(envelope.target)  # type: ignore[arg-type]
        else:
            return self._deliver_to_id(envelope)
        payload = envelope.payload
        exclude = envelope.exclude
        delivered = 0
        if exclude is None:
            for conn in targets:
                if conn._enqueue(payload):
                    delivered += 1
        else:
            for conn in targets:
                if conn.id != exclude and conn._enqueue(payload):
                    delivered += 1
        return delivered

    def _deliver_to_id(self, envelope: Envelope) -> int:
        conn = self._by_id(envelope.target)  # type: ignore[arg-type]
        return 1 if conn is not None and conn._enqueue(envelope.payload) else 0

    def _by_id(self, connection_id: str) -> Connection | None:
        return self._ids.get(connection_id)

    async def _publish(self, envelope: Envelope) -> None:
        try:
            await self.backend.publish(envelope)
        except BackendUnavailable as exc:
            self._counters.backend_errors += 1
            if self._publish_failing:
                logger.debug("publish failed, delivered locally only: %s", exc)
            else:
                self._publish_failing = True
                logger.warning(
                    "publish failed, delivered locally only: %s "
                    "(further failures are logged at DEBUG until a publish succeeds; "
                    "stats().backend_errors counts them)",
                    exc,
                )
        else:
            if self._publish_failing:
                self._publish_failing = False
                logger.info("publishing to the backend again")

    # -- lookups -----------------------------------------------------------------------

    def lookup(self, key: Key) -> tuple[Connection, ...]:
        """This process's live connections of ``key``, oldest first (a snapshot).

        Non-blocking; works in any state (empty before start and after close).

        Raises:
            TypeError: ``key`` is not ``str``/``int``.
        """
        return self._index.of_key(check_key(key))

    def members(self, group: str) -> tuple[Connection, ...]:
        """This process's live members of ``group``, oldest first (a snapshot)."""
        return self._index.of_group(check_group(group))

    def connections(self) -> tuple[Connection, ...]:
        """Every live connection of this process, oldest first (a snapshot)."""
        return self._index.everyone()

    async def is_online(self, key: Key) -> bool:
        """Whether ``key`` has a live connection anywhere in the cluster.

        Answers from this process when the key is local; otherwise asks the
        backend (one broker round trip for Redis).

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("is_online")
        key = check_key(key)
        return self._index.count_of_key(key) > 0 or await self._online_elsewhere(key)

    async def online_count(self, key: Key) -> int:
        """How many live connections ``key`` holds across the cluster.

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("online_count")
        return await self.backend.presence_count(check_key(key))

    async def online_keys(self) -> frozenset[Key]:
        """Every key with a live connection across the cluster (O(online keys)).

        Raises:
            BackendUnavailable: the backend cannot answer.
            RegistryNotStarted, RegistryClosed: the registry is not running.
        """
        await anyio.lowlevel.checkpoint()
        self._check_running("online_keys")
        return await self.backend.online_keys()

    async def _online_elsewhere(self, key: Key) -> bool:
        try:
            return await self.backend.presence_count(key) > 0
        except BackendUnavailable:
            self._counters.backend_errors += 1
            raise

    def stats(self) -> RegistryStats:
        """A snapshot of the counters (non-blocking, any state)."""
        counters = self._counters
        return RegistryStats(
            connections=len(self._index),
            keys=self._index.key_count,
            groups=self._index.group_count,
            queued=counters.queued,
            queued_bytes=counters.queued_bytes,
            sent=counters.sent,
            dropped=counters.dropped,
            slow_consumer_closes=counters.slow_consumer_closes,
            send_errors=counters.send_errors,
            backend_errors=counters.backend_errors,
            backend=self.backend.health(),
        )

    # -- internals used by Connection and the backend ---------------------------------

    def _spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task_group = self._task_group
        if task_group is None:  # pragma: no cover - connections die before the group
            raise RegistryClosed("send")
        task_group.start_soon(func)

    def _queue_emptied(self) -> None:
        if self._drained is not None and self._counters.queued <= 0:
            self._drained.set()  # _drain checks the writers in flight itself

    def _forget(self, conn: Connection, *, code: int | None) -> bool:
        """Unregister ``conn`` at once (sync). Returns ``False`` if it was already gone."""
        if conn._closed:
            return False
        groups = frozenset(conn._groups)
        conn._mark_closed(code)
        key_emptied, groups_emptied = self._index.remove(conn, conn.key, groups)
        self._ids.pop(conn.id, None)
        for group in groups:
            self._backend_sync(
                self.backend.group_left, group, last_of_group=group in groups_emptied
            )
        self._backend_sync(
            self.backend.connection_removed, conn.id, conn.key, last_of_key=key_emptied
        )
        self._queue_emptied()
        logger.debug("unregistered %r", conn)
        return True

    def _transport_failed(self, conn: Connection, exc: Exception) -> None:
        if conn._closed:
            return
        self._counters.send_errors += 1
        logger.info("transport of %r failed, unregistering: %r", conn, exc)
        self._forget(conn, code=CloseCode.INTERNAL_ERROR)
        self._spawn_close(conn, CloseCode.INTERNAL_ERROR, "send failed")

    def _slow_consumer(self, conn: Connection) -> None:
        self._counters.slow_consumer_closes += 1
        self._counters.dropped += 1  # the message that did not fit
        logger.warning(
            "closing slow consumer %r: outbound queue full (%d messages, %d bytes)",
            conn,
            conn.queued,
            conn.queued_bytes,
        )
        self._forget(conn, code=CloseCode.TRY_AGAIN_LATER)
        self._spawn_close(conn, CloseCode.TRY_AGAIN_LATER, "slow consumer: outbound queue full")

    def _spawn_close(self, conn: Connection, code: int, reason: str) -> None:
        task_group = self._task_group
        if task_group is not None:
            task_group.start_soon(self._close_transport, conn, code, reason)

    async def _close_transport(self, conn: Connection, code: int, reason: str) -> None:
        transport = conn.transport
        finished = False
        try:
            with anyio.move_on_after(self.close_timeout):
                try:
                    await transport.close(code, reason)
                except Exception as exc:
                    logger.debug("closing %r raised %r", conn, exc)
                finished = True
        finally:
            if not finished:  # timed out, or the registry is shutting down
                logger.info("close of %r did not finish in %ss; aborting", conn, self.close_timeout)
                _abort(conn)

    async def _backend_call(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            self._counters.backend_errors += 1
            logger.exception("backend hook failed; local delivery is unaffected")

    def _backend_sync(self, hook: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            self._counters.backend_errors += 1
            logger.exception("backend hook failed; local delivery is unaffected")


class _Job:
    """A call handed over from another thread, with the future that reports it."""

    __slots__ = ("call", "future", "operation")

    def __init__(
        self,
        operation: str,
        call: Callable[[], Awaitable[int]],
        future: concurrent.futures.Future[int],
    ) -> None:
        self.operation = operation
        self.call = call
        self.future = future

    async def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = await self.call()
        except Exception as exc:
            self.future.set_exception(exc)
        except BaseException:  # cancelled: the registry is shutting down
            self.future.set_exception(RegistryClosed(self.operation))
            raise
        else:
            self.future.set_result(result)

    def fail(self, exc: Exception) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(exc)


class _Node:
    """The registry as its backend sees it (:class:`~wsregistry.backends.LocalNode`)."""

    __slots__ = ("_registry",)

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    @property
    def node_id(self) -> str:
        return self._registry._node_id

    def deliver(self, envelope: Envelope) -> int:
        registry = self._registry
        if envelope.origin == registry._node_id or registry._state is not _State.RUNNING:
            return 0
        return registry._deliver(envelope)

    def local_presence(self) -> tuple[tuple[str, Key], ...]:
        return tuple((conn.id, conn.key) for conn in self._registry._index.everyone())

    def local_keys(self) -> tuple[Key, ...]:
        return tuple(self._registry._index.keys())

    def local_groups(self) -> tuple[str, ...]:
        return tuple(self._registry._index.groups())

    def local_count(self, key: Key) -> int:
        return self._registry._index.count_of_key(key)

    def backend_error(self) -> None:
        self._registry._counters.backend_errors += 1


def _is_transport(obj: object) -> bool:
    return callable(getattr(obj, "send", None)) and callable(getattr(obj, "close", None))


def _abort(conn: Connection) -> None:
    abort = getattr(conn.transport, "abort", None)
    if callable(abort):
        try:
            abort()
        except Exception as exc:
            logger.debug("aborting %r raised %r", conn, exc)


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
