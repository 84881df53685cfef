"""Shutdown, restart and the writer's robustness, against a real redis-server.

Issue 11: defect 1 (sends right before shutdown reach the other node), defect 4
(shutdown bounded with Redis stopped), item 5 (an exception while building a batch
loses nothing and hangs no waiter; a crashed node's presence is purged in chunks).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import anyio
import pytest
import redis

from tests.helpers import TIMEOUT
from wsregistry import Envelope, EnvelopeKind, Registry
from wsregistry.backends import _redis_wire as wire
from wsregistry.backends.redis import RedisBackend
from wsregistry.testing import RecordingTransport

from .conftest import PrivateRedis
from .support import FakeNode, require_core_shutdown, until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "probe_interval": 0.2,
    "probe_timeout": 0.5,
    "reconnect_backoff": (0.02, 0.2),
    "op_timeout": 5.0,
    "socket_timeout": 5.0,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _other_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task not in before and not task.done()}


# -- defect 1: what was published right before shutdown reaches the other node ----------


async def test_sends_right_before_shutdown_reach_the_other_node(
    redis_url: str, namespace: str
) -> None:
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as b:
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="k", groups={"g"})
        a = Registry(backend=RedisBackend(redis_url, namespace=namespace))
        async with a:
            for i in range(20):
                await a.send("k", i)
                await a.broadcast(f"group-{i}", group="g")
        # ``a`` has exited right after its last call
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(40)
        expected = [item for i in range(20) for item in (i, f"group-{i}")]
        assert remote.messages() == expected
        detail = a.stats().backend.detail
        assert detail["publish_failures"] == 0
        assert detail["published"] == 40


async def test_flush_hands_everything_to_redis(redis_url: str, namespace: str) -> None:
    """``flush()`` returns once every earlier publish reached Redis (unit test of the hook)."""
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as b:
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="k")
        backend = RedisBackend(redis_url, namespace=namespace)
        node = FakeNode("flusher")
        await backend.start(node)
        try:
            for i in range(100):
                await backend.publish(Envelope(EnvelopeKind.KEY, str(i), "k", None, "flusher"))
            await backend.flush()
            assert backend.health().detail["pending"] == 0
            assert backend.health().detail["published"] == 100
        finally:
            await backend.aclose()
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(100)
        assert remote.sent == [str(i) for i in range(100)]


# -- defect 4: shutdown is bounded with Redis stopped ---------------------------------


async def test_leaving_the_registry_is_bounded_with_redis_stopped(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Public API: ``drain_timeout + close_timeout`` bound shutdown (needs the core's bound)."""
    await require_core_shutdown()
    backend = RedisBackend(private_redis.url, namespace=namespace, **FAST)
    registry = Registry(backend=backend, drain_timeout=0.1, close_timeout=0.1)
    before = set(asyncio.all_tasks())
    try:
        async with registry:
            await registry.connect(RecordingTransport(), key="k")
            private_redis.pause()
            for i in range(10):
                await registry.send("elsewhere", i)
            started = time.monotonic()
        elapsed = time.monotonic() - started
        assert elapsed < 0.2 + 0.3, f"shutdown took {elapsed:.2f}s"
        assert _other_tasks(before) == set()
        assert backend.health().detail["publish_failures"] == 10
    finally:
        private_redis.resume()


