"""Helpers for backend tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from tests.helpers import TIMEOUT


async def until(check: Callable[[], Awaitable[bool]], *, within: float = TIMEOUT) -> None:
    """Wait until the async ``check()`` is true; fail after ``within`` seconds.

    For state held in a broker (presence, a reconnect), which offers no event to wait on.
    """
    with anyio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - broker state has no event
            await anyio.sleep(0.005)
