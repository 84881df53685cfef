"""Prometheus metrics, health probes and tracing (docs/operations.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import websockets.asyncio.server
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from wsregistry import Registry
from wsregistry.adapters.fastapi import registry_lifespan
from wsregistry.adapters.websockets import Identity, RegistryHandler
from wsregistry.prometheus import RegistryCollector, start_metrics_server


def create_app() -> tuple[FastAPI, Registry, RegistryCollector]:
    """The FastAPI app of the docs (registers with prometheus_client's default registry)."""
    # --8<-- [start:fastapi]
    from wsregistry.health import LivenessEndpoint, ReadinessEndpoint
    from wsregistry.prometheus import MetricsEndpoint, RegistryCollector

    registry = Registry()
    collector = RegistryCollector(registry)  # registered with prometheus_client.REGISTRY
    app = FastAPI(lifespan=registry_lifespan(registry))
    app.router.routes += [
        Route("/metrics", MetricsEndpoint()),
        Route("/readyz", ReadinessEndpoint(registry)),  # 503 while the broker is unreachable
        Route("/livez", LivenessEndpoint()),
    ]
    # --8<-- [end:fastapi]
    return app, registry, collector


async def serve_websockets(
    registry: Registry,
    authenticate: Callable[
        [websockets.asyncio.server.ServerConnection], Awaitable[Identity | None]
    ],
    port: int,
    started: Callable[[], None],
) -> None:
    """A websockets server answering the probes (runs until cancelled)."""
    # --8<-- [start:websockets]
    from wsregistry import health

    handler = RegistryHandler(registry, authenticate=authenticate)
    hook = health.process_request(registry, then=handler.process_request)
    async with websockets.asyncio.server.serve(
        handler, "127.0.0.1", port, process_request=hook
    ) as server:
        started()
        await server.serve_forever()
    # --8<-- [end:websockets]


def trace(registry: Registry, provider: TracerProvider) -> None:
    # --8<-- [start:tracing]
    from wsregistry.tracing import instrument

    # Spans around connect, send/broadcast and backend publish. Group names are
    # recorded; keys (user ids) stay out of traces unless record_keys=True.
    instrument(registry, tracer_provider=provider, record_groups=True)
    # --8<-- [end:tracing]


def worker_lifespan(
    registry: Registry, ports: range, metrics: CollectorRegistry
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    # --8<-- [start:workers]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each uvicorn worker takes the first free port of the range (9100-9107, say):
        # list them all in the scrape config.
        server = start_metrics_server(ports, prometheus_registry=metrics)
        try:
            async with registry:
                yield
        finally:
            server.close()

    # --8<-- [end:workers]
    return lifespan
