"""wsregistry on Starlette and uvicorn, through the adapter's ``RegistryEndpoint``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from wsregistry.adapters.starlette import Identity


async def authenticate(websocket: WebSocket) -> Identity:
    """The benchmark's "authentication": the user id in the query string."""
    from wsregistry.adapters.starlette import Identity

    return Identity(key=websocket.query_params["user"])


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    from wsregistry.adapters.starlette import RegistryEndpoint

    registry = make_registry(options)
    app = RegistryApp(registry)
    endpoint = RegistryEndpoint(registry, authenticate=authenticate)
    asgi = Starlette(routes=[WebSocketRoute("/", endpoint)])
    async with registry, uvicorn_serving(asgi) as port:
        app.port = port
        yield app
