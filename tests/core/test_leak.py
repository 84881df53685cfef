"""Semantic 4, measured: churn returns memory and counts to their baseline."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest

from wsregistry import Registry
from wsregistry.testing import FailingTransport, RecordingTransport, StallingTransport

from ..helpers import wait_until
from .transports import NullTransport

pytestmark = pytest.mark.anyio

CYCLES = {"asyncio": 20_000, "trio": 10_000}  # trio's scheduler is slower under tracemalloc
TOLERANCE = 64 * 1024
"""Bytes the traced heap may grow over the churn (measured: about 2 KiB either way).

A leaked connection costs over 1 KiB, so even one leak in every 20 cycles fails.
"""


async def _churn(registry: Registry, start: int, cycles: int) -> None:
    for i in range(start, start + cycles):
        key = i % 997
        if i % 50 == 0:  # a peer that stopped reading: queue, then close -> abort
            stalled = StallingTransport()
            conn = await registry.connect(stalled, key=key, groups=["stalled"])
            await conn.send({"i": i})
            await conn.send({"i": i})
            await conn.close()
            continue
        if i % 10 == 0:  # a peer that vanished: the transport breaks on first send
            broken = await registry.connect(
                FailingTransport(nowait=i % 20 == 0), key=key, groups=["room"]
            )
            await registry.send(key, {"i": i})
            if i % 20 == 0:
                assert broken.closed
            await registry.disconnect(broken)
            continue
        transport = NullTransport() if i % 2 else RecordingTransport(nowait=True)
        conn = await registry.connect(transport, key=key, groups=["room", f"g{i % 7}"])
        await registry.send(key, {"i": i})
        await conn.send("direct")
        if i % 3 == 0:
            await registry.broadcast("all", group="room", exclude=conn)
            await registry.leave(conn, "room")
        await registry.disconnect(conn)


async def test_churn_returns_memory_and_counts_to_baseline(anyio_backend: str) -> None:
    cycles = CYCLES[anyio_backend]
    async with Registry(close_timeout=0) as registry:
        tasks = len(anyio.get_running_tasks())
        await _churn(registry, 0, 2_000)  # warm caches and free lists
        await wait_until(lambda: len(anyio.get_running_tasks()) == tasks)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await _churn(registry, 2_000, cycles)
            await wait_until(lambda: len(anyio.get_running_tasks()) == tasks)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        stats = registry.stats()
        assert (stats.connections, stats.keys, stats.groups) == (0, 0, 0)
        assert (stats.queued, stats.queued_bytes) == (0, 0)
        assert registry.stats().connections == 0
        assert registry.connections() == ()
        # the fast-path ones break inside send(); the others are disconnected first
        assert stats.send_errors == sum(
            1 for i in range(cycles + 2_000) if i % 20 == 0 and i % 50 != 0
        )
        assert grown < TOLERANCE, f"heap grew by {grown} bytes over {cycles} cycles"
