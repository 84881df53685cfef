"""Calls handed to a registry's loop from other threads and other event loops.

Each calling thread gets its own FIFO, served by its own task while it has
calls waiting: calls from one thread run in the order they were made, and one
slow call (a ``require=True`` presence round trip to a slow broker) holds up
only its own thread's later calls, never another thread's.

A queue is kept non-empty while its task runs a call, so a new call from the
same thread is appended behind it instead of starting a second task. Tasks are
started by ``dispatch``, the one long-lived task of the queues: a callback
scheduled from another thread runs outside any task, where a task group
cannot start tasks on every backend.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Generic, TypeVar

import anyio

from ._loop import LoopHandle
from .errors import RegistryClosed

T = TypeVar("T")

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class _Call(Generic[T]):
    """One call from another thread, with the future that reports it."""

    __slots__ = ("call", "future", "operation")

    def __init__(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        future: concurrent.futures.Future[T],
    ) -> None:
        self.operation = operation
        self.call = call
        self.future = future

    async def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return  # the caller gave up before it started
        try:
            result = await self.call()
        except Exception as exc:
            self.future.set_exception(exc)
        except BaseException:  # cancelled: the registry is shutting down
            self.future.set_exception(RegistryClosed(self.operation))
            raise
        else:
            self.future.set_result(result)

    def fail(self) -> None:
        if self.future.running():
            return  # it is under way; the registry's shutdown cancels it
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(RegistryClosed(self.operation))


class CallQueues:
    """Per-thread FIFOs of calls to run on one loop."""

    __slots__ = ("_lock", "_loop", "_open", "_queues", "_spawn", "_starts", "_wake")

    def __init__(self, loop: LoopHandle, spawn: Spawn) -> None:
        self._loop = loop
        self._spawn = spawn
        self._lock = threading.Lock()
        self._queues: dict[int, deque[_Call[Any]]] = {}
        self._open = True
        self._starts: deque[int] = deque()  # threads whose queue needs a task
        self._wake = anyio.Event()

    def submit(
        self, operation: str, call: Callable[[], Awaitable[T]]
    ) -> concurrent.futures.Future[T]:
        """Queue ``call`` behind the calling thread's earlier calls. Thread-safe.

        Raises:
            RegistryClosed: the queues are closed, or the loop is gone.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        job = _Call(operation, call, future)
        thread = threading.get_ident()
        with self._lock:
            if not self._open:
                raise RegistryClosed(operation)
            queue = self._queues.get(thread)
            if queue is not None:  # its task is running: it will get there
                queue.append(job)
                return future
            self._queues[thread] = deque((job,))
        try:
            self._loop.call_soon(partial(self._start, thread))
        except RuntimeError as exc:  # the loop is gone without closing the registry
            self.close()
            raise RegistryClosed(operation) from exc
        return future

    def _start(self, thread: int) -> None:
        """In the loop's thread (a callback): have ``dispatch`` serve ``thread``'s queue."""
        self._starts.append(thread)
        self._wake.set()

    async def dispatch(self) -> None:
        """Start a task per thread with calls waiting; runs for the life of the run."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._starts:
                thread = self._starts.popleft()
                with self._lock:
                    if thread not in self._queues:
                        continue  # closed meanwhile; its calls have failed
                self._spawn(partial(self._serve, thread))

    async def _serve(self, thread: int) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(thread)
                if not queue:
                    self._queues.pop(thread, None)
                    return
                job = queue[0]
            await job.run()
            with self._lock:
                if queue and queue[0] is job:
                    queue.popleft()

    def close(self) -> None:
        """Refuse new calls; fail every call that has not started. Idempotent, thread-safe."""
        with self._lock:
            self._open = False
            queues = list(self._queues.values())
            self._queues.clear()
        for queue in queues:
            for job in queue:
                job.fail()
