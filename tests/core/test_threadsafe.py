"""send_threadsafe / broadcast_threadsafe from worker threads and foreign event loops."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from wsregistry import Registry, RegistryClosed, RegistryNotStarted, SerializationError
from wsregistry.testing import RecordingTransport

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("nowait", [False, True])
async def test_from_a_worker_thread_in_order(nowait: bool) -> None:
    async with Registry() as registry:
        transport = RecordingTransport(nowait=nowait)
        await registry.connect(transport, key="k", groups=["g"])

        def worker() -> list[int]:
            futures = []
            for i in range(500):
                if i % 2:
                    futures.append(registry.send_threadsafe("k", {"i": i}))
                else:
                    futures.append(registry.broadcast_threadsafe({"i": i}, group="g"))
            return [future.result(TIMEOUT) for future in futures]

        with anyio.fail_after(TIMEOUT):
            results = await anyio.to_thread.run_sync(worker)
            await transport.wait_for(500)
        assert results == [1] * 500
        assert transport.messages() == [{"i": i} for i in range(500)]


async def test_from_threads_running_their_own_asyncio_loop() -> None:
    async with Registry() as registry:
        transports = [RecordingTransport() for _ in range(3)]
        for transport in transports:
            await registry.connect(transport, key="k")

        async def foreign(tag: int) -> list[int]:
            results = []
            for i in range(100):
                future = registry.send_threadsafe("k", f"{tag}:{i}")
                results.append(await asyncio.wrap_future(future))
            results.append(await asyncio.wrap_future(registry.broadcast_threadsafe(f"{tag}:end")))
            return results

        def run_loop(tag: int) -> list[int]:
            return asyncio.run(foreign(tag))

        results: dict[int, list[int]] = {}

        async def in_thread(tag: int) -> None:
            results[tag] = await anyio.to_thread.run_sync(run_loop, tag)

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for tag in range(3):
                    tg.start_soon(in_thread, tag)
            for transport in transports:
                await transport.wait_for(303)
        assert all(result == [3] * 101 for result in results.values())
        for transport in transports:
            for tag in range(3):  # each thread's frames arrive in that thread's order
                mine = [frame for frame in transport.sent if str(frame).startswith(f"{tag}:")]
                assert mine == [f"{tag}:{i}" for i in range(100)] + [f"{tag}:end"]


async def test_errors_raise_in_the_calling_thread_before_anything_is_sent() -> None:
    registry = Registry()
    with pytest.raises(RegistryNotStarted):
        registry.send_threadsafe("k", "x")
    with pytest.raises(RegistryNotStarted):
        registry.broadcast_threadsafe("x")
    async with registry:
        transport = RecordingTransport(nowait=True)
        await registry.connect(transport, key="k")

        def worker() -> None:
            with pytest.raises(SerializationError):
                registry.send_threadsafe("k", {"bad": object()})
            with pytest.raises(TypeError):
                registry.broadcast_threadsafe({"bad": {1, 2}})
            with pytest.raises(TypeError):
                registry.send_threadsafe(1.5, "x")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                registry.broadcast_threadsafe("x", group=5)  # type: ignore[arg-type]

        await anyio.to_thread.run_sync(worker)
        await anyio.lowlevel.checkpoint()
        assert transport.sent == []
        assert registry.stats().sent == 0
        future = registry.send_threadsafe("nobody", "x", require=True)
        with anyio.fail_after(TIMEOUT):
            while not future.done():  # noqa: ASYNC110 - a concurrent future has no event
                await anyio.sleep(0.001)
        assert isinstance(future.exception(), LookupError)
    with pytest.raises(RegistryClosed):
        registry.send_threadsafe("k", "x")
    with pytest.raises(RegistryClosed):
        registry.broadcast_threadsafe("x")


@pytest.mark.parametrize("yields_before_exit", [0, 1, 2, 3])
async def test_futures_pending_at_close_fail_with_registry_closed(yields_before_exit: int) -> None:
    futures: list[concurrent.futures.Future[int]] = []
    async with Registry() as registry:
        await registry.connect(RecordingTransport(), key="k")
        for i in range(50):
            futures.append(registry.send_threadsafe("k", i))
        for _ in range(yields_before_exit):
            await anyio.lowlevel.checkpoint()
    for future in futures:  # every future is resolved: none is left pending
        assert future.done()
        exc = future.exception()
        assert exc is None or isinstance(exc, RegistryClosed)


async def test_thread_hammering_through_close_never_hangs() -> None:
    registry = Registry()
    stop = threading.Event()
    futures: list[concurrent.futures.Future[int]] = []
    refused: list[BaseException] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                futures.append(registry.broadcast_threadsafe("x"))
            except RegistryClosed as exc:
                refused.append(exc)
                return

    thread = threading.Thread(target=hammer)
    async with registry:
        await registry.connect(RecordingTransport(nowait=True), key="k")
        thread.start()
        with anyio.fail_after(TIMEOUT):
            while len(futures) < 200:  # noqa: ASYNC110 - counting another thread's work
                await anyio.sleep(0.001)
    with anyio.fail_after(TIMEOUT):
        while not refused:  # noqa: ASYNC110 - another thread's progress
            await anyio.sleep(0.001)
    stop.set()
    await anyio.to_thread.run_sync(thread.join)
    for future in futures:
        exc = future.exception(timeout=TIMEOUT)  # raises TimeoutError if left pending
        assert exc is None or isinstance(exc, RegistryClosed)
