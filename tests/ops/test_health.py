"""Readiness flips with the broker; liveness does not; both served by uvicorn and websockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import InvalidStatus

from wsregistry import Registry
from wsregistry.adapters.websockets import Identity, RegistryHandler
from wsregistry.backends.redis import RedisBackend
from wsregistry.health import LivenessEndpoint, ReadinessEndpoint, process_request, readiness
from wsregistry.prometheus import MetricsEndpoint, RegistryCollector

from ..backends.conftest import PrivateRedis
from ..helpers import TIMEOUT
from ..servers import bound_socket, serve
from .support import scrape, value

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds; fail after a few timeout units (a broker outage)."""
    with anyio.fail_after(TIMEOUT * 4):
        while not await check():  # noqa: ASYNC110 - polled state over HTTP
            await anyio.sleep(0.02)


async def _authenticate(connection: ServerConnection) -> Identity | None:
    return Identity(key="u")


@contextlib.asynccontextmanager
async def _websockets_server(registry: Registry) -> AsyncIterator[str]:
    handler = RegistryHandler(registry, authenticate=_authenticate)
    hook = process_request(registry, then=handler.process_request)
    with bound_socket() as sock:
        port = sock.getsockname()[1]
        async with ws_serve(handler, sock=sock, process_request=hook):
            yield f"127.0.0.1:{port}"


async def test_readiness_flips_when_redis_stops_and_back_when_it_restarts(
    private_redis: PrivateRedis,
) -> None:
    backend = RedisBackend(
        private_redis.url,
        namespace="ops-health",
        heartbeat_interval=0.2,
        probe_interval=0.2,
        probe_timeout=0.5,
        reconnect_backoff=(0.02, 0.2),
        op_timeout=2.0,
        socket_timeout=2.0,
    )
    registry = Registry(backend=backend)
    prom = CollectorRegistry()
    RegistryCollector(registry, prometheus_registry=prom)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    app = Starlette(
        routes=[
            Route("/readyz", ReadinessEndpoint(registry)),
            Route("/livez", LivenessEndpoint()),
            Route("/metrics", MetricsEndpoint(prom)),
        ],
        lifespan=lifespan,
    )
    async with (
        serve(app) as host,
        httpx.AsyncClient() as http,
        _websockets_server(registry) as ws_host,
    ):
        urls = [f"http://{host}/readyz", f"http://{ws_host}/readyz"]

        async def ready_is(status: int) -> bool:
            answers = [await http.get(url) for url in urls]
            return all(answer.status_code == status for answer in answers)

        async def backend_up_is(up: int) -> bool:
            samples = await scrape(http, f"http://{host}/metrics")
            return value(samples, "wsregistry_backend_up", backend="redis") == up

        assert await ready_is(200)
        body = (await http.get(urls[1])).json()
        assert body == {
            "ready": True,
            "registries": {
                "default": {
                    "ready": True,
                    "running": True,
                    "backend": "redis",
                    "backend_connected": True,
                }
            },
        }
        # the websockets server still serves WebSockets through the chained hook
        async with connect(f"ws://{ws_host}/ws") as client:
            assert client.response is not None
        reconnects = value(
            await scrape(http, f"http://{host}/metrics"),
            "wsregistry_backend_reconnects_total",
            backend="redis",
        )

        private_redis.kill()
        await eventually(lambda: ready_is(503))
        assert await backend_up_is(0)
        down = (await http.get(urls[0])).json()
        assert down["ready"] is False
        assert down["registries"]["default"]["backend_connected"] is False
        assert down["registries"]["default"]["running"] is True
        for url in (f"http://{host}/livez", f"http://{ws_host}/livez"):
            live = await http.get(url)  # a broker outage is no reason to restart
            assert (live.status_code, live.json()) == (200, {"alive": True})

        private_redis.start()
        await eventually(lambda: ready_is(200))
        assert await backend_up_is(1)
        after = await scrape(http, f"http://{host}/metrics")
        assert value(after, "wsregistry_backend_reconnects_total", backend="redis") > reconnects
    assert readiness(registry).ready is False  # the registry has stopped
    assert readiness(registry).registries[0].running is False


async def test_websockets_hook_passes_other_requests_on_and_keeps_refusing() -> None:
    async def nobody(connection: ServerConnection) -> Identity | None:
        return None

    async with Registry() as registry:
        handler = RegistryHandler(registry, authenticate=nobody)
        hook = process_request(registry, then=handler.process_request)
        with bound_socket() as sock:
            port = sock.getsockname()[1]
            async with ws_serve(handler, sock=sock, process_request=hook):
                with pytest.raises(InvalidStatus) as refused:
                    await connect(f"ws://127.0.0.1:{port}/ws")
                assert refused.value.response.status_code == 403
                async with httpx.AsyncClient() as http:
                    ready = await http.get(f"http://127.0.0.1:{port}/readyz")
                    assert ready.status_code == 200
                    assert ready.headers["content-type"] == "application/json"
