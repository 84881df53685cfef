"""Semantic 7: shutdown drains, closes with 1001 and leaves no task behind."""

from __future__ import annotations

import anyio
import pytest

from wsregistry import CloseCode, ConnectionClosed, Registry, RegistryAlreadyRunning, RegistryClosed
from wsregistry.testing import RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until

pytestmark = pytest.mark.anyio


def _task_count() -> int:
    return len(anyio.get_running_tasks())


async def test_exit_drains_queues_then_closes_every_connection_with_1001() -> None:
    transports = [RecordingTransport() for _ in range(3)]  # no fast path: all queued
    async with Registry() as registry:
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i, groups=["g"])
        for n in range(100):
            await registry.broadcast(str(n), group="g")
    for transport in transports:
        assert transport.sent == [str(n) for n in range(100)]
        assert transport.close_code == CloseCode.GOING_AWAY
    stats = registry.stats()
    assert stats.sent == 300
    assert stats.dropped == 0
    assert stats.send_errors == 0  # no frame was written after the close
    assert (stats.connections, stats.queued, stats.queued_bytes) == (0, 0, 0)
    assert not registry.running


async def test_drain_is_bounded_by_drain_timeout_and_stalled_closes_are_aborted() -> None:
    stalled = StallingTransport()
    healthy = RecordingTransport()
    with anyio.fail_after(TIMEOUT):
        async with Registry(drain_timeout=0.05, close_timeout=0.05) as registry:
            await registry.connect(stalled, key="s")
            await registry.connect(healthy, key="h")
            for n in range(10):
                await registry.broadcast(n)
    assert stalled.aborted
    assert stalled.close_code == CloseCode.GOING_AWAY
    assert healthy.close_code == CloseCode.GOING_AWAY
    assert healthy.messages() == list(range(10))
    assert registry.stats().dropped == 9  # one frame was in flight when the writer died


async def test_no_task_left_behind_and_writers_exit_when_idle() -> None:
    baseline = _task_count()
    async with Registry(max_queue_bytes=20, drain_timeout=0.05, close_timeout=0.2) as registry:
        running = _task_count()  # the registry's own job runner
        transports = [RecordingTransport() for _ in range(20)]
        conns = [await registry.connect(t, key=i) for i, t in enumerate(transports)]
        for n in range(50):
            await registry.broadcast(n)
        assert _task_count() > running  # writers are running
        with anyio.fail_after(TIMEOUT):
            for transport in transports:
                await transport.wait_for(50)
        await wait_until(lambda: _task_count() == running)  # writers gone once idle
        assert not any(not conn.idle for conn in conns)
        # leave work in flight: a stalled writer, and a slow-consumer close that stalls
        stalled = StallingTransport()
        conn = await registry.connect(stalled, key="s")
        for frame in ("in flight", "queued", "x" * 30):  # the last does not fit
            await conn.send(frame)
            await anyio.lowlevel.checkpoint()
        assert conn.close_code == 1013
        assert _task_count() > running  # the writer or the closer is still there
    assert _task_count() == baseline
    assert stalled.aborted


async def test_body_exception_propagates_unchanged_and_shutdown_still_runs() -> None:
    transport = RecordingTransport()
    registry = Registry()

    async def app() -> None:
        async with registry:
            await registry.connect(transport, key="k")
            for n in range(20):
                await registry.send("k", n)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        await app()
    assert type(info.value) is ValueError  # not wrapped in an ExceptionGroup
    assert transport.messages() == list(range(20))  # still drained
    assert transport.close_code == CloseCode.GOING_AWAY
    assert not registry.running
    with pytest.raises(RegistryClosed):
        await registry.send("k", "late")


async def test_cancelled_body_still_closes_connections_within_bounds() -> None:
    stalled = StallingTransport()
    healthy = RecordingTransport()
    registry = Registry(drain_timeout=0.05, close_timeout=0.05)
    with anyio.fail_after(TIMEOUT), anyio.CancelScope() as scope:
        async with registry:
            await registry.connect(stalled, key="s")
            await registry.connect(healthy, key="h")
            await registry.broadcast("bye")
            scope.cancel()
            await anyio.sleep(TIMEOUT)
    assert scope.cancelled_caught
    assert healthy.sent == ["bye"]
    assert healthy.close_code == CloseCode.GOING_AWAY
    assert stalled.close_code == CloseCode.GOING_AWAY
    assert stalled.aborted
    assert registry.stats().connections == 0


async def test_calls_during_shutdown_raise_registry_closed() -> None:
    stalled = StallingTransport()
    errors: list[BaseException] = []
    registry = Registry(drain_timeout=0.2, close_timeout=0.01)
    async with anyio.create_task_group() as tg:

        async def late_caller() -> None:
            await wait_until(lambda: not registry.running)  # shutdown began (draining)
            for call in (
                lambda: registry.connect(RecordingTransport(), key="late"),
                lambda: registry.send("s", "late"),
                lambda: registry.broadcast("late"),
            ):
                try:
                    await call()
                except RegistryClosed as exc:
                    errors.append(exc)

        async with registry:
            await registry.connect(stalled, key="s")
            await registry.send("s", "stuck")
            await registry.send("s", "queued")  # keeps the drain waiting
            tg.start_soon(late_caller)
    assert len(errors) == 3
    assert registry.stats().connections == 0


async def test_a_running_registry_cannot_be_entered_again() -> None:
    registry = Registry()
    async with registry:
        with pytest.raises(RegistryAlreadyRunning):
            await registry.__aenter__()
        assert registry.running
    assert not registry.running


async def test_a_registry_can_be_entered_again_and_starts_clean() -> None:
    registry = Registry()
    async with registry:
        old = await registry.connect(RecordingTransport(), key="a", groups={"g"})
        await registry.send("a", "first run")
    assert registry.stats().sent == 1  # the last run's counters stay readable
    for run in range(20):
        async with registry:
            assert registry.running
            assert registry.stats().connections == 0
            assert registry.stats().sent == 0
            assert registry.lookup("a") == ()
            assert registry.members("g") == ()
            transport = RecordingTransport()
            await registry.connect(transport, key="a")
            assert await registry.send("a", f"run {run}") == 1
            with pytest.raises(ConnectionClosed):  # a connection of an earlier run
                await old.send("stale")
            await registry.disconnect(old)  # idempotent, no error
        assert transport.sent == [f"run {run}"]
        assert transport.close_code == 1001
    with pytest.raises(RegistryClosed):
        await registry.send("a", "after exit")
