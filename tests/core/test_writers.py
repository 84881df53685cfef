"""The shared writer tasks: few tasks for fast sockets, one per waiting send, none when idle."""

from __future__ import annotations

import random

import anyio
import pytest

from wsregistry import Connection, ConnectionClosed, Registry
from wsregistry.testing import FailingTransport, RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until
from .transports import InstantTransport, SlowTransport

pytestmark = pytest.mark.anyio


async def test_burst_to_fast_sockets_needs_two_writers_not_one_per_connection() -> None:
    async with Registry() as registry:
        transports = [InstantTransport() for _ in range(1000)]
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        most = 0
        for round_ in range(1, 4):
            await registry.broadcast(str(round_))
            assert registry.stats().writer_tasks == 1
            with anyio.fail_after(TIMEOUT):
                while any(len(t.sent) < round_ for t in transports):
                    most = max(most, registry.stats().writer_tasks)
                    await anyio.lowlevel.checkpoint()
        assert most <= 2
        await wait_until(lambda: registry.stats().writer_tasks == 0)
        assert all(t.sent == ["1", "2", "3"] for t in transports)


async def test_many_stalled_peers_ahead_do_not_starve_a_healthy_one() -> None:
    async with Registry(drain_timeout=0, close_timeout=0) as registry:
        for i in range(200):
            await registry.connect(StallingTransport(), key=i)
        healthy = RecordingTransport()
        await registry.connect(healthy, key="healthy")
        with anyio.fail_after(TIMEOUT):
            for n in range(3):
                await registry.broadcast(str(n))
            await healthy.wait_for(3)
        assert registry.stats().writer_tasks >= 200  # each waiting send holds its own writer


async def test_waiting_sends_ramp_up_writers_quickly() -> None:
    # every send waits one loop iteration; the pool doubles per iteration, so a
    # tight broadcast loop to 256 peers does not overflow even small queues
    async with Registry(max_queue=32) as registry:
        transports = [RecordingTransport() for _ in range(256)]
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        most = 0
        for n in range(40):
            await registry.broadcast(n)
            most = max(most, registry.stats().writer_tasks)
        with anyio.fail_after(TIMEOUT):
            for transport in transports:
                await transport.wait_for(40)
        assert registry.stats().slow_consumer_closes == 0
        assert all(t.messages() == list(range(40)) for t in transports)
        assert 16 <= most <= 2 * 256  # it grew, and by doubling at most


async def test_disconnecting_a_stalled_connection_frees_its_writer() -> None:
    async with Registry() as registry:
        stalled = StallingTransport()
        conn = await registry.connect(stalled, key="s")
        other = RecordingTransport()
        await registry.connect(other, key="o")
        await registry.broadcast("x")
        await wait_until(lambda: conn.queued == 0)  # in flight, stuck
        assert registry.stats().writer_tasks >= 1
        await registry.disconnect(conn)
        await wait_until(lambda: registry.stats().writer_tasks == 0)
        await registry.send("o", "after")
        with anyio.fail_after(TIMEOUT):
            await other.wait_for(2)
        assert other.sent == ["x", "after"]
        assert stalled.sent == []


async def test_shutdown_waits_for_sends_in_flight() -> None:
    transports = [SlowTransport(0.02) for _ in range(5)]
    async with Registry() as registry:
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        for n in range(3):
            await registry.broadcast(n)
    for transport in transports:
        assert transport.messages() == [0, 1, 2]  # the last frame was not cut off
        assert transport.close_code == 1001
    assert registry.stats().dropped == 0


class _YieldingTransport(RecordingTransport):
    """Every send waits a random number of loop passes (0-3)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    async def send(self, data: str | bytes) -> None:
        for _ in range(self._rng.randrange(4)):
            await anyio.lowlevel.checkpoint()
        self._record(data)


@pytest.mark.parametrize("seed", range(3))
async def test_random_mix_of_peers_each_gets_exactly_its_frames(seed: int) -> None:
    rng = random.Random(seed)
    async with Registry(drain_timeout=0, close_timeout=0) as registry:
        aimed: dict[Connection, list[str]] = {}
        kinds: dict[Connection, str] = {}

        async def connect() -> None:
            kind = rng.choice(["instant", "nowait", "yielding", "slow", "stalled", "failing"])
            transport: RecordingTransport
            if kind == "instant":
                transport = InstantTransport()
            elif kind == "nowait":
                transport = RecordingTransport(nowait=True)
            elif kind == "yielding":
                transport = _YieldingTransport(rng)
            elif kind == "slow":
                transport = SlowTransport(rng.choice([0, 0.0005, 0.002]))
            elif kind == "stalled":
                transport = StallingTransport()
            else:
                transport = FailingTransport(fail_after=rng.randrange(5), nowait=rng.random() < 0.5)
            conn = await registry.connect(
                transport, key=rng.randrange(10), groups=rng.sample(["a", "b", "c"], 2)
            )
            aimed[conn] = []
            kinds[conn] = kind

        for _ in range(30):
            await connect()
        for n in range(600):
            live = [c for c in aimed if not c.closed]
            op = rng.random()
            frame = f"f{n}"
            if op < 0.4:
                group = rng.choice([None, "a", "b", "c"])
                exclude = rng.choice([None, *live]) if live else None
                targets = [
                    c for c in live if (group is None or group in c.groups) and c is not exclude
                ]
                await registry.broadcast(frame, group=group, exclude=exclude)
            elif op < 0.7:
                key = rng.randrange(10)
                targets = [c for c in live if c.key == key]
                await registry.send(key, frame)
            elif op < 0.85 and live:
                conn = rng.choice(live)
                targets = [conn]
                try:
                    await conn.send(frame)
                except ConnectionClosed:  # its transport broke during the checkpoint
                    assert kinds[conn] == "failing"
            elif op < 0.92 and live:
                await registry.disconnect(rng.choice(live))
                targets = []
            else:
                await connect()
                targets = []
            for conn in targets:
                aimed[conn].append(frame)
            if rng.random() < 0.3:
                await anyio.sleep(rng.choice([0, 0.0005]))

        def settled() -> bool:  # everyone but the stalled peers has written everything
            return all(c.idle for c in registry.connections() if kinds[c] != "stalled")

        await wait_until(settled)
        for conn, frames in aimed.items():
            got = conn.transport.sent  # type: ignore[attr-defined]
            if kinds[conn] == "stalled":
                assert got == []
            elif conn.closed:  # disconnected or broken: a prefix, in order
                assert got == frames[: len(got)]
            else:
                assert got == frames, kinds[conn]
