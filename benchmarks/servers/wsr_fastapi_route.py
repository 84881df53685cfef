"""wsregistry on FastAPI and uvicorn, the endpoint mounted as a plain route (``endpoint.route``)."""

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
    api.router.routes.append(RegistryEndpoint(registry, authenticate=authenticate).route("/"))
    async with uvicorn_serving(api) as port:
        app.port = port
        yield app
