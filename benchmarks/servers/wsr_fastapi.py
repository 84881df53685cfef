"""wsregistry on FastAPI and uvicorn (through the FastAPI adapter).

FastAPI resolves the endpoint's annotations at runtime, so it is imported at the top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from benchmarks.servers._uvicorn import uvicorn_serving
from benchmarks.servers._wsr import RegistryApp, make_registry
from benchmarks.servers.base import Options
from benchmarks.servers.wsr_starlette import _Transport


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    registry = make_registry(options)
    app = RegistryApp(registry)
    api = FastAPI()

    @api.websocket("/")
    async def endpoint(ws: WebSocket, user: str) -> None:
        await ws.accept()
        async with registry.session(_Transport(ws), key=user):
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass

    async with registry, uvicorn_serving(api) as port:
        app.port = port
        yield app
