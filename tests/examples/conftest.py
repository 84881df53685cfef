"""Run example apps on a real uvicorn server bound to 127.0.0.1 on a free port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


class _Server(uvicorn.Server):
    """A uvicorn server that reports when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def bound_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port (serve it, or read its port first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def _serve(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    with sock if sock is not None else bound_socket() as sock:
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio")
        server = _Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                await server.ready.wait()
            assert server.started, "uvicorn failed to start"
            try:
                yield f"127.0.0.1:{port}"
            finally:
                server.should_exit = True


@pytest.fixture
def serve() -> Callable[..., AbstractAsyncContextManager[str]]:
    """``async with serve(app[, sock]) as host:`` runs ``app`` until the block ends.

    ``host`` is ``ip:port``; pass a socket from :func:`bound_socket` to know the
    port before the app is built.
    """
    return _serve


@pytest.fixture
def listen_socket() -> Iterator[socket.socket]:
    """A socket bound to a free port on 127.0.0.1, for apps that must know their origin."""
    with bound_socket() as sock:
        yield sock
