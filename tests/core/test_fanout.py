"""Semantic 1: fan-out never waits on a peer; every public async call is a checkpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from wsregistry import Connection, Registry
from wsregistry.testing import RecordingTransport, StallingTransport

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio


async def test_stalled_target_does_not_block_send_or_broadcast() -> None:
    async with Registry(drain_timeout=0, close_timeout=0) as registry:
        stalled = StallingTransport()
        healthy = RecordingTransport()
        await registry.connect(stalled, key="stalled", groups=["all"])
        await registry.connect(healthy, key="healthy", groups=["all"])
        with anyio.fail_after(TIMEOUT):
            for i in range(200):
                assert await registry.send("stalled", {"i": i}) == 1
                assert await registry.broadcast({"b": i}) == 2
                assert await registry.broadcast({"g": i}, group="all") == 2
            await healthy.wait_for(400)
        assert stalled.sent == []
        assert registry.stats().queued >= 599  # all but the frame the writer holds


async def test_stalled_targets_do_not_slow_fan_out() -> None:
    # 1000 stalled peers: one broadcast still returns after one checkpoint,
    # so a broadcast loop finishes in time proportional to targets, not peers' pace.
    async with Registry(drain_timeout=0, close_timeout=0) as registry:
        stalled = [StallingTransport() for _ in range(1000)]
        for i, transport in enumerate(stalled):
            await registry.connect(transport, key=i)
        with anyio.fail_after(TIMEOUT):
            for _ in range(20):
                assert await registry.broadcast("tick") == 1000


async def test_tight_broadcast_loop_lets_other_tasks_and_writers_run() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    # A queue bound far below the loop length: writers must drain during the loop.
    async with Registry(max_queue=64) as registry:
        transport = RecordingTransport()  # no fast path: every frame goes through the writer
        await registry.connect(transport, key="k")
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            ticks = 0
            for i in range(2000):
                await registry.broadcast(str(i))
            assert ticks >= 1000  # the ticker ran during the loop
            tg.cancel_scope.cancel()
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(2000)
        assert transport.sent == [str(i) for i in range(2000)]
        assert registry.stats().slow_consumer_closes == 0


def _calls(registry: Registry, conn: Connection) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "send": lambda: registry.send("k", "m"),
        "broadcast": lambda: registry.broadcast("m"),
        "broadcast_group": lambda: registry.broadcast("m", group="g"),
        "send_to_connection": lambda: registry.send_to_connection(conn.id, "m"),
        "conn.send": lambda: conn.send("m"),
        "connect": lambda: registry.connect(RecordingTransport(), key="new"),
        "join": lambda: registry.join(conn, "other"),
        "is_online": lambda: registry.is_online("k"),
        "online_count": lambda: registry.online_count("k"),
        "online_keys": registry.online_keys,
    }


CALL_NAMES = [
    "send",
    "broadcast",
    "broadcast_group",
    "send_to_connection",
    "conn.send",
    "connect",
    "join",
    "is_online",
    "online_count",
    "online_keys",
]


@pytest.mark.parametrize("name", CALL_NAMES)
async def test_cancelled_call_raises_and_does_nothing(name: str) -> None:
    async with Registry() as registry:
        transport = RecordingTransport(nowait=True)
        conn = await registry.connect(transport, key="k", groups=["g"])
        call = _calls(registry, conn)[name]
        reached = False
        with anyio.CancelScope() as scope:
            scope.cancel()
            await call()
            reached = True
        assert scope.cancelled_caught
        assert not reached
        assert transport.sent == []
        assert registry.stats().sent == 0
        assert registry.lookup("new") == ()
        assert conn.groups == {"g"}


@pytest.mark.parametrize("name", CALL_NAMES)
async def test_every_public_async_call_yields(name: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with Registry() as registry:
        conn = await registry.connect(RecordingTransport(nowait=True), key="k", groups=["g"])
        call = _calls(registry, conn)[name]
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            ticks = 0
            for _ in range(20):
                await call()  # the only awaits in this loop
            assert ticks >= 10
            tg.cancel_scope.cancel()
