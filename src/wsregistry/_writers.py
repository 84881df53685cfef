"""Writer tasks shared by a registry's connections.

A connection with queued frames is put on a ready list; writer tasks take
connections off it and ``await transport.send`` one frame at a time, keeping a
connection until its queue is empty. A connection is on the list or in a
writer's hands at most once, so its frames go out in order.

Tasks are spawned only when needed: when a connection becomes ready and every
writer is inside a send, and when a writer is about to send while others wait
and no writer is free to serve them (then the pool doubles, so a burst of
sends that all wait ramps up in a few loop iterations). A burst to many
sockets whose sends complete without waiting costs two tasks, not one per
connection; a send that waits (a slow peer) holds its own writer, never the
others.
Writers exit when the list is empty: idle connections cost no task.

Closing a connection cancels the send in flight for it (the writer's cancel
scope); the writer then carries on with a fresh scope.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from .connection import Connection
    from .registry import Registry

BATCH = 64
"""Frames a writer sends between checkpoints when sends complete without waiting."""


class Writer:
    """One writer task's handle: the scope that cancels its send in flight."""

    __slots__ = ("scope",)

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()


class WriterPool:
    """The ready list and the writer tasks of one registry."""

    __slots__ = ("_free", "_ready", "_registry", "tasks")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._ready: deque[Connection] = deque()
        self._free = 0  # writers not inside a transport send
        self.tasks = 0

    @property
    def in_flight(self) -> int:
        """Writers inside a transport send now."""
        return self.tasks - self._free

    def schedule(self, conn: Connection) -> None:
        """Queue ``conn`` (not already scheduled) for writing; never blocks."""
        self._ready.append(conn)
        if self._free == 0:
            self._spawn()

    def _spawn(self) -> None:
        self._free += 1
        self.tasks += 1
        self._registry._spawn(self._run)

    async def _run(self) -> None:
        writer = Writer()
        try:
            while self._ready:
                with writer.scope:
                    await self._write(writer)
                if writer.scope.cancel_called:  # a close stopped a send: a scope is single-use
                    writer.scope = anyio.CancelScope()
                    self._registry._queue_emptied()  # that send is no longer in flight
        finally:
            self._free -= 1
            self.tasks -= 1

    async def _write(self, writer: Writer) -> None:
        ready = self._ready
        registry = self._registry
        counters = registry._counters
        scope = writer.scope
        sent = 0
        conn: Connection | None = None
        while conn is not None or ready:
            if conn is None:
                conn = ready.popleft()
            queue = conn._queue
            if conn._closed or not queue:
                conn._release()
                conn = None
                continue
            payload = queue.popleft()
            size = len(payload)
            conn._queued_bytes -= size
            counters.queued -= 1
            counters.queued_bytes -= size
            self._free -= 1
            if ready and self._free == 0:
                # In case this send waits, others must serve the rest: as many
                # new writers as there are now (doubling while sends keep waiting),
                # but no more than there are connections waiting.
                for _ in range(min(len(ready), self.tasks)):
                    self._spawn()
            failure: Exception | None = None
            conn._writer = writer
            try:
                await conn.transport.send(payload)
            except Exception as exc:
                failure = exc
            finally:
                conn._writer = None
                self._free += 1
            if failure is not None:
                registry._transport_failed(conn, failure)  # discards and counts its queue
                conn._release()
                conn = None
            else:
                counters.sent += 1
                if not queue or conn._closed:
                    conn._release()
                    conn = None
                # else: keep serving this connection. Sending its next frame at
                # once (instead of queueing it behind the others) lets a writer
                # whose transport yields on every send keep pace with a caller
                # that queues one frame per checkpoint; the others are served by
                # the writers spawned above.
            registry._queue_emptied()
            if scope.cancel_called:
                if conn is not None:  # hand it back: another writer carries on
                    ready.append(conn)
                return  # a close hit this scope during a send that did not wait
            sent += 1
            if sent % BATCH == 0:
                await anyio.lowlevel.checkpoint()
