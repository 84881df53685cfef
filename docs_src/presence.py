"""Presence across processes, shown with two registries on one in-memory hub."""

from __future__ import annotations

from typing import Any

import anyio

from wsregistry import Key, MemoryBackend, MemoryHub, NotConnected, Registry
from wsregistry.testing import RecordingTransport


# --8<-- [start:notify]
async def notify(registry: Registry, key: Key, message: Any) -> bool:
    """Push ``message`` to every connection of ``key``; ``False`` if it is offline everywhere."""
    try:
        await registry.send(key, message, require=True)
    except NotConnected:
        return False  # e.g. fall back to an e-mail
    return True
    # --8<-- [end:notify]


async def main() -> None:
    # --8<-- [start:presence]
    hub = MemoryHub()  # stands in for a broker: both registries see each other
    async with (
        Registry(backend=MemoryBackend(hub=hub)) as worker_a,
        Registry(backend=MemoryBackend(hub=hub)) as worker_b,
    ):
        tab = RecordingTransport()
        await worker_a.connect(tab, key="alice")
        await worker_a.connect(RecordingTransport(), key="alice")

        assert worker_b.lookup("alice") == ()  # lookup() is local...
        assert await worker_b.is_online("alice")  # ...presence is cluster-wide
        assert await worker_b.online_count("alice") == 2
        assert await worker_b.online_keys() == {"alice"}

        assert await worker_b.send("alice", "from b") == 0  # 0 local, delivered on worker_a
        assert not await notify(worker_b, "carol", "hello?")  # offline everywhere
        # --8<-- [end:presence]
        with anyio.fail_after(1):
            assert await tab.wait_for(1) == ["from b"]


if __name__ == "__main__":
    anyio.run(main)
