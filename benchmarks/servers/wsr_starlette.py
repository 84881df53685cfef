"""wsregistry on Starlette and uvicorn (through the Starlette adapter)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options

if TYPE_CHECKING:
    from starlette.websockets import WebSocket


class _Transport:
    """Interim transport until the adapter lands."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self.ws.send_text(data)
        else:
            await self.ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    registry = make_registry(options)
    app = RegistryApp(registry)

    async def endpoint(ws: WebSocket) -> None:
        user = ws.query_params["user"]
        await ws.accept()
        async with registry.session(_Transport(ws), key=user):
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass

    asgi = Starlette(routes=[WebSocketRoute("/", endpoint)])
    async with registry, uvicorn_serving(asgi) as port:
        app.port = port
        yield app
