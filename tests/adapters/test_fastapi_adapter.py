"""FastAPI specifics: the lifespan helper, the registry dependency, APIRouter routes.

FastAPI resolves route annotations in the module's globals, so everything a
route's signature names is imported at module level here.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from starlette.requests import HTTPConnection
from websockets.asyncio.client import connect

from wsregistry import Registry
from wsregistry.adapters.fastapi import (
    STATE_KEY,
    Identity,
    RegistryDep,
    RegistryEndpoint,
    get_registry,
    registry_lifespan,
)

from ..helpers import TIMEOUT
from ._harness import Harness

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", ["fastapi-websockets", "fastapi-wsproto"])
async def test_registry_dependency_serves_http_routes_next_to_the_socket(kind: str) -> None:
    async with Harness(kind) as h:
        client = await h.connect("ann")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{h.port}") as http:
            online = (await http.get("/online/ann")).json()
            offline = (await http.get("/online/bob")).json()
        assert online == {"online": True, "node": h.registry.node_id}
        assert offline["online"] is False
        await client.close()


async def test_lifespan_runs_the_registry_around_the_app_lifespan_and_merges_state() -> None:
    registry = Registry()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        events.append(f"app start, registry running={registry.running}")
        yield {"db": "connection"}
        events.append(f"app stop, registry running={registry.running}")

    app = FastAPI(lifespan=registry_lifespan(registry, lifespan=app_lifespan))
    async with app.router.lifespan_context(app) as state:
        assert state == {"db": "connection", STATE_KEY: registry}
        assert registry.running
    assert not registry.running
    assert events == ["app start, registry running=True", "app stop, registry running=True"]

    plain = Registry()
    async with registry_lifespan(plain)(app) as state:
        assert state == {STATE_KEY: plain}


def test_get_registry_says_how_to_fix_a_missing_lifespan() -> None:
    connection = HTTPConnection({"type": "http", "state": {}, "headers": []})
    with pytest.raises(RuntimeError, match="registry_lifespan"):
        get_registry(connection)
    with pytest.raises(TypeError, match="Registry"):
        registry_lifespan(object())  # type: ignore[arg-type]


async def test_endpoint_handle_works_inside_your_own_fastapi_route() -> None:
    registry = Registry()

    async def authenticate(websocket: WebSocket) -> Identity | None:
        return Identity(key=websocket.query_params["user"])

    async def on_message(conn: Any, data: str | bytes) -> None:
        await registry.broadcast({"from": conn.key, "text": data})

    chat = RegistryEndpoint(registry, authenticate=authenticate, on_message=on_message)
    app = FastAPI(lifespan=registry_lifespan(registry))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, injected: RegistryDep) -> None:
        assert injected is registry
        await chat.handle(websocket)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, ws="wsproto", log_level="warning"))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [sock])
        with anyio.fail_after(TIMEOUT):
            while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event
                await anyio.sleep(0.005)
            async with connect(f"ws://127.0.0.1:{port}/ws?user=zoe") as client:
                await client.send("hi")
                assert json.loads(await client.recv()) == {"from": "zoe", "text": "hi"}
        server.should_exit = True
