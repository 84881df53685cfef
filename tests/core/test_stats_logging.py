"""Semantic 9: stats() counts and logging under the "wsregistry" logger."""

from __future__ import annotations

import logging

import anyio
import pytest

from wsregistry import CloseCode, Registry, RegistryStats
from wsregistry.testing import FailingTransport, RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until

pytestmark = pytest.mark.anyio


async def test_stats_count_everything() -> None:
    async with Registry(max_queue=2, close_timeout=0.01, drain_timeout=0) as registry:
        empty = registry.stats()
        assert isinstance(empty, RegistryStats)
        assert (empty.connections, empty.keys, empty.groups, empty.sent) == (0, 0, 0, 0)
        assert empty.backend.name == "memory"
        assert empty.backend.connected

        ok = RecordingTransport(nowait=True)
        await registry.connect(ok, key="a", groups=["g1", "g2"])
        await registry.connect(RecordingTransport(nowait=True), key="a", groups=["g1"])
        stalled = StallingTransport()
        slow = await registry.connect(stalled, key="b")
        failing = await registry.connect(FailingTransport(fail_after=1, nowait=True), key="c")
        stats = registry.stats()
        assert (stats.connections, stats.keys, stats.groups) == (4, 3, 2)

        await registry.broadcast("one")  # 3 written at once (fast path), 1 queued
        await wait_until(lambda: slow.queued == 0)  # the stalled writer holds it
        stats = registry.stats()
        assert stats.sent == 3
        assert stats.queued == 0

        await registry.broadcast("two")  # failing one breaks; stalled one queues
        await registry.broadcast("three")
        stats = registry.stats()
        assert stats.send_errors == 1
        assert failing.closed
        assert stats.queued == 2
        assert stats.queued_bytes == len("two") + len("three")
        assert stats.connections == 3

        await registry.broadcast("four")  # overflow: slow consumer closed
        stats = registry.stats()
        assert stats.slow_consumer_closes == 1
        assert stats.dropped == 3  # two queued + the one that did not fit
        assert (stats.queued, stats.queued_bytes) == (0, 0)
        assert (stats.connections, stats.keys, stats.groups) == (2, 1, 2)
        assert stats.sent == 3 + 2 + 2 + 2
        assert stats.backend_errors == 0
        assert ok.sent == ["one", "two", "three", "four"]


async def test_logging_goes_to_the_wsregistry_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wsregistry")
    async with Registry(max_queue=1, close_timeout=0.01) as registry:
        stalled = StallingTransport()
        slow = await registry.connect(stalled, key="slow")
        for frame in ("a", "b", "c"):
            await slow.send(frame)
            await anyio.lowlevel.checkpoint()
        assert slow.close_code == CloseCode.TRY_AGAIN_LATER
        broken = await registry.connect(FailingTransport(nowait=True), key="broken")
        await broken.send("x")
        assert broken.closed
        with anyio.fail_after(TIMEOUT):
            await wait_until(lambda: stalled.aborted)
    records = [r for r in caplog.records if r.name.startswith("wsregistry")]
    assert records
    assert all(r.name == "wsregistry" for r in records)
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert any("slow consumer" in r.getMessage() for r in warnings)
    assert any("failed" in r.getMessage() and r.levelno == logging.INFO for r in records)
    assert any("started" in r.getMessage() for r in records)
    assert any("closed" in r.getMessage() for r in records)
