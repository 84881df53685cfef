"""Run: one ``async with registry`` - everything that lives and dies with it.

A run belongs to the loop (and thread) that entered the registry. It owns the
index, the shared counters, the writer pool, the queues of calls handed over
from other threads, and the task group; leaving the registry ends the run and
its state with it, so the registry can be entered again from a clean slate.

The run is where outcomes meet actions: an outbox *returns* what happened to
a payload (``Offer``) and the run acts on it (schedule a writer, close a slow
consumer); the writer pool reports a broken transport or an idle outbox and
the run unregisters, closes, or wakes whoever waits.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc

from ._counters import Counters
from ._encode import encode
from ._index import Index
from ._loop import LoopHandle, checkpoint_for_current_loop, wait_future
from ._outbox import ConnectionState, Offer, Outbox
from ._threads import CallQueues
from ._timing import Timing
from ._writers import WriterPool
from .codes import CloseCode
from .connection import Connection
from .envelope import Envelope, EnvelopeKind
from .errors import BackendUnavailable, ConnectionClosed, RegistryClosed

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._types import Key, Payload, Serializer
    from .backends.base import Backend
    from .limits import QueueLimits
    from .observer import Observer
    from .transport import Transport

T = TypeVar("T")

logger = logging.getLogger("wsregistry")

_OPEN = ConnectionState.OPEN
_CLOSED = ConnectionState.CLOSED


class RunState(enum.Enum):
    """Where a run is in its life."""

    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Run:
    """The live state of one registry run. Created inside the loop it belongs to.

    Attributes:
        state: running, closing or closed.
        loop: the loop the run belongs to.
        thread_id: the thread whose loop owns the run.
        checkpoint: the cheapest correct checkpoint for that loop.
        index: who is connected here.
        counters: the run's running totals.
        writers: the writer tasks.
        calls: calls handed over from other threads and loops.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        node_id: str,
        serializer: Serializer,
        limits: QueueLimits,
        drain_timeout: float,
        close_timeout: float,
    ) -> None:
        self.backend = backend
        self.node_id = node_id
        self.serializer = serializer
        self.limits = limits
        self.drain_timeout = drain_timeout
        self.close_timeout = close_timeout
        self.state = RunState.RUNNING
        self.loop = loop = LoopHandle()
        self.thread_id = loop.thread_id
        self.checkpoint = checkpoint_for_current_loop()
        self.index = Index()
        self.counters = Counters()
        self.writers = WriterPool(
            spawn=self.spawn,
            checkpoint=self.checkpoint,
            counters=self.counters,
            on_broken=self._broken,
            on_idle=self._idle,
        )
        self.calls = CallQueues(loop, self.spawn)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._drain_waiters: list[anyio.Event] = []
        self._idle_waiters: dict[Outbox, anyio.Event] = {}
        self._closed_waiters: dict[Outbox, anyio.Event] = {}
        self._publish_failing = False  # log an outage once, not once per call
        self.timing: Timing | None = None  # only while an observer is attached
        self.frame_timing: Timing | None = None  # the same, if it times queued frames

    def observe(self, observer: Observer | None) -> None:
        """Attach ``observer`` (or detach with ``None``); call it on the run's loop."""
        timing = Timing(observer, self.counters) if observer is not None else None
        self.timing = timing
        per_frame = timing is not None and getattr(observer, "times_queued_frames", True)
        self.frame_timing = self.writers.timing = timing if per_frame else None

    @property
    def here(self) -> bool:
        """Whether the caller runs on this run's loop and the run has not ended."""
        return self.state is not RunState.CLOSED and threading.get_ident() == self.thread_id

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the task group and start the backend.

        Raises:
            BackendUnavailable: the backend could not start (nothing is left running).
        """
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await self.backend.start(_Node(self))
        except BaseException:
            # Close the (still empty) task group without handing it the error, so
            # the caller gets the backend's exception itself, not an ExceptionGroup.
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            self.state = RunState.CLOSED
            self.calls.close()
            raise
        self._task_group = task_group
        task_group.start_soon(self.calls.dispatch)

    async def stop(self) -> None:
        """Drain, flush the backend, close everyone with 1001, stop the backend and all tasks.

        Shielded from cancellation and bounded by ``drain_timeout + close_timeout``.
        """
        if self.state is not RunState.RUNNING:
            return
        self.state = RunState.CLOSING
        self.calls.close()
        task_group = self._task_group
        try:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.drain_timeout):
                    async with anyio.create_task_group() as draining:
                        draining.start_soon(self._flush_backend)
                        await self.drained()
                with anyio.move_on_after(self.close_timeout):
                    async with anyio.create_task_group() as closing:
                        closing.start_soon(self._close_backend)
                        await self.close_everyone(CloseCode.GOING_AWAY, "server shutdown")
        finally:
            self.state = RunState.CLOSED
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
                self._task_group = None
        logger.debug("registry %s closed", self.node_id)

    async def _flush_backend(self) -> None:
        try:
            await self.backend.flush()
        except Exception:
            self.counters.backend_errors += 1
            logger.exception("backend failed to flush at shutdown")

    async def _close_backend(self) -> None:
        try:
            await self.backend.aclose()
        except Exception:
            self.counters.backend_errors += 1
            logger.exception("backend failed to close")

    def spawn(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``func()`` in the run's task group."""
        task_group = self._task_group
        if task_group is None:
            raise RegistryClosed("spawn", "the registry's run has ended")
        task_group.start_soon(func)

    async def elsewhere(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` on the run's loop from another loop or thread; await its result."""
        return await wait_future(self.calls.submit(operation, call))

    # -- registration ------------------------------------------------------------------

    async def connect(
        self,
        transport: Transport,
        key: Key,
        groups: Iterable[str],
        metadata: Mapping[str, Any] | None,
    ) -> Connection:
        """Register ``transport``; return once the backend made it reachable."""
        outbox = Outbox(
            id=uuid.uuid4().hex,
            key=key,
            transport=transport,
            limits=self.limits,
            counters=self.counters,
        )
        conn = Connection(outbox, self, connected_at=time.time(), metadata=metadata)
        outbox.connection = conn
        index = self.index
        first_of_key = index.add(outbox)
        joined = [(group, index.join(outbox, group)) for group in groups if outbox.add_group(group)]
        backend = self.backend
        try:
            await self._backend_call(
                backend.connection_added(outbox.id, key, first_of_key=first_of_key)
            )
            for group, first in joined:
                if outbox.state is not _OPEN:
                    break  # unregistered meanwhile: its group_left already ran; join nothing
                await self._backend_call(backend.group_joined(group, first_of_group=first))
        except BaseException:
            self.unregister(outbox, None, flush=False)
            raise
        self.counters.connects += 1
        logger.debug("connected %r", conn)
        return conn

    def outbox_of(self, conn: Connection) -> Outbox | None:
        """The outbox of ``conn`` if it is registered here; ``None`` if it is closed.

        Raises:
            ValueError: ``conn`` is open but registered elsewhere (another registry).
        """
        outbox = self.index.get(conn.id)
        if outbox is not None and outbox.connection is conn:
            return outbox
        if not conn.closed:
            raise ValueError(f"{conn!r} belongs to another registry")
        return None

    def unregister(self, outbox: Outbox, code: int | None, *, flush: bool) -> bool:
        """Take ``outbox`` out of the index and presence at once (sync).

        With ``flush`` it stays CLOSING while its queue is written. Returns
        ``False`` if it was not registered.
        """
        if not outbox.unregister(code, flush=flush):
            return False
        self.counters.disconnects += 1
        key_emptied, groups_emptied = self.index.remove(outbox)
        backend = self.backend
        for group in outbox.groups:
            self._backend_sync(backend.group_left, group, last_of_group=group in groups_emptied)
        self._backend_sync(
            backend.connection_removed, outbox.id, outbox.key, last_of_key=key_emptied
        )
        if outbox.state is _CLOSED:
            self.writers.cancel(outbox)
        closed = self._closed_waiters.pop(outbox, None)
        if closed is not None:
            closed.set()
        self._check_drained()
        logger.debug("unregistered %r", outbox)
        return True

    async def join(self, outbox: Outbox, group: str) -> None:
        if outbox.add_group(group):
            first = self.index.join(outbox, group)
            await self._backend_call(self.backend.group_joined(group, first_of_group=first))

    def leave(self, outbox: Outbox, group: str) -> None:
        if outbox.state is _OPEN and outbox.remove_group(group):
            last = self.index.leave(outbox, group)
            self._backend_sync(self.backend.group_left, group, last_of_group=last)

    # -- delivery ----------------------------------------------------------------------

    def push(self, outbox: Outbox, payload: Payload) -> bool:
        """Write ``payload`` at once if nothing waits, else queue it. Never blocks."""
        # Outbox.writable_now, inlined: this runs once per target of every call
        if outbox.direct and not outbox.scheduled and outbox.state is _OPEN:
            try:
                written = outbox.transport.send_nowait(payload)  # type: ignore[attr-defined]
            except Exception as exc:
                self._broken(outbox, exc)
                return False
            if written:
                self.counters.sent += 1
                return True
        offer = outbox.offer(payload)
        timing = self.frame_timing
        if timing is not None and (offer is Offer.SCHEDULE or offer is Offer.QUEUED):
            timing.queued(outbox)
        if offer is Offer.SCHEDULE:
            self.writers.schedule(outbox)
            return True
        if offer is Offer.QUEUED:
            return True
        if offer is Offer.OVERFLOW:
            self._slow_consumer(outbox)
        return False

    def deliver_to_key(self, key: Key, payload: Payload, timed: bool = False) -> int:
        """Queue ``payload`` to the local connections of ``key`` (sync)."""
        timing = self.timing
        if timing is not None and not timed:  # an observer times the fan-out
            return timing.fan_out(self.deliver_to_key, key, payload, True)
        targets = self.index.of_key(key)
        if targets is None:
            return 0
        if isinstance(targets, Outbox):
            return 1 if self.push(targets, payload) else 0
        return self._fan_out(targets, payload, None)

    def deliver(self, envelope: Envelope, timed: bool = False) -> int:
        """Queue an envelope's payload to its local targets (sync)."""
        timing = self.timing
        if timing is not None and not timed:  # an observer times the fan-out
            return timing.fan_out(self.deliver, envelope, True)
        kind = envelope.kind
        payload = envelope.payload
        if kind is EnvelopeKind.KEY:
            if envelope.exclude is None:
                return self.deliver_to_key(envelope.target, payload, True)  # type: ignore[arg-type]
            targets = self.index.all_of_key(envelope.target)  # type: ignore[arg-type]
        elif kind is EnvelopeKind.BROADCAST:
            targets = self.index.everyone()
        elif kind is EnvelopeKind.GROUP:
            targets = self.index.of_group(envelope.target)  # type: ignore[arg-type]
        else:
            outbox = self.index.get(envelope.target)  # type: ignore[arg-type]
            return 1 if outbox is not None and self.push(outbox, payload) else 0
        return self._fan_out(targets, payload, envelope.exclude)

    def _fan_out(self, targets: tuple[Outbox, ...], payload: Payload, exclude: str | None) -> int:
        push = self.push
        delivered = 0
        if exclude is None:
            for outbox in targets:
                if push(outbox, payload):
                    delivered += 1
        else:
            for outbox in targets:
                if outbox.id != exclude and push(outbox, payload):
                    delivered += 1
        return delivered

    async def publish(self, envelope: Envelope) -> None:
        """Hand ``envelope`` to the backend; a broker outage is counted and logged once."""
        try:
            await self.backend.publish(envelope)
        except BackendUnavailable as exc:
            self.counters.backend_errors += 1
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

    # -- what a Connection asks of its run (ConnectionOwner) ---------------------------

    async def send_to(self, outbox: Outbox, message: Any) -> None:
        if not self.here:
            payload = encode(message, self.serializer)
            if self.state is RunState.CLOSED:
                await anyio.lowlevel.checkpoint()
                raise ConnectionClosed(outbox.id, outbox.close_code)
            await self.elsewhere("Connection.send", partial(self.send_to, outbox, payload))
            return
        await self.checkpoint()
        payload = encode(message, self.serializer)
        if outbox.state is not _OPEN:
            raise ConnectionClosed(outbox.id, outbox.close_code)
        timing = self.timing
        if timing is not None:
            timing.fan_out(self.push, outbox, payload)
        else:
            self.push(outbox, payload)

    async def close(self, outbox: Outbox, code: int, reason: str, *, flush: bool) -> None:
        if not self.here:
            if self.state is not RunState.CLOSED:
                call = partial(self.close, outbox, code, reason, flush=flush)
                await self.elsewhere("Connection.close", call)
            else:
                await anyio.lowlevel.checkpoint()
            return
        if not self.unregister(outbox, code, flush=flush):
            await self.checkpoint()
            return
        await self.close_transport(outbox, code, reason)
        await self.checkpoint()

    def abort(self, outbox: Outbox) -> None:
        if self.here:
            self._abort_now(outbox)
        elif self.state is not RunState.CLOSED:
            with contextlib.suppress(RuntimeError):  # the loop is gone: so is the socket
                self.loop.call_soon(partial(self._abort_now, outbox))

    def _abort_now(self, outbox: Outbox) -> None:
        state = outbox.state
        if state is _CLOSED:
            return
        code = CloseCode.INTERNAL_ERROR
        if state is _OPEN:
            self.unregister(outbox, code, flush=False)
        else:  # closing: stop its flush; the pending close() goes on to close the socket
            outbox.finish()
            self.writers.cancel(outbox)
            self._idle(outbox)
        if not _abort(outbox) and state is _OPEN:
            self.spawn_close(outbox, code, "aborted")

    async def wait_closed(self, outbox: Outbox) -> None:
        if not self.here:
            if self.state is not RunState.CLOSED and outbox.state is _OPEN:
                await self.elsewhere("Connection.wait_closed", partial(self.wait_closed, outbox))
            else:
                await anyio.lowlevel.checkpoint()
            return
        if outbox.state is not _OPEN:
            await self.checkpoint()
            return
        event = self._closed_waiters.get(outbox)
        if event is None:
            event = self._closed_waiters[outbox] = anyio.Event()
        await event.wait()

    # -- closing -----------------------------------------------------------------------

    async def close_transport(self, outbox: Outbox, code: int, reason: str) -> None:
        """Flush a CLOSING outbox, then close its transport; both within ``close_timeout``.

        Aborts the transport if that does not finish in time (or is cancelled).
        """
        finished = False
        try:
            with anyio.move_on_after(self.close_timeout):
                if outbox.state is not _CLOSED:
                    await self._flushed(outbox)
                try:
                    await outbox.transport.close(code, reason)
                except Exception as exc:
                    logger.debug("closing %r raised %r", outbox, exc)
                finished = True
        finally:
            if outbox.state is not _CLOSED:
                outbox.finish()  # what the flush could not write in time is dropped
                self.writers.cancel(outbox)
            if not finished:  # timed out, cancelled, or the registry is shutting down
                logger.info(
                    "close of %r did not finish in %ss; aborting", outbox, self.close_timeout
                )
                _abort(outbox)

    async def _flushed(self, outbox: Outbox) -> None:
        while not outbox.idle and outbox.state is not _CLOSED:
            event = self._idle_waiters.get(outbox)
            if event is None:
                event = self._idle_waiters[outbox] = anyio.Event()
            await event.wait()
        outbox.finish()

    def spawn_close(self, outbox: Outbox, code: int, reason: str) -> None:
        task_group = self._task_group
        if task_group is not None:
            task_group.start_soon(self.close_transport, outbox, code, reason)

    async def close_everyone(self, code: int, reason: str) -> int:
        outboxes = self.index.everyone()
        for outbox in outboxes:
            self.unregister(outbox, code, flush=False)
        if outboxes:
            async with anyio.create_task_group() as closers:
                for outbox in outboxes:
                    closers.start_soon(self.close_transport, outbox, code, reason)
        return len(outboxes)

    async def drained(self) -> None:
        """Wait until no frame is queued or in flight anywhere (unbounded: scope it)."""
        while self.counters.queued > 0 or self.writers.in_flight > 0:
            event = anyio.Event()
            self._drain_waiters.append(event)
            await event.wait()

    def _check_drained(self) -> None:
        waiters = self._drain_waiters
        if waiters and self.counters.queued <= 0 and self.writers.in_flight == 0:
            self._drain_waiters = []
            for event in waiters:
                event.set()

    def _idle(self, outbox: Outbox) -> None:
        timing = self.frame_timing
        if timing is not None:
            timing.forget(outbox)
        event = self._idle_waiters.pop(outbox, None)
        if event is not None:
            event.set()
        self._check_drained()

    def _broken(self, outbox: Outbox, exc: Exception) -> None:
        if outbox.state is _CLOSED:
            return
        self.counters.send_errors += 1
        logger.info("transport of %r failed, unregistering: %r", outbox, exc)
        if outbox.state is not _OPEN:  # closing: its close() carries on without the queue
            outbox.finish()
            self._idle(outbox)
            return
        self.unregister(outbox, CloseCode.INTERNAL_ERROR, flush=False)
        self.spawn_close(outbox, CloseCode.INTERNAL_ERROR, "send failed")

    def _slow_consumer(self, outbox: Outbox) -> None:
        self.counters.slow_consumer_closes += 1
        logger.warning(
            "closing slow consumer %r: outbound queue full (%d messages, %d bytes)",
            outbox,
            len(outbox.queue or ()),
            outbox.queued_bytes,
        )
        self.unregister(outbox, CloseCode.TRY_AGAIN_LATER, flush=False)
        self.spawn_close(outbox, CloseCode.TRY_AGAIN_LATER, "slow consumer: outbound queue full")

    # -- backend hooks -----------------------------------------------------------------

    async def _backend_call(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception:
            self.counters.backend_errors += 1
            logger.exception("backend hook failed; local delivery is unaffected")

    def _backend_sync(self, hook: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            self.counters.backend_errors += 1
            logger.exception("backend hook failed; local delivery is unaffected")


class _Node:
    """The run as its backend sees it (:class:`~wsregistry.backends.LocalNode`)."""

    __slots__ = ("_run",)

    def __init__(self, run: Run) -> None:
        self._run = run

    @property
    def node_id(self) -> str:
        return self._run.node_id

    def deliver(self, envelope: Envelope) -> int:
        run = self._run
        if envelope.origin == run.node_id or run.state is not RunState.RUNNING:
            return 0
        return run.deliver(envelope)

    def local_presence(self) -> tuple[tuple[str, Key], ...]:
        return tuple((outbox.id, outbox.key) for outbox in self._run.index.everyone())

    def local_keys(self) -> tuple[Key, ...]:
        return tuple(self._run.index.keys())

    def local_groups(self) -> tuple[str, ...]:
        return tuple(self._run.index.groups())

    def local_count(self, key: Key) -> int:
        return self._run.index.count_of_key(key)

    def backend_error(self) -> None:
        self._run.counters.backend_errors += 1


def _abort(outbox: Outbox) -> bool:
    """Drop the socket without a handshake if the transport can; ``True`` if it could."""
    abort = getattr(outbox.transport, "abort", None)
    if not callable(abort):
        return False
    try:
        abort()
    except Exception as exc:
        logger.debug("aborting %r raised %r", outbox, exc)
    return True
