"""Semantic 10: a run belongs to the loop that entered it; calls from other loops are marshalled."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import pytest
import trio

from wsregistry import Key, MemoryBackend, NotConnected, Registry, RegistryNotStarted
from wsregistry.testing import RecordingTransport

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def _in_a_thread_loop(kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on a new event loop of ``kind`` (asyncio or trio), in this thread."""
    if kind == "asyncio":
        return asyncio.run(main())  # type: ignore[arg-type]
    return trio.run(main)


@pytest.mark.parametrize("foreign", ["asyncio", "trio"])
async def test_calls_awaited_on_another_loop_run_on_the_registry_loop(foreign: str) -> None:
    async with Registry() as registry:
        transport = RecordingTransport()
        conn = await registry.connect(transport, key="k", groups={"g"})

        async def elsewhere() -> list[Any]:
            await conn.send("conn")
            return [
                await registry.send("k", "send"),
                await registry.broadcast("all"),
                await registry.broadcast("group", group="g"),
                await registry.send_to_connection(conn.id, "one"),
                await registry.is_online("k"),
                await registry.online_count("k"),
                await registry.online_keys(),
            ]

        with anyio.fail_after(TIMEOUT):
            results = await anyio.to_thread.run_sync(_in_a_thread_loop, foreign, elsewhere)
            await transport.wait_for(5)
        assert results == [1, 1, 1, 1, True, 1, frozenset({"k"})]
        assert transport.sent == ["conn", "send", "all", "group", "one"]
        # the other loop is gone; the registry serves on
        assert await registry.send("k", "after") == 1


async def test_errors_of_a_marshalled_call_reach_the_caller() -> None:
    async with Registry() as registry:

        async def elsewhere() -> str:
            try:
                await registry.send("ghost", "x", require=True)
            except NotConnected as exc:
                return f"NotConnected {exc.key}"
            return "sent"

        with anyio.fail_after(TIMEOUT):
            result = await anyio.to_thread.run_sync(_in_a_thread_loop, "asyncio", elsewhere)
        assert result == "NotConnected ghost"


async def test_a_call_from_another_loop_never_binds_a_stopped_registry() -> None:
    registry = Registry()

    async def too_early() -> str:
        try:
            await registry.send("k", "x")
        except RegistryNotStarted:
            return "not started"
        return "sent"

    with anyio.fail_after(TIMEOUT):
        assert await anyio.to_thread.run_sync(_in_a_thread_loop, "asyncio", too_early) == (
            "not started"
        )
    async with registry:  # the registry starts here, on this loop, as if untouched
        transport = RecordingTransport()
        await registry.connect(transport, key="k")
        assert await registry.send("k", "x") == 1


async def test_a_run_on_a_loop_that_ended_leaves_the_registry_ready_for_the_next() -> None:
    # a registry first entered by a worker thread's asyncio.run (a bulk import, say)
    registry = Registry()

    async def short_lived() -> int:
        async with registry:
            await registry.connect(RecordingTransport(), key="k")
            return await registry.send("k", "x")

    with anyio.fail_after(TIMEOUT):
        assert await anyio.to_thread.run_sync(_in_a_thread_loop, "asyncio", short_lived) == 1
    async with registry:  # the serving loop starts it again
        transport = RecordingTransport()
        await registry.connect(transport, key="k")
        assert await registry.send("k", "y") == 1
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(1)
        assert transport.sent == ["y"]


class _SlowPresence(MemoryBackend):
    """Presence answers only when the test opens the gate (a slow broker round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.asked = threading.Event()

    async def presence_count(self, key: Key) -> int:
        self.asked.set()
        while not self.gate.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
            await anyio.sleep(0.001)
        return await super().presence_count(key)


async def test_a_slow_threadsafe_call_does_not_hold_up_another_threads_calls() -> None:
    backend = _SlowPresence()
    async with Registry(backend=backend) as registry:
        transport = RecordingTransport()
        await registry.connect(transport, key="k")

        def slow_thread() -> str:
            future = registry.send_threadsafe("ghost", "x", require=True)
            try:
                future.result(TIMEOUT * 2)
            except NotConnected:
                return "NotConnected"
            return "sent"

        def fast_thread() -> list[int]:
            assert backend.asked.wait(TIMEOUT)  # the slow call is under way
            results = [registry.send_threadsafe("k", i).result(TIMEOUT) for i in range(3)]
            backend.gate.set()
            return results

        outcome: dict[str, Any] = {}

        async def run(name: str, func: Callable[[], Any]) -> None:
            outcome[name] = await anyio.to_thread.run_sync(func)

        with anyio.fail_after(TIMEOUT * 3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "slow", slow_thread)
                tg.start_soon(run, "fast", fast_thread)
        # the fast thread finished its sends while the slow one waited on the gate
        assert outcome == {"slow": "NotConnected", "fast": [1, 1, 1]}
        assert transport.sent == ["0", "1", "2"]
