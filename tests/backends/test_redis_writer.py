"""The Redis writer: adaptive batching, and presence rewrites that must not be forgotten."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis

from tests.helpers import TIMEOUT
from wsregistry import Registry
from wsregistry.backends import _redis_wire as wire
from wsregistry.backends.redis import RedisBackend
from wsregistry.testing import RecordingTransport

from .support import FakeNode, until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def detail(registry: Registry) -> dict[str, Any]:
    return registry.stats().backend.detail


async def test_a_lone_message_never_lingers(redis_url: str, namespace: str) -> None:
    async with (
        Registry(backend=RedisBackend(redis_url, namespace=namespace)) as a,
        Registry(backend=RedisBackend(redis_url, namespace=namespace)) as b,
    ):
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="k")
        batches = detail(a)["batches"]
        for i in range(20):
            await a.send("k", i)
            with anyio.fail_after(TIMEOUT):
                await remote.wait_for(i + 1)  # the writer is idle again before the next one
        assert detail(a)["lingered"] == 0
        assert detail(a)["batches"] - batches >= 19  # one each (the last may still be in flight)


@pytest.mark.parametrize("linger", [0.0005, 0.0])
async def test_a_burst_is_batched(redis_url: str, namespace: str, linger: float) -> None:
    async with (
        Registry(backend=RedisBackend(redis_url, namespace=namespace, publish_linger=linger)) as a,
        Registry(backend=RedisBackend(redis_url, namespace=namespace)) as b,
    ):
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="k")
        before = detail(a)["batches"]
        for i in range(3000):
            await a.send("k", i)
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(3000)
        assert remote.messages() == list(range(3000))
        batches = detail(a)["batches"] - before
        assert batches < 3000 / 4  # pipelined, whatever the linger
        if linger:
            assert detail(a)["lingered"] >= 1
        else:
            assert detail(a)["lingered"] == 0


async def test_a_failed_presence_rewrite_is_retried(redis_url: str, namespace: str) -> None:
    """Item 5: the rewrite is 'done' only once it succeeded, so a failed one runs again."""
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as reader:
        backend = RedisBackend(
            redis_url, namespace=namespace, heartbeat_interval=0.1, reconnect_backoff=(0.02, 0.1)
        )
        node = FakeNode("rewritten")
        node.add("c1", "mine")
        await backend.start(node)
        client = redis.Redis.from_url(redis_url)
        try:
            assert await reader.online_count("mine") == 1
            # the node is taken for dead and reaped (a long stall), and its next
            # presence rewrite fails once while being built
            layout, me = wire.Layout(namespace), wire.name_of("rewritten")
            node.fail_counts = 1
            client.zadd(layout.nodes, {me: 0})
            entries: dict[bytes, bytes] = client.hgetall(layout.node_keys(me))  # type: ignore[assignment]
            for presence in entries.values():
                client.hdel(presence, me)
            client.hdel(layout.conns, "c1")
            client.delete(layout.node_keys(me), layout.node_conns(me))
            await until(lambda: _true(node.fail_counts == 0))  # the rewrite failed once
            await until(lambda: _equals(reader.online_count("mine"), 1))  # and ran again
            assert backend.health().detail["lease_lost"] >= 1
            assert backend.health().errors >= 1
        finally:
            client.close()
            await backend.aclose()


async def _true(value: bool) -> bool:
    return value


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)
