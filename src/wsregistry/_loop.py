"""A handle on the registry's event loop, for calls from other threads.

anyio's ``from_thread`` calls block the caller until the loop answers; a thread
that runs its own event loop must not block, so this schedules a callback the
way each backend allows (``call_soon_threadsafe`` on asyncio, the trio token's
``run_sync_soon`` on trio) and returns at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class LoopHandle:
    """Captured inside the running loop; used from any thread."""

    __slots__ = ("_schedule",)

    def __init__(self) -> None:
        self._schedule: Callable[[Callable[[], Any]], Any]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import trio  # only reachable when the registry runs on trio

            self._schedule = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            self._schedule = loop.call_soon_threadsafe

    def call_soon(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` in the loop's thread soon. Thread-safe, non-blocking.

        Raises:
            RuntimeError: the loop is closed.
        """
        self._schedule(callback)
