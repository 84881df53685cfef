"""Run an ASGI send eagerly in a task of its own (asyncio on Python 3.12+ only).

An ASGI ``send`` is a coroutine, but servers such as uvicorn complete it without
suspending while the socket's write buffer has room. :meth:`EagerSender.start`
runs it as an *eager* asyncio task (Python 3.12's ``eager_start``): the task
steps the coroutine at once, inside the caller's call but as **its own task**
(``asyncio.current_task()`` is the new task, with a copy of the caller's
context). If it finished, the frame is written and the task was never
scheduled. If it suspended (the server or a middleware waits), the rest runs in
that same task, and the sender stays busy until it is done, so later frames
wait their turn and keep their order.

So an ASGI send always starts and ends in one task: a middleware that wraps
``send`` in a cancel scope or sets a context variable (OpenTelemetry's ASGI
middleware does) never sees its scope exited in another task, and its context
variables never leak into the caller. Before Python 3.12 there are no eager
tasks: :data:`EAGER_TASKS` is false and the Starlette transport has no fast
path (the registry's writer tasks send every frame); there :meth:`EagerSender.start`
creates a plain task, which starts at the next turn of the loop (the drop-in's
sockets use that).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

__all__ = ["EAGER_TASKS", "EagerSender", "running_asyncio"]

EAGER_TASKS = sys.version_info >= (3, 12)
"""Whether asyncio can start a task eagerly (Python 3.12+)."""


def running_asyncio() -> bool:
    """Whether the caller runs in an asyncio event loop (not trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class EagerSender:
    """Starts send coroutines as eager tasks; at most one of them is ever unfinished."""

    __slots__ = ("_inflight",)

    def __init__(self) -> None:
        self._inflight: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether an earlier send has not finished (or failed and was not awaited)."""
        return self._inflight is not None

    def start(self, send: Coroutine[Any, Any, None]) -> None:
        """Run ``send`` in a new task started at once; a wait continues in that task.

        Must not be called while :attr:`busy`. Raises what ``send`` raises before
        its first wait.
        """
        task = _eager_task(send)
        if task.done():
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
            return
        self._inflight = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        # A failure stays visible (busy) until wait() raises it; exception() marks it retrieved.
        if (task.cancelled() or task.exception() is None) and self._inflight is task:
            self._inflight = None

    async def wait(self) -> None:
        """Wait for the unfinished send, if any; raises its error."""
        inflight = self._inflight
        if inflight is not None:
            await asyncio.shield(inflight)

    def cancel(self) -> None:
        """Abandon the unfinished send (the socket is being dropped)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.cancel()


def _eager_task(send: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """An eager task on Python 3.12+; before, a plain task (it starts at the next loop turn)."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(send, loop=loop, eager_start=True)
    return loop.create_task(send)
