"""Semantic 3: isolation, bounded queues and overflow policies."""

from __future__ import annotations

import anyio
import pytest

from wsregistry import CloseCode, Connection, OverflowPolicy, Registry
from wsregistry.testing import FailingTransport, RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until

pytestmark = pytest.mark.anyio


async def _stall(registry: Registry, key: str) -> tuple[StallingTransport, Connection]:
    """A stalled connection whose writer already holds one frame ("m0") in flight."""
    transport = StallingTransport()
    conn = await registry.connect(transport, key=key)
    await conn.send("m0")
    await wait_until(lambda: conn.queued == 0)  # the writer took m0 and is stuck on it
    return transport, conn


@pytest.mark.parametrize("nowait", [False, True])
async def test_stalled_and_failing_peers_do_not_affect_others(nowait: bool) -> None:
    async with Registry(drain_timeout=0, close_timeout=0.01) as registry:
        stalled = StallingTransport()
        failing = FailingTransport(fail_after=3, nowait=nowait)
        healthy = RecordingTransport(nowait=nowait)
        await registry.connect(stalled, key="s")
        failing_conn = await registry.connect(failing, key="f", groups=["g"])
        await registry.connect(healthy, key="h", groups=["g"])
        with anyio.fail_after(TIMEOUT):
            for i in range(50):
                await registry.broadcast({"i": i})
                await registry.broadcast({"g": i}, group="g")
            await healthy.wait_for(100)
            await failing_conn.wait_closed()
        assert healthy.messages()[:4] == [{"i": 0}, {"g": 0}, {"i": 1}, {"g": 1}]
        assert len(failing.sent) == 3
        assert failing_conn.close_code == CloseCode.INTERNAL_ERROR
        with anyio.fail_after(TIMEOUT):
            assert await failing.wait_closed() == CloseCode.INTERNAL_ERROR
        assert registry.stats().send_errors == 1


async def test_queue_bound_by_messages_closes_slow_consumer_with_1013() -> None:
    async with Registry(max_queue=5, close_timeout=0.01, drain_timeout=0) as registry:
        transport, conn = await _stall(registry, "slow")
        healthy = RecordingTransport()
        await registry.connect(healthy, key="ok")
        for i in range(1, 6):
            assert await registry.broadcast(f"m{i}") == 2
        assert conn.queued == 5
        assert not conn.closed
        assert await registry.broadcast("m6") == 1  # did not fit: the slow one is closed
        assert conn.closed
        assert conn.close_code == CloseCode.TRY_AGAIN_LATER
        assert registry.lookup("slow") == ()
        stats = registry.stats()
        assert stats.slow_consumer_closes == 1
        assert stats.dropped == 6  # five queued + the one that did not fit
        assert stats.connections == 1
        with anyio.fail_after(TIMEOUT):
            await wait_until(lambda: transport.aborted)  # its close stalled too: aborted
            await healthy.wait_for(6)
        assert transport.close_code == CloseCode.TRY_AGAIN_LATER
        assert healthy.sent == [f"m{i}" for i in range(1, 7)]


async def test_queue_bound_by_bytes() -> None:
    async with Registry(max_queue=1000, max_queue_bytes=100, close_timeout=0.01) as registry:
        _transport, conn = await _stall(registry, "slow")
        chunk = "x" * 40
        await conn.send(chunk)
        await conn.send(chunk)
        assert conn.queued_bytes == 80
        assert registry.stats().queued_bytes == 80
        await conn.send(chunk)  # 120 > 100
        assert conn.closed
        assert conn.close_code == CloseCode.TRY_AGAIN_LATER
        assert registry.stats().queued_bytes == 0
        assert registry.stats().queued == 0


async def test_one_large_message_fits_an_empty_queue() -> None:
    async with Registry(max_queue_bytes=10) as registry:
        transport = RecordingTransport()
        conn = await registry.connect(transport, key="k")
        await conn.send("y" * 1000)
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(1)
        assert not conn.closed


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        (OverflowPolicy.DROP_OLDEST, ["m0", "m4", "m5", "m6"]),
        (OverflowPolicy.DROP_NEWEST, ["m0", "m1", "m2", "m3"]),
    ],
)
async def test_drop_policies_by_messages(policy: OverflowPolicy, kept: list[str]) -> None:
    async with Registry(max_queue=3, overflow=policy) as registry:
        transport, conn = await _stall(registry, "slow")
        for i in range(1, 7):
            await conn.send(f"m{i}")
        assert conn.queued == 3
        assert not conn.closed
        stats = registry.stats()
        assert stats.dropped == 3
        assert stats.slow_consumer_closes == 0
        transport.release()
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(4)
        await wait_until(lambda: registry.stats().sent == 4)
        assert transport.sent == kept
        assert registry.stats().queued == 0


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        (OverflowPolicy.DROP_OLDEST, ["m0", "c" * 60]),
        (OverflowPolicy.DROP_NEWEST, ["m0", "a" * 30, "b" * 30]),
    ],
)
async def test_drop_policies_by_bytes(policy: str, kept: list[str]) -> None:
    async with Registry(max_queue_bytes=64, overflow=policy) as registry:
        transport, conn = await _stall(registry, "slow")
        await conn.send("a" * 30)
        await conn.send("b" * 30)
        await conn.send("c" * 60)  # needs both older frames gone to fit
        assert conn.queued_bytes <= 64
        transport.release()
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(len(kept))
        await wait_until(lambda: registry.stats().sent == len(kept))
        assert transport.sent == kept
        assert registry.stats().dropped == 3 - (len(kept) - 1)


async def test_stalled_close_is_aborted_after_close_timeout() -> None:
    # the flush cannot finish (the peer stopped reading): abort when close_timeout is up
    async with Registry(close_timeout=0.05) as registry:
        transport, conn = await _stall(registry, "slow")
        await conn.send("queued")
        with anyio.fail_after(TIMEOUT):
            await conn.close(CloseCode.NORMAL, "bye")
        assert transport.aborted
        assert conn.closed
        assert registry.lookup("slow") == ()
        assert registry.stats().dropped == 1  # "queued" could not be flushed
        assert registry.stats().queued == 0


async def test_stalled_close_without_flush_sends_the_close_then_aborts() -> None:
    async with Registry(close_timeout=0.05) as registry:
        transport, conn = await _stall(registry, "slow")
        with anyio.fail_after(TIMEOUT):
            await conn.close(CloseCode.NORMAL, "bye", flush=False)
        assert transport.aborted
        assert transport.close_code == CloseCode.NORMAL
        assert conn.closed


async def test_default_limits_bound_memory_of_stalled_clients() -> None:
    # 10k stalled clients with the default limits hold at most max_queue_bytes each;
    # check the documented defaults are "a few MiB at most" per connection.
    registry = Registry()
    assert registry.limits.max_bytes <= 4 * 1024 * 1024
    assert registry.limits.max_messages <= 4096
    assert registry.limits.overflow is OverflowPolicy.CLOSE
