"""Sending from a worker thread (or another event loop) into the registry's loop."""

from __future__ import annotations

import asyncio
import threading

import anyio

from wsregistry import Registry
from wsregistry.testing import RecordingTransport


# --8<-- [start:thread]
def report_ready(registry: Registry, user_id: int) -> int:
    """Runs in a worker thread: e.g. at the end of a long, blocking job."""
    future = registry.send_threadsafe(user_id, {"type": "report-ready"})
    return future.result(timeout=5)  # optional: wait for the registry's answer
    # --8<-- [end:thread]


# --8<-- [start:loop]
def run_other_loop(registry: Registry) -> None:
    """A thread with its own asyncio loop (e.g. a library that runs one) awaits the call."""

    async def announce() -> int:
        # awaited on this thread's own loop; it runs on the registry's loop
        return await registry.broadcast({"type": "maintenance", "in_minutes": 5})

    asyncio.run(announce())
    # --8<-- [end:loop]


async def main() -> None:
    async with Registry() as registry:
        tab = RecordingTransport()
        await registry.connect(tab, key=7)
        assert await anyio.to_thread.run_sync(report_ready, registry, 7) == 1

        thread = threading.Thread(target=run_other_loop, args=(registry,))
        thread.start()
        with anyio.fail_after(5):
            await tab.wait_for(2)
        await anyio.to_thread.run_sync(thread.join)
        assert tab.messages() == [
            {"type": "report-ready"},
            {"type": "maintenance", "in_minutes": 5},
        ]


if __name__ == "__main__":
    anyio.run(main)
