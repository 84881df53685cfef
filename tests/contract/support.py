"""What every contract test needs: a user-written transport and condition waits."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
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


@contextlib.asynccontextmanager
async def run_uvicorn(
    app: Any, registry: Any = None, sock: socket.socket | None = None, **kw: Any
) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (port 0 or ``sock``); yields the port.

    With ``registry``, through ``wsregistry.adapters.uvicorn.Server`` (drain, 1001).
    """
    import uvicorn

    from wsregistry.adapters import uvicorn as wsr_uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **kw)
    server = wsr_uvicorn.Server(config, registry=registry) if registry else uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock] if sock else None))
    try:
        await until(lambda: server.started or task.done())
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        with anyio.fail_after(15):
            await task
