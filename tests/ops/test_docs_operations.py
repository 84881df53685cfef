"""The operations snippets of the docs run: FastAPI probes, websockets hook, tracing, workers."""

from __future__ import annotations

import contextlib

import anyio
import httpx
import prometheus_client
import pytest
from docs_src import operations_metrics
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from wsregistry import Registry
from wsregistry.adapters.websockets import Identity
from wsregistry.prometheus import RegistryCollector, start_metrics_server
from wsregistry.testing import RecordingTransport

from ..backends.conftest import free_port
from ..helpers import TIMEOUT, wait_until
from ..servers import serve
from .support import parse, scrape, value

pytestmark = pytest.mark.anyio


async def test_fastapi_snippet_serves_metrics_and_probes() -> None:
    app, registry, collector = operations_metrics.create_app()
    try:
        async with serve(app, registry=registry) as host, httpx.AsyncClient() as http:
            await registry.connect(RecordingTransport(), key="alice")
            samples = await scrape(http, f"http://{host}/metrics")
            assert value(samples, "wsregistry_connections") == 1
            assert (await http.get(f"http://{host}/readyz")).status_code == 200
            assert (await http.get(f"http://{host}/livez")).status_code == 200
    finally:
        prometheus_client.REGISTRY.unregister(collector)


async def test_websockets_snippet_answers_probes_and_serves_websockets() -> None:
    async def authenticate(connection: ServerConnection) -> Identity | None:
        return Identity(key="u")

    port = free_port()
    started = anyio.Event()
    async with Registry() as registry, anyio.create_task_group() as tasks:
        tasks.start_soon(
            operations_metrics.serve_websockets, registry, authenticate, port, started.set
        )
        with anyio.fail_after(TIMEOUT):
            await started.wait()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        async with connect(f"ws://127.0.0.1:{port}/"):
            await wait_until(lambda: registry.stats().connections == 1)
        tasks.cancel_scope.cancel()


async def test_tracing_snippet_records_groups_not_keys() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = Registry()
    operations_metrics.trace(registry, provider)
    async with registry:
        await registry.connect(RecordingTransport(), key="alice", groups=["room"])
        await registry.broadcast("hi", group="room")
        await registry.send("alice", "hi")
    attributes = {key for span in exporter.get_finished_spans() for key in span.attributes or {}}
    assert "wsregistry.group" in attributes
    assert "wsregistry.key" not in attributes


def test_each_worker_takes_its_own_metrics_port() -> None:
    metrics = CollectorRegistry()
    base = free_port()
    ports = range(base, base + 4)
    first = start_metrics_server(ports, prometheus_registry=metrics)
    second = start_metrics_server(ports, prometheus_registry=metrics)
    try:
        assert first.port != second.port
        assert {first.port, second.port} <= set(ports)
        for server in (first, second):
            text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
            assert isinstance(parse(text), dict)
    finally:
        first.close()
        second.close()
        first.close()  # idempotent


async def test_worker_lifespan_snippet_serves_metrics_while_the_app_runs() -> None:
    metrics = CollectorRegistry()
    registry = Registry()
    RegistryCollector(registry, prometheus_registry=metrics)
    base = free_port()
    lifespan = operations_metrics.worker_lifespan(registry, range(base, base + 4), metrics)
    async with lifespan(FastAPI()), httpx.AsyncClient() as http:
        answers = []
        for port in range(base, base + 4):
            with contextlib.suppress(httpx.ConnectError):
                answers.append(await scrape(http, f"http://127.0.0.1:{port}/metrics"))
        (samples,) = answers
        assert value(samples, "wsregistry_running") == 1
