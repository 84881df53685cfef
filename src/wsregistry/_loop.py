"""The event loop a registry run belongs to, seen from any thread.

anyio's ``from_thread`` calls block the caller until the loop answers; a thread
that runs its own event loop must not block, so ``LoopHandle`` schedules a
callback the way each backend allows (``call_soon_threadsafe`` on asyncio, the
trio token's ``run_sync_soon`` on trio) and returns at once.

``checkpoint_for_current_loop`` picks the cheapest correct checkpoint: on
asyncio, one bare yield to the loop (exactly what anyio's asyncio checkpoint
does, without its per-call backend lookup); on trio, trio's own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class LoopHandle:
    """Captured inside a running loop; used from any thread.

    Attributes:
        thread_id: the thread that runs the loop.
    """

    __slots__ = ("_schedule", "thread_id")

    def __init__(self) -> None:
        self.thread_id = threading.get_ident()
        self._schedule: Callable[[Callable[[], Any]], Any]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # only reachable when running on trio

            self._schedule = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._schedule = loop.call_soon_threadsafe

    def call_soon(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` in the loop's thread soon. Thread-safe, non-blocking.

        Raises:
            RuntimeError: the loop is closed.
        """
        self._schedule(callback)


@types.coroutine
def _bare_yield() -> Generator[None, None, None]:
    yield


def checkpoint_for_current_loop() -> Callable[[], Awaitable[None]]:
    """The checkpoint function for the loop running in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import trio

        return trio.lowlevel.checkpoint
    return _bare_yield


async def wait_future(future: concurrent.futures.Future[T]) -> T:
    """Await ``future`` (completed by another thread) from whatever loop runs here.

    Cancelling the wait cancels the future if its work has not started.
    """
    if not future.done():
        here = LoopHandle()
        done = anyio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # this loop ended: nobody waits any more
                here.call_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
    return future.result()
