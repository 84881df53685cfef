"""Run an ASGI send eagerly: finish it in the caller when it does not wait (asyncio only).

An ASGI ``send`` is a coroutine, but servers such as uvicorn complete it without
suspending while the socket's write buffer has room. :meth:`EagerSender.start`
steps the coroutine once: if it finished, the frame is written and no task was
needed. If it suspended (the server applies back-pressure), the rest runs as an
asyncio task and the sender stays busy until that task is done, so later frames
wait their turn and keep their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["EagerSender", "running_asyncio"]


def running_asyncio() -> bool:
    """Whether the caller runs in an asyncio event loop (not trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class EagerSender:
    """Steps send coroutines in the caller; at most one of them is ever unfinished."""

    __slots__ = ("_inflight",)

    def __init__(self) -> None:
        self._inflight: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether an earlier send has not finished (or failed and was not awaited)."""
        return self._inflight is not None

    def start(self, send: Coroutine[Any, Any, None]) -> None:
        """Run ``send`` until it finishes or first waits; a wait continues in a task.

        Must not be called while :attr:`busy`. Raises what ``send`` raises before
        its first wait.
        """
        try:
            waiting = send.send(None)
        except StopIteration:
            return
        task = asyncio.get_running_loop().create_task(_finish(send, waiting))
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


async def _finish(send: Coroutine[Any, Any, None], waiting: Any) -> None:
    await _Resume(send, waiting)


class _Resume:
    """Awaitable that hands a suspended coroutine's pending wait back to the loop."""

    __slots__ = ("_send", "_waiting")

    def __init__(self, send: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._send = send
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, None]:
        send, waiting = self._send, self._waiting
        try:
            while True:
                try:
                    value = yield waiting
                except GeneratorExit:
                    send.close()
                    raise
                except BaseException as exc:
                    waiting = send.throw(exc)
                else:
                    waiting = send.send(value)
        except StopIteration:
            return
