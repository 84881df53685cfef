"""/metrics scraped from a real uvicorn server while real websockets clients come and go."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsregistry import Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint
from wsregistry.health import LivenessEndpoint, ReadinessEndpoint
from wsregistry.prometheus import MetricsEndpoint, RegistryCollector

from ..helpers import TIMEOUT, wait_until
from ..servers import serve
from .support import Samples, scrape, value

pytestmark = pytest.mark.anyio

GOOD_ORIGIN = "http://app.example"


async def _authenticate(websocket: WebSocket) -> Identity | None:
    user = websocket.query_params.get("user")
    return Identity(key=user, groups={"lobby"}) if user else None


def _app(registry: Registry, prom: CollectorRegistry) -> Starlette:
    endpoint = RegistryEndpoint(
        registry,
        authenticate=_authenticate,
        allowed_origins=[GOOD_ORIGIN],
        max_connections_per_key=1,
        max_message_size=100,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    return Starlette(
        routes=[
            WebSocketRoute("/ws", endpoint),
            Route("/metrics", MetricsEndpoint(prom)),
            Route("/readyz", ReadinessEndpoint(registry)),
            Route("/livez", LivenessEndpoint()),
        ],
        lifespan=lifespan,
    )


def _moving(samples: Samples) -> dict[str, float]:
    """The numbers this test moves, by a short name."""
    return {
        "connections": value(samples, "wsregistry_connections"),
        "keys": value(samples, "wsregistry_keys"),
        "groups": value(samples, "wsregistry_groups"),
        "connects": value(samples, "wsregistry_connects_total"),
        "disconnects": value(samples, "wsregistry_disconnects_total"),
        "sent": value(samples, "wsregistry_messages_sent_total"),
        "fanouts": value(samples, "wsregistry_fanout_duration_seconds_count"),
        "writes": value(samples, "wsregistry_send_to_write_seconds_count"),
        **{
            f"refused_{reason}": value(samples, "wsregistry_refusals_total", reason=reason)
            for reason in ("auth", "origin", "limit", "size", "unavailable")
        },
    }


async def test_metrics_move_exactly_as_clients_connect_receive_and_get_refused() -> None:
    registry = Registry()
    prom = CollectorRegistry()
    RegistryCollector(registry, prometheus_registry=prom, time_queued_frames=True)
    async with serve(_app(registry, prom)) as host, httpx.AsyncClient() as http:
        metrics = f"http://{host}/metrics"
        ws = f"ws://{host}/ws"
        start = _moving(await scrape(http, metrics))
        assert start == dict.fromkeys(start, 0)
        before = await scrape(http, metrics)
        assert value(before, "wsregistry_running") == 1
        assert value(before, "wsregistry_backend_up", backend="memory") == 1

        # three clients connect and receive five broadcasts each
        clients = [await connect(f"{ws}?user={u}", origin=GOOD_ORIGIN) for u in "abc"]  # type: ignore[arg-type]
        await wait_until(lambda: registry.stats().connections == 3)
        for n in range(5):
            assert await registry.broadcast({"n": n}, group="lobby") == 3
        for client in clients:
            with anyio.fail_after(TIMEOUT):
                assert [json.loads(await client.recv())["n"] for _ in range(5)] == list(range(5))
        now = _moving(await scrape(http, metrics))
        assert now == {
            **start,
            "connections": 3,
            "keys": 3,
            "groups": 1,
            "connects": 3,
            "sent": 15,
            "fanouts": 5,
            "writes": 15,
        }

        # refusals: no user (auth), a foreign Origin, a second tab over the limit
        for uri, origin, status in (
            (ws, GOOD_ORIGIN, 403),
            (f"{ws}?user=z", "http://evil.example", 403),
            (f"{ws}?user=a", GOOD_ORIGIN, 429),
        ):
            with pytest.raises(InvalidStatus) as refused:
                await connect(uri, origin=origin)  # type: ignore[arg-type]
            assert refused.value.response.status_code == status
        # an inbound message over max_message_size closes the socket with 1009
        await clients[2].send("x" * 200)
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await clients[2].recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        await wait_until(lambda: registry.stats().connections == 2)
        # a client leaves on its own
        await clients[0].close()
        await wait_until(lambda: registry.stats().connections == 1)

        after = _moving(await scrape(http, metrics))
        assert after == {
            **now,
            "connections": 1,
            "keys": 1,
            "connects": 3,
            "disconnects": 2,
            "refused_auth": 1,
            "refused_origin": 1,
            "refused_limit": 1,
            "refused_size": 1,
        }
        assert (await http.get(f"http://{host}/livez")).json() == {"alive": True}
        ready = await http.get(f"http://{host}/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        await clients[1].close()
