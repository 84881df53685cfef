"""wsregistry on a plain ``websockets`` server (through the ``websockets`` adapter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options, user_of

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection


class _Transport:
    """Interim transport until the adapter lands."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    from websockets.asyncio.server import serve

    registry = make_registry(options)
    app = RegistryApp(registry)

    async def handler(ws: ServerConnection) -> None:
        user = user_of(ws.request.path if ws.request else "")
        async with registry.session(_Transport(ws), key=user):
            await ws.wait_closed()

    async with registry, serve(handler, "127.0.0.1", 0, backlog=4096) as server:
        app.port = next(iter(server.sockets)).getsockname()[1]
        yield app
