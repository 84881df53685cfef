"""The registry's lifecycle: new, running, closed."""

from __future__ import annotations

import anyio

from wsregistry import CloseCode, Connection, Registry
from wsregistry.testing import RecordingTransport


async def main() -> tuple[Registry, Connection]:
    # --8<-- [start:lifecycle]
    registry = Registry(max_queue=256, drain_timeout=2.0)  # one per process; options: below
    assert not registry.running  # new: calls raise RegistryNotStarted

    async with registry:  # starts the backend; the registry is running
        conn = await registry.connect(RecordingTransport(), key="alice")
        await registry.send("alice", {"type": "hello"})

    # leaving the block drained the queues, closed every connection with 1001
    # (going away) and stopped the backend: calls now raise RegistryClosed
    assert conn.close_code == CloseCode.GOING_AWAY
    assert registry.lookup("alice") == ()  # the non-blocking views work in every state
    # --8<-- [end:lifecycle]
    return registry, conn


if __name__ == "__main__":
    anyio.run(main)
