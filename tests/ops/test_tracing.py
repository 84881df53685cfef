"""OpenTelemetry spans with the SDK's in-memory exporter: names, parents, privacy."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from wsregistry import Registry
from wsregistry.backends import MemoryBackend, MemoryHub
from wsregistry.envelope import Envelope
from wsregistry.errors import BackendUnavailable
from wsregistry.testing import RecordingTransport
from wsregistry.tracing import instrument

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


class _DownBackend(MemoryBackend):
    async def publish(self, envelope: Envelope) -> None:
        raise BackendUnavailable("broker down")


@pytest.mark.parametrize("allowed", [False, True])
async def test_spans_nest_under_the_callers_span_and_carry_keys_only_when_allowed(
    exporter: InMemorySpanExporter, provider: TracerProvider, allowed: bool
) -> None:
    hub = MemoryHub()
    a = Registry(backend=MemoryBackend(hub=hub), node_id="a")
    b = Registry(backend=MemoryBackend(hub=hub), node_id="b")
    instrument(a, tracer_provider=provider, record_keys=allowed, record_groups=allowed)
    tracer = provider.get_tracer("app")
    async with a, b:
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="user-42", groups=["room-1"])
        with tracer.start_as_current_span("request") as request:
            conn = await a.connect(
                RecordingTransport(nowait=True), key="user-42", groups=["room-1"]
            )
            assert await a.send("user-42", {"n": 1}) == 1
            assert await a.broadcast("hi", group="room-1", exclude=conn) == 0
        assert remote.messages() == [{"n": 1}, "hi"]
    spans = exporter.get_finished_spans()
    request_id = request.get_span_context().span_id
    (connect,) = _by_name(spans, "wsregistry.connect")
    (send,) = _by_name(spans, "wsregistry.send")
    (broadcast,) = _by_name(spans, "wsregistry.broadcast")
    publishes = _by_name(spans, "wsregistry.publish")
    assert [_parent_of(span) for span in (connect, send, broadcast)] == [request_id] * 3
    assert {_parent_of(span) for span in publishes} == {
        send.context.span_id,
        broadcast.context.span_id,
    }
    assert len(publishes) == 2
    assert {span.kind for span in publishes} == {SpanKind.PRODUCER}
    assert send.attributes is not None
    assert send.attributes["wsregistry.delivered"] == 1
    assert send.attributes["wsregistry.node_id"] == "a"
    assert send.attributes["wsregistry.backend"] == "memory"
    assert connect.attributes is not None
    assert connect.attributes["wsregistry.connection_id"] == conn.id
    every_attribute = {key for span in spans for key in (span.attributes or {})}
    private = {"wsregistry.key", "wsregistry.group", "wsregistry.groups"}
    if allowed:
        assert private <= every_attribute
        assert send.attributes["wsregistry.key"] == "user-42"
        assert broadcast.attributes is not None
        assert broadcast.attributes["wsregistry.group"] == "room-1"
        kinds = {(span.attributes or {})["wsregistry.kind"]: span.attributes for span in publishes}
        assert kinds["key"] is not None
        assert kinds["key"]["wsregistry.key"] == "user-42"
        assert kinds["group"] is not None
        assert kinds["group"]["wsregistry.group"] == "room-1"
    else:
        assert not private & every_attribute


async def test_a_failed_publish_is_an_error_span_under_a_send_that_succeeds_locally(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    hub = MemoryHub()
    a = Registry(backend=_DownBackend(hub=hub))
    b = Registry(backend=MemoryBackend(hub=hub))
    instrumentation = instrument(a, tracer_provider=provider)
    with pytest.raises(ValueError, match="already instrumented"):
        instrument(a, tracer_provider=provider)
    async with a, b:
        await a.connect(RecordingTransport(nowait=True), key="k")
        assert await a.send("k", "x") == 1  # delivered locally; the outage is counted
        assert a.stats().backend_errors == 1
        instrumentation.uninstrument()
        instrumentation.uninstrument()  # idempotent
        await a.send("k", "y")
    spans = exporter.get_finished_spans()
    (send,) = _by_name(spans, "wsregistry.send")
    (publish,) = _by_name(spans, "wsregistry.publish")
    assert _parent_of(publish) == send.context.span_id
    assert publish.status.status_code is StatusCode.ERROR
    assert send.status.status_code is not StatusCode.ERROR
    assert [event.name for event in publish.events] == ["exception"]
    assert "send" not in a.__dict__
