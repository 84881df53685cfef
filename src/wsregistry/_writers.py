"""Writer tasks shared by the outboxes of one registry run.

An outbox with queued frames is put on a ready list; writer tasks take outboxes
off it and ``await transport.send`` one frame at a time, keeping an outbox
until its queue is empty. An outbox is on the list or in a writer's hands at
most once (``Outbox.scheduled``), so its frames go out in order.

Tasks are spawned only when needed: when an outbox becomes ready and every
writer is inside a send, and when a writer is about to send while others wait
and no writer is free to serve them (then the pool doubles, so a burst of
sends that all wait ramps up in a few loop iterations). A burst to many
sockets whose sends complete without waiting costs two tasks, not one per
connection; a send that waits (a slow peer) holds its own writer, never the
others. Writers exit when the list is empty: idle connections cost no task.

``cancel(outbox)`` stops the send in flight for an outbox that was closed
(the writer's cancel scope); the writer then carries on with a fresh scope.
The pool reports what it cannot decide itself through the two callbacks the
run gives it: a transport that broke, and an outbox that became idle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from ._outbox import ConnectionState

if TYPE_CHECKING:
    from ._counters import Counters
    from ._outbox import Outbox
    from ._timing import Timing

BATCH = 64
"""Frames a writer sends between checkpoints when sends complete without waiting."""

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class _Writer:
    """One writer task's handle: the scope that cancels its send in flight."""

    __slots__ = ("scope",)

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()


class WriterPool:
    """The ready list and the writer tasks of one registry run.

    Args:
        spawn: starts a task in the run's task group.
        checkpoint: the run's checkpoint.
        counters: the run's shared counters (``sent`` is counted here).
        on_broken: called with an outbox whose transport raised, and the error.
        on_idle: called with an outbox a writer has just let go of.
    """

    __slots__ = (
        "_checkpoint",
        "_counters",
        "_free",
        "_on_broken",
        "_on_idle",
        "_ready",
        "_sending",
        "_spawn_task",
        "tasks",
        "timing",
    )

    def __init__(
        self,
        *,
        spawn: Spawn,
        checkpoint: Callable[[], Awaitable[None]],
        counters: Counters,
        on_broken: Callable[[Outbox, Exception], None],
        on_idle: Callable[[Outbox], None],
    ) -> None:
        self._spawn_task = spawn
        self._checkpoint = checkpoint
        self._counters = counters
        self._on_broken = on_broken
        self._on_idle = on_idle
        self._ready: deque[Outbox] = deque()
        self._sending: dict[Outbox, _Writer] = {}
        self._free = 0  # writers not inside a transport send
        self.tasks = 0
        self.timing: Timing | None = None  # set by the run while an observer is attached

    @property
    def in_flight(self) -> int:
        """Writers inside a transport send now."""
        return self.tasks - self._free

    def schedule(self, outbox: Outbox) -> None:
        """Hand ``outbox`` (just scheduled by its ``offer``) to a writer; never blocks."""
        self._ready.append(outbox)
        if self._free == 0:
            self._spawn()

    def cancel(self, outbox: Outbox) -> None:
        """Stop the send in flight for ``outbox``, if there is one."""
        writer = self._sending.get(outbox)
        if writer is not None:
            writer.scope.cancel()

    def _spawn(self) -> None:
        self._free += 1
        self.tasks += 1
        self._spawn_task(self._run)

    def _release(self, outbox: Outbox) -> None:
        outbox.release()
        self._on_idle(outbox)

    async def _run(self) -> None:
        writer = _Writer()
        try:
            while self._ready:
                with writer.scope:
                    await self._write(writer)
                if writer.scope.cancel_called:  # a close stopped a send: a scope is single-use
                    writer.scope = anyio.CancelScope()
        finally:
            self._free -= 1
            self.tasks -= 1

    async def _write(self, writer: _Writer) -> None:
        ready = self._ready
        counters = self._counters
        scope = writer.scope
        sent = 0
        outbox: Outbox | None = None
        while outbox is not None or ready:
            if outbox is None:
                outbox = ready.popleft()
            payload = outbox.take()
            if payload is None:
                self._release(outbox)
                outbox = None
                continue
            timing = self.timing
            stamp = timing.taken(outbox) if timing is not None else None
            self._free -= 1
            if ready and self._free == 0:
                # In case this send waits, others must serve the rest: as many
                # new writers as there are now (doubling while sends keep waiting),
                # but no more than there are outboxes waiting.
                for _ in range(min(len(ready), self.tasks)):
                    self._spawn()
            failure: Exception | None = None
            self._sending[outbox] = writer
            try:
                await outbox.transport.send(payload)
            except Exception as exc:
                failure = exc
            except BaseException:  # cancelled: the outbox was closed, or the run ends
                self._release(outbox)
                raise
            finally:
                del self._sending[outbox]
                self._free += 1
            if failure is not None:
                self._on_broken(outbox, failure)
                self._release(outbox)
                outbox = None
            else:
                counters.sent += 1
                if stamp is not None:
                    timing.observer.written(perf_counter() - stamp, 1)  # type: ignore[union-attr]
                if not outbox.queue or outbox.state is ConnectionState.CLOSED:
                    self._release(outbox)
                    outbox = None
                # else: keep serving this outbox. Sending its next frame at once
                # (instead of queueing it behind the others) lets a writer whose
                # transport yields on every send keep pace with a caller that
                # queues one frame per checkpoint; the others are served by the
                # writers spawned above.
            if scope.cancel_called:
                if outbox is not None:  # hand it back: this task carries on with a new scope
                    ready.append(outbox)
                return  # a close hit this scope during a send that did not wait
            sent += 1
            if sent % BATCH == 0:
                await self._checkpoint()
