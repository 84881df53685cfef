"""The collector on its own: labels, several registries, histogram buckets, misuse errors."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from wsregistry import Registry
from wsregistry.prometheus import RegistryCollector, _Histogram
from wsregistry.testing import RecordingTransport

from .support import parse, value

pytestmark = pytest.mark.anyio


def test_a_registry_with_another_observer_or_a_non_registry_is_refused() -> None:
    registry = Registry()
    RegistryCollector(registry, prometheus_registry=None)
    with pytest.raises(ValueError, match="already has an observer"):
        RegistryCollector(registry, prometheus_registry=None)
    with pytest.raises(TypeError, match="got str for 'x'"):
        RegistryCollector({"x": "not a registry"}, prometheus_registry=None)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="increasing positive"):
        RegistryCollector(Registry(), prometheus_registry=None, fanout_buckets=(0.1, 0.01))


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = _Histogram((0.001, 0.01))
    histogram.observe(0.001)  # on the bound: counted in le=0.001
    histogram.observe(0.005, 3)
    histogram.observe(5.0)
    assert histogram.buckets() == [("0.001", 1), ("0.01", 4), ("+Inf", 5)]
    assert histogram.sum == pytest.approx(0.001 + 0.015 + 5.0)


async def test_several_registries_are_labelled_and_detach_stops_observing() -> None:
    chat, ops = Registry(), Registry(overflow="drop_newest")
    prom = CollectorRegistry()
    collector = RegistryCollector({"chat": chat, "ops": ops}, prometheus_registry=prom)
    async with chat, ops:
        await chat.connect(RecordingTransport(nowait=True), key="a", groups=["g"])
        await chat.connect(RecordingTransport(nowait=True), key="b")
        await ops.connect(RecordingTransport(nowait=True), key="c")
        await chat.broadcast("x")
        samples = parse(generate_latest(prom).decode())
        assert value(samples, "wsregistry_connections", "chat") == 2
        assert value(samples, "wsregistry_connections", "ops") == 1
        assert value(samples, "wsregistry_groups", "chat") == 1
        assert value(samples, "wsregistry_messages_sent_total", "chat") == 2
        assert value(samples, "wsregistry_messages_sent_total", "ops") == 0
        assert value(samples, "wsregistry_queue_overflows_total", "ops", policy="drop_newest") == 0
        assert value(samples, "wsregistry_fanout_duration_seconds_count", "chat") == 1
        assert value(samples, "wsregistry_send_to_write_seconds_count", "chat") == 2
        assert value(samples, "wsregistry_send_to_write_seconds_bucket", "chat", le="+Inf") == 2
        assert value(samples, "wsregistry_fanout_duration_seconds_count", "ops") == 0
        collector.detach()
        assert chat.observer is None
        await chat.broadcast("y")
        samples = parse(generate_latest(prom).decode())
        assert value(samples, "wsregistry_messages_sent_total", "chat") == 4  # still exported
        assert value(samples, "wsregistry_fanout_duration_seconds_count", "chat") == 1
    samples = parse(generate_latest(prom).decode())
    assert value(samples, "wsregistry_running", "chat") == 0
