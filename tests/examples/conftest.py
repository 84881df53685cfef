"""Run example apps on a real uvicorn server bound to 127.0.0.1 on a free port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn

from wsregistry import Registry
from wsregistry.adapters import uvicorn as wsr_uvicorn


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


class _Server(uvicorn.Server):
    """A uvicorn server that reports when it listens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def bound_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port (serve it, or read its port first)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class _DrainingServer(_Server, wsr_uvicorn.Server):
    """The adapter's server (drains the registry, closes with 1001 before shutdown)."""


@asynccontextmanager
async def _serve(
    app: Any, sock: socket.socket | None = None, *, registry: Registry | None = None
) -> AsyncIterator[str]:
    with sock if sock is not None else bound_socket() as sock:
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio")
        server = _Server(config) if registry is None else _DrainingServer(config, registry=registry)
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
    """``async with serve(app[, sock][, registry=]) as host:`` runs ``app`` until the block ends.

    ``host`` is ``ip:port``; pass a bound socket to know the port before the app
    is built, and the app's registry to shut down like ``wsregistry.adapters.uvicorn``.
    """
    return _serve


@pytest.fixture
def listen_socket() -> Iterator[socket.socket]:
    """A socket bound to a free port on 127.0.0.1, for apps that must know their origin."""
    with bound_socket() as sock:
        yield sock
