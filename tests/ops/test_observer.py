"""The core's observer hook: exact timings with a fake clock, drop reasons, zero state when off."""

from __future__ import annotations

import anyio
import pytest

import wsregistry._timing
import wsregistry._writers
from wsregistry import Registry
from wsregistry.testing import RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the hook is core: both loops


class Recorder:
    """An Observer that keeps every call."""

    def __init__(self) -> None:
        self.fanouts: list[tuple[float, int]] = []
        self.writes: list[tuple[float, int]] = []
        self.refusals: list[str] = []

    def fanned_out(self, seconds: float, targets: int) -> None:
        self.fanouts.append((seconds, targets))

    def written(self, seconds: float, frames: int) -> None:
        self.writes.append((seconds, frames))

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)


class Clock:
    """A perf_counter the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(wsregistry._timing, "perf_counter", fake)
    monkeypatch.setattr(wsregistry._writers, "perf_counter", fake)
    return fake


async def test_each_queued_frame_reports_its_own_delay_even_after_drop_oldest(
    clock: Clock,
) -> None:
    recorder = Recorder()
    registry = Registry(max_queue=2, overflow="drop_oldest")
    registry.observer = recorder
    async with registry:
        peer = StallingTransport()
        await registry.connect(peer, key="k")
        clock.now = 1.0
        await registry.send("k", 1)
        await wait_until(lambda: registry.stats().queued == 0)  # frame 1 is in flight
        for n in (2, 3, 4, 5):  # 4 pushes 2 out, 5 pushes 3 out
            clock.now = float(n)
            assert await registry.send("k", n) == 1
        stats = registry.stats()
        assert (stats.queued, stats.overflows, stats.dropped, stats.dropped_closed) == (2, 2, 2, 0)
        clock.now = 10.0
        peer.release()
        await wait_until(lambda: len(recorder.writes) == 3)  # reported after the write
        assert peer.messages() == [1, 4, 5]
        # frame 1 waited 9 s, frame 4 waited 6 s (not 8: frame 2's stamp went with it), 5 waited 5 s
        assert recorder.writes == [(9.0, 1), (6.0, 1), (5.0, 1)]
        assert recorder.fanouts == [(0.0, 1)] * 5
    assert registry.stats().sent == 3


async def test_direct_writes_are_reported_together_with_the_fan_out_duration() -> None:
    recorder = Recorder()
    async with Registry() as registry:
        registry.observer = recorder  # attached while running
        peers = [RecordingTransport(nowait=True) for _ in range(3)]
        for peer in peers:
            await registry.connect(peer, key="k")
        assert await registry.broadcast("hi") == 3
        assert len(recorder.fanouts) == 1
        seconds, targets = recorder.fanouts[0]
        assert targets == 3
        assert recorder.writes == [(seconds, 3)]
        conn = registry.lookup("k")[0]
        await conn.send("only you")
        assert recorder.fanouts[1][1] == 1
        assert recorder.writes[1][1] == 1


async def test_overflow_close_counts_one_overflow_one_close_and_drops_by_reason() -> None:
    async with Registry(max_queue=1) as registry:
        peer = StallingTransport()
        await registry.connect(peer, key="k")
        await registry.send("k", 1)
        await wait_until(lambda: registry.stats().queued == 0)  # frame 1 is in flight
        await registry.send("k", 2)  # queued
        assert await registry.send("k", 3) == 0  # does not fit: the slow consumer is closed
        await wait_until(lambda: peer.close_code == 1013)
        stats = registry.stats()
        assert (stats.overflows, stats.slow_consumer_closes) == (1, 1)
        assert (stats.dropped, stats.dropped_closed) == (2, 1)  # 3 by overflow, 2 at close
        assert (stats.connects, stats.disconnects, stats.connections) == (1, 1, 0)


async def test_observer_carries_over_runs_and_detaching_stops_reports() -> None:
    recorder = Recorder()
    registry = Registry()
    registry.observer = recorder
    for _ in range(2):
        async with registry:
            await registry.connect(RecordingTransport(nowait=True), key="k")
            await registry.send("k", "x")
    assert [targets for _, targets in recorder.fanouts] == [1, 1]
    assert registry.stats().connects == 1  # per run
    registry.observer = None
    async with registry:
        await registry.connect(RecordingTransport(nowait=True), key="k")
        await registry.send("k", "x")
    assert len(recorder.fanouts) == 2


async def test_a_frame_queued_before_the_observer_came_is_not_misattributed(
    clock: Clock,
) -> None:
    recorder = Recorder()
    async with Registry() as registry:
        peer = StallingTransport()
        await registry.connect(peer, key="k")
        await registry.send("k", 1)
        await wait_until(lambda: registry.stats().queued == 0)
        await registry.send("k", 2)  # queued, no stamp
        registry.observer = recorder
        clock.now = 3.0
        await registry.send("k", 3)
        clock.now = 7.0
        peer.release()
        with anyio.fail_after(TIMEOUT):
            await peer.wait_for(3)
        await wait_until(lambda: registry.stats().sent == 3)
        assert recorder.writes == [(4.0, 1)]  # only frame 3 had a stamp


class FanOutOnly(Recorder):
    times_queued_frames = False


async def test_an_observer_may_skip_queued_frames_and_keep_direct_ones() -> None:
    recorder = FanOutOnly()
    async with Registry() as registry:
        registry.observer = recorder
        await registry.connect(RecordingTransport(nowait=True), key="a")
        queued = RecordingTransport()  # no fast path: its frames go through a writer
        await registry.connect(queued, key="b")
        assert await registry.broadcast("x") == 2
        with anyio.fail_after(TIMEOUT):
            await queued.wait_for(1)
        await wait_until(lambda: registry.stats().sent == 2)
        assert len(recorder.fanouts) == 1
        assert [frames for _, frames in recorder.writes] == [1]  # the direct one only