async def test_flush_and_aclose_are_bounded_by_cancellation(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Unit test of the hooks: cancelled at their deadline, they release everything."""
    backend = RedisBackend(private_redis.url, namespace=namespace, **FAST)
    node = FakeNode("stopped")
    before = set(asyncio.all_tasks())
    await backend.start(node)
    private_redis.pause()
    try:
        for i in range(10):
            await backend.publish(Envelope(EnvelopeKind.KEY, str(i), "k", None, "stopped"))
        started = time.monotonic()
        with anyio.move_on_after(0.2):
            await backend.flush()
        assert time.monotonic() - started < 0.2 + 0.1
        started = time.monotonic()
        with anyio.move_on_after(0.2):
            await backend.aclose()
        assert time.monotonic() - started < 0.2 + 0.4  # + the shielded cleanup (<= 0.3 s)
        assert _other_tasks(before) == set()
        assert backend.health().detail["publish_failures"] == 10  # counted, not silently lost
        assert not backend.connected
    finally:
        private_redis.resume()
    # the same backend starts again, from a clean state
    await backend.start(node)
    try:
        assert backend.connected
        assert backend.health().detail["publish_failures"] == 0
    finally:
        await backend.aclose()
    assert _other_tasks(before) == set()


# -- restart ---------------------------------------------------------------------------


async def test_a_backend_restarts_after_aclose(redis_url: str, namespace: str) -> None:
    """start -> aclose -> start -> aclose (a registry per run, one backend), clean each run."""
    backend = RedisBackend(redis_url, namespace=namespace, heartbeat_interval=0.2)
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as other:
        for run in range(3):
            async with Registry(backend=backend) as registry:
                transport = RecordingTransport()
                await registry.connect(transport, key=f"run-{run}", groups={"g"})
                assert await other.online_keys() == {f"run-{run}"}
                await other.send(f"run-{run}", "hello")
                await other.broadcast("group", group="g")
                with anyio.fail_after(TIMEOUT):
                    await transport.wait_for(2)
                assert transport.sent == ["hello", "group"]
                detail = backend.health().detail
                assert detail["processed"] == 2  # counters start over with each run
                assert detail["subscriptions"] == 4
            assert not backend.connected
            assert await other.online_keys() == frozenset()


async def test_a_registry_entered_twice_restarts_its_backend(
    redis_url: str, namespace: str
) -> None:
    """``async with registry`` twice in a row (needs the core's re-entry)."""
    await require_core_shutdown()
    registry = Registry(backend=RedisBackend(redis_url, namespace=namespace))
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as other:
        for run in range(2):
            async with registry:
                transport = RecordingTransport()
                await registry.connect(transport, key="again")
                await other.send("again", run)
                with anyio.fail_after(TIMEOUT):
                    await transport.wait_for(1)
            assert not await other.is_online("again")


# -- item 5: the writer loses nothing and hangs no waiter ------------------------------


async def test_an_error_while_building_a_batch_loses_nothing(
    redis_url: str, namespace: str
) -> None:
    async with Registry(backend=RedisBackend(redis_url, namespace=namespace)) as b:
        remote = RecordingTransport(nowait=True)
        await b.connect(remote, key="k")
        backend = RedisBackend(redis_url, namespace=namespace, op_timeout=5.0)
        node = FakeNode("broken")
        await backend.start(node)
        try:
            await backend.publish(Envelope(EnvelopeKind.KEY, "before", "k", None, "broken"))
            node.add("c1", "mine")
            node.fail_counts = 1  # building the next batch raises once
            started = time.monotonic()
            await backend.connection_added("c1", "mine", first_of_key=True)
            assert time.monotonic() - started < 2.0  # no waiter hangs until op_timeout
            await backend.publish(Envelope(EnvelopeKind.KEY, "after", "k", None, "broken"))
            with anyio.fail_after(TIMEOUT):
                await remote.wait_for(2)
            assert remote.sent == ["before", "after"]
            assert backend.health().errors >= 1  # the failure is counted
            await until(lambda: _equals(b.online_count("mine"), 1))  # presence got through
        finally:
            await backend.aclose()


CRASHER = textwrap.dedent(
    """
    import anyio, sys
    from wsregistry import Registry
    from wsregistry.backends.redis import RedisBackend

    class Sock:
        async def send(self, data): pass
        async def close(self, code, reason): pass

    async def main():
        backend = RedisBackend(sys.argv[1], namespace=sys.argv[2], heartbeat_interval=0.2)
        async with Registry(backend=backend) as r:
            async with anyio.create_task_group() as tg:
                for i in range(int(sys.argv[3])):
                    tg.start_soon(lambda i=i: r.connect(Sock(), key=f"user-{i}"))
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


async def test_a_crashed_nodes_presence_is_purged_in_chunks(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """One reaper call touches a bounded number of entries, so Redis is never blocked long."""
    count = 3000
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any await
        [sys.executable, "-c", CRASHER, private_redis.url, namespace, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    client = private_redis.client()
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        nodes: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
            f"{namespace}:nodes", 0, -1, withscores=True
        )
        ((raw, _),) = nodes
        dead = raw.decode()
        await until(lambda: _true(_lease(client, namespace, dead) < _redis_ms(client)))
        layout = wire.Layout(namespace)
        entries = client.hlen(layout.node_keys(dead)) + client.scard(layout.node_conns(dead))
        assert entries == 2 * count
        args = wire.reap_args(layout, budget=wire.REAP_BUDGET)
        client.eval(wire.REAP, *args)  # one reaper step
        left = client.hlen(layout.node_keys(dead)) + client.scard(layout.node_conns(dead))
        assert 2 * count - left <= wire.REAP_BUDGET
        # black box: a live node purges everything, step by step
        backend = RedisBackend(private_redis.url, namespace=namespace, heartbeat_interval=0.1)
        async with Registry(backend=backend):
            await until(lambda: _true(_purged(client, layout, dead)), within=TIMEOUT * 2)
    finally:
        proc.kill()
        proc.wait()
        client.close()


def _purged(client: redis.Redis, layout: wire.Layout, dead: str) -> bool:
    return (
        client.zscore(layout.nodes, dead) is None
        and not client.exists(layout.node_keys(dead), layout.node_conns(dead))
        and not client.keys(layout.prefix + "p:*")
        and not client.hlen(layout.conns)
    )


def _lease(client: redis.Redis, namespace: str, node: str) -> float:
    score = client.zscore(f"{namespace}:nodes", node)
    return float("inf") if score is None else float(score)


def _redis_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds * 1000 + micros // 1000)


async def _true(value: bool) -> bool:
    return value


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)
