"""Real servers for tests: uvicorn on 127.0.0.1, on a free port, in the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn

from wsregistry import Registry
from wsregistry.adapters import uvicorn as wsr_uvicorn

from .helpers import TIMEOUT


def bound_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port (read its port, then serve it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


class _Server(uvicorn.Server):
    """A uvicorn server that reports when it listens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class _DrainingServer(_Server, wsr_uvicorn.Server):
    """The adapter's server: drains the registry and closes with 1001 before shutdown."""


@asynccontextmanager
async def serve(
    app: Any, sock: socket.socket | None = None, *, registry: Registry | None = None
) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn until the block ends; yields ``"127.0.0.1:port"``.

    Pass a socket from :func:`bound_socket` to know the port before the app is
    built, and the app's registry to shut down like ``wsregistry.adapters.uvicorn``.
    """
    with sock if sock is not None else bound_socket() as listening:
        port = listening.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="websockets-sansio")
        server = _Server(config) if registry is None else _DrainingServer(config, registry=registry)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [listening])
            with anyio.fail_after(TIMEOUT * 2):
                await server.ready.wait()
            assert server.started, "uvicorn failed to start"
            try:
                yield f"127.0.0.1:{port}"
            finally:
                server.should_exit = True
