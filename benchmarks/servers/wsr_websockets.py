"""wsregistry on a plain ``websockets`` server, through the adapter's ``serve()``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options, user_of

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from wsregistry.adapters.websockets import Identity


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    from wsregistry.adapters.websockets import Identity, serve

    registry = make_registry(options)
    app = RegistryApp(registry)

    async def authenticate(connection: ServerConnection) -> Identity:
        return Identity(key=user_of(connection.request.path if connection.request else ""))

    async with (
        registry,
        serve(registry, "127.0.0.1", 0, authenticate=authenticate, backlog=4096) as server,
    ):
        app.port = next(iter(server.sockets)).getsockname()[1]
        yield app
