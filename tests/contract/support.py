"""What every contract test needs: a user-written transport and condition waits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio


class Sock:
    """A transport as a user would write it from DESIGN.md: two async methods."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.closed_with: tuple[int, str] | None = None

    async def send(self, data: str | bytes) -> None:
        self.frames.append(data)

    async def close(self, code: int, reason: str) -> None:
        if self.closed_with is None:
            self.closed_with = (code, reason)


async def until(pred: Callable[[], bool], limit: float = 5) -> None:
    """Wait until ``pred()`` holds; fail after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while not pred():  # noqa: ASYNC110 - polled state has no event
            await anyio.sleep(0.005)


async def until_async(fn: Callable[[], Awaitable[Any]], value: Any, limit: float = 5) -> None:
    """Wait until ``await fn() == value``; fail after ``limit`` seconds."""
    with anyio.fail_after(limit):
        while await fn() != value:  # noqa: ASYNC110 - a remote state has no event
            await anyio.sleep(0.01)
