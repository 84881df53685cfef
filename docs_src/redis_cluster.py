"""Two registries on one Redis behave like two server processes."""

from __future__ import annotations

import anyio

from wsregistry import Registry
from wsregistry.backends.redis import RedisBackend
from wsregistry.testing import RecordingTransport

REDIS_URL = "redis://127.0.0.1:6379/0"


# --8<-- [start:backend]
def make_registry(namespace: str = "myapp") -> Registry:
    """One per process (per uvicorn worker); every process uses the same URL and namespace."""
    backend = RedisBackend(
        REDIS_URL,
        namespace=namespace,  # channels and keys are prefixed: apps can share a Redis
        heartbeat_interval=1.0,  # presence lease renewal
        presence_timeout=3.0,  # a crashed process's connections vanish within this
    )
    return Registry(backend=backend)
    # --8<-- [end:backend]


async def main(namespace: str = "myapp") -> None:
    # --8<-- [start:cluster]
    async with make_registry(namespace) as worker_a, make_registry(namespace) as worker_b:
        tab = RecordingTransport()
        await worker_a.connect(tab, key="alice", groups={"room:1"})

        assert await worker_b.is_online("alice")  # one Redis round trip
        assert await worker_b.send("alice", {"type": "dm"}) == 0  # 0 local; worker_a delivers
        await worker_b.broadcast({"type": "room"}, group="room:1")
        with anyio.fail_after(5):
            await tab.wait_for(2)
        assert tab.messages() == [{"type": "dm"}, {"type": "room"}]

        health = worker_b.stats().backend
        assert health.name == "redis"
        assert health.connected
        # --8<-- [end:cluster]


if __name__ == "__main__":
    anyio.run(main)
