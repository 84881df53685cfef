"""A module-level registry across app lifespans, and sends from other loops to real sockets."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import anyio
import anyio.to_thread
import pytest
import websockets
from docs_src import fastapi_app
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from wsregistry import Registry
from wsregistry.adapters.fastapi import Identity, RegistryEndpoint, registry_lifespan

from ..backends.conftest import SHARED_REDIS
from ..helpers import TIMEOUT
from ..servers import serve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("lifespans", [2, 20])
def test_the_documented_fastapi_app_survives_a_test_client_per_test(lifespans: int) -> None:
    # docs_src/fastapi_app.py is the README's pattern: a module-level Registry() and
    # registry_lifespan(registry). Every FastAPI suite opens a TestClient per test.
    for n in range(lifespans):
        with (
            TestClient(fastapi_app.app) as client,
            client.websocket_connect("/ws?token=alice-token") as ws,
        ):
            assert ws.receive_json() == {"type": "welcome", "user": "alice"}
            response = client.post("/notify/alice")
            assert response.status_code == 200, (n, response.text)
            assert response.json() == {"queued_here": 1}
            assert ws.receive_json() == {"type": "notice"}
        assert not fastapi_app.registry.running


def _app(registry: Registry | None = None) -> tuple[FastAPI, Registry]:
    registry = registry if registry is not None else Registry()

    async def authenticate(websocket: WebSocket) -> Identity:
        return Identity(key=websocket.query_params["user"])

    endpoint = RegistryEndpoint(registry, authenticate=authenticate)
    app = FastAPI(lifespan=registry_lifespan(registry))
    app.add_api_websocket_route("/ws", endpoint.handle)
    return app, registry


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_send_awaited_on_a_worker_threads_loop_reaches_a_real_socket(backend: str) -> None:
    if backend == "redis":
        from wsregistry.backends.redis import RedisBackend

        namespace = "wsrtest-" + uuid.uuid4().hex[:12]
        app, registry = _app(Registry(backend=RedisBackend(SHARED_REDIS, namespace=namespace)))
    else:
        app, registry = _app()
    async with (
        serve(app) as address,
        websockets.connect(f"ws://{address}/ws?user=ann") as client,
    ):
        with anyio.fail_after(TIMEOUT):
            while not registry.lookup("ann"):  # noqa: ASYNC110 - no event for "registered"
                await anyio.sleep(0.005)

        async def bulk_import() -> list[int]:  # what the app's worker thread runs
            assert not await registry.is_online("bob")  # a backend round trip
            return [await registry.send("ann", {"n": n}, require=True) for n in range(3)]

        def worker() -> list[int]:
            assert threading.current_thread() is not threading.main_thread()
            return asyncio.run(bulk_import())

        with anyio.fail_after(TIMEOUT):
            assert await anyio.to_thread.run_sync(worker) == [1, 1, 1]
            got = [json.loads(await client.recv()) for _ in range(3)]
        assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
        # the worker's loop is gone; the server loop's registry is unharmed
        assert await registry.send("ann", "after") == 1
        with anyio.fail_after(TIMEOUT):
            assert await client.recv() == "after"
        assert registry.stats().backend_errors == 0
        assert registry.stats().backend.connected


async def test_an_endpoint_mounted_as_a_plain_route_on_fastapi() -> None:
    registry = Registry()

    async def authenticate(websocket: WebSocket) -> Identity:
        return Identity(key=websocket.query_params["user"])

    app = FastAPI(lifespan=registry_lifespan(registry))
    app.router.routes.append(RegistryEndpoint(registry, authenticate=authenticate).route("/ws"))
    async with (
        serve(app) as address,
        websockets.connect(f"ws://{address}/ws?user=ann", compression=None) as client,
    ):
        with anyio.fail_after(TIMEOUT):
            while not registry.lookup("ann"):  # noqa: ASYNC110 - no event for "registered"
                await anyio.sleep(0.005)
            assert await registry.send("ann", "through the plain route") == 1
            assert await client.recv() == "through the plain route"
