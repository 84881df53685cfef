"""Two registries on one NATS (JetStream on) behave like two server processes."""

from __future__ import annotations

import anyio

from wsregistry import Registry
from wsregistry.backends.nats import NatsBackend
from wsregistry.testing import RecordingTransport

NATS_URLS = ["nats://127.0.0.1:4222"]  # list every server of a NATS cluster


# --8<-- [start:backend]
def make_registry(namespace: str = "chat") -> Registry:
    """One per process; every process uses the same servers and namespace."""
    backend = NatsBackend(
        NATS_URLS,
        namespace=namespace,  # first subject token and stream names: [A-Za-z0-9_-]
        heartbeat_interval=1.0,  # presence lease renewal
        presence_timeout=3.0,  # a crashed process's connections vanish within this
        replicas=1,  # 3 on a 3-server cluster: presence survives losing one server
    )
    return Registry(backend=backend)
    # --8<-- [end:backend]


async def main(namespace: str = "chat") -> None:
    # --8<-- [start:cluster]
    async with make_registry(namespace) as worker_a, make_registry(namespace) as worker_b:
        tab = RecordingTransport()
        await worker_a.connect(tab, key="alice", groups={"room.*"})  # any name is safe

        assert await worker_b.is_online("alice")  # one JetStream round trip
        assert await worker_b.send("alice", {"type": "dm"}) == 0  # 0 local; worker_a delivers
        await worker_b.broadcast({"type": "room"}, group="room.*")
        with anyio.fail_after(5):
            await tab.wait_for(2)
        assert tab.messages() == [{"type": "dm"}, {"type": "room"}]

        health = worker_b.stats().backend
        assert health.name == "nats"
        assert health.connected
    # --8<-- [end:cluster]
