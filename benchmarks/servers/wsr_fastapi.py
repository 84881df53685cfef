"""wsregistry on FastAPI and uvicorn, through ``wsregistry.adapters.fastapi``.

The app is built the way the adapter's docs show: ``registry_lifespan`` runs the
registry, a ``RegistryEndpoint`` serves the WebSocket route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options
from benchmarks.servers.wsr_starlette import authenticate


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    from fastapi import FastAPI

    from wsregistry.adapters.fastapi import RegistryEndpoint, registry_lifespan

    registry = make_registry(options)
    app = RegistryApp(registry)
    api = FastAPI(lifespan=registry_lifespan(registry))
    api.add_api_websocket_route("/", RegistryEndpoint(registry, authenticate=authenticate).handle)
    async with uvicorn_serving(api) as port:
        app.port = port
        yield app
