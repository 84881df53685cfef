"""Races of membership against a real redis-server, made to happen on purpose with a slow link.

Issue 11, defects 2, 3 and 6: a second connect/join of a key/group returns only once
it is reachable; a cancelled first connect leaves no group unsubscribed; presence
never reports a user offline while a tab is live somewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.helpers import TIMEOUT
from wsregistry import Connection, Registry
from wsregistry.backends.redis import RedisBackend
from wsregistry.testing import RecordingTransport

from .conftest import PrivateRedis
from .proxy import SlowLinkProxy
from .support import until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "probe_interval": 5.0,  # the slow link is slow, not deaf: keep probes out of the way
    "probe_timeout": 5.0,
    "reconnect_backoff": (0.02, 0.2),
    "op_timeout": 5.0,
    "socket_timeout": 5.0,
}
SLOW = 0.3  # seconds each way on the slowed links


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def cluster(*urls: str, namespace: str) -> AsyncIterator[list[Registry]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Registry(backend=RedisBackend(url, namespace=namespace, **FAST))
            )
            for url in urls
        ]


async def _fence(sender: Registry, key: str, transport: RecordingTransport, tag: str) -> None:
    """Per-publisher order: once ``tag`` arrived, everything sent before it has too."""
    await sender.send(key, tag)
    with anyio.fail_after(TIMEOUT + 4 * SLOW):
        while tag not in transport.sent:
            await transport.wait_for(len(transport.sent) + 1)


async def test_second_connect_of_a_key_returns_only_once_reachable(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Defect 2 (keys): with the pub/sub link slow, the second connect must wait too."""
    async with (
        SlowLinkProxy(private_redis.port, SLOW) as proxy,
        cluster(private_redis.url, proxy.url, namespace=namespace) as (a, b),
    ):
        first, second = RecordingTransport(), RecordingTransport()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_connect, b, first, "k", ())
            await until(lambda: _true(len(b.lookup("k")) == 1))  # first is subscribing
            await b.connect(second, key="k")
            await a.send("k", "right after the second connect")
        await _fence(a, "k", second, "fence")
        assert second.sent.count("right after the second connect") == 1
        assert first.sent.count("right after the second connect") == 1


async def test_second_join_of_a_group_returns_only_once_reachable(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Defect 2 (groups): the second join must wait for the group's SUBSCRIBE too."""
    async with (
        SlowLinkProxy(private_redis.port, SLOW) as proxy,
        cluster(private_redis.url, proxy.url, namespace=namespace) as (a, b),
    ):
        one, two = RecordingTransport(), RecordingTransport()
        conn_one = await b.connect(one, key="one")
        conn_two = await b.connect(two, key="two")
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.join, conn_one, "room")
            await until(lambda: _true("room" in conn_one.groups))
            await b.join(conn_two, "room")
            await a.broadcast("right after the second join", group="room")
        await _fence(a, "two", two, "fence")
        assert two.sent.count("right after the second join") == 1
        await _fence(a, "one", one, "fence-one")
        assert one.sent.count("right after the second join") == 1


async def test_cancelled_first_connect_leaves_the_group_subscribed(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Defect 3: the first member's connect is cancelled while another member joins."""
    async with (
        SlowLinkProxy(private_redis.port, SLOW) as proxy,
        cluster(private_redis.url, proxy.url, namespace=namespace) as (a, b),
    ):
        stays = RecordingTransport()
        member = await b.connect(stays, key="stays")
        cancelled = RecordingTransport()
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancellable_connect, scope, b, cancelled, "cancelled", {"room"})
            await until(lambda: _true(len(b.members("room")) == 1))  # first member, subscribing
            tg.start_soon(b.join, member, "room")
            await until(lambda: _true(len(b.members("room")) == 2))
            scope.cancel()  # the first member's connect is cancelled while the join runs
        assert b.lookup("cancelled") == ()
        assert [conn.key for conn in b.members("room")] == ["stays"]
        for i in range(3):
            await a.broadcast(f"group-{i}", group="room")
        await _fence(a, "stays", stays, "fence")
        assert [m for m in stays.sent if str(m).startswith("group-")] == [
            "group-0",
            "group-1",
            "group-2",
        ]
        # no half state: the cancelled connection is gone from presence everywhere
        await until(lambda: _equals(a.online_count("cancelled"), 0))
        assert await b.online_keys() == {"stays"}
        assert cancelled.sent == []


async def test_presence_never_flickers_while_a_tab_hops_between_nodes(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """Defect 6: the last tab closes on one node while a new one opens on another.

    Node ``b`` reaches Redis over a slow link (every command takes 2 x SLOW): its
    lease must still never lapse, so the user is never reported offline.
    """
    async with (
        SlowLinkProxy(private_redis.port, SLOW / 2, subscribers_only=False) as proxy,
        cluster(private_redis.url, proxy.url, private_redis.url, namespace=namespace) as nodes,
    ):
        a, b, watcher = nodes
        offline_seen: list[str] = []
        hopping = True

        async def watch(registry: Registry, name: str) -> None:
            while hopping:
                if await registry.online_count("u") == 0:
                    offline_seen.append(name)
                await anyio.sleep(0.005)

        current: tuple[Registry, Connection] = (a, await a.connect(RecordingTransport(), key="u"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, watcher, "watcher")
            tg.start_soon(watch, a, "a")
            started = anyio.current_time()
            hops = 0
            while anyio.current_time() - started < 8 * FAST["heartbeat_interval"] * 3 or hops < 6:
                node, conn = current
                other = b if node is a else a
                new = await other.connect(RecordingTransport(), key="u")  # the new tab is live
                await node.disconnect(conn)  # then the old one closes
                current = (other, new)
                hops += 1
                await anyio.sleep(0.05)
            hopping = False
        assert offline_seen == []
        assert b.stats().backend.detail["lease_lost"] == 0


async def _connect(
    registry: Registry, transport: RecordingTransport, key: str, groups: Any
) -> None:
    await registry.connect(transport, key=key, groups=groups)


async def _true(value: bool) -> bool:
    return value


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def _cancellable_connect(
    scope: anyio.CancelScope,
    registry: Registry,
    transport: RecordingTransport,
    key: str,
    groups: Any,
) -> None:
    with scope:
        await registry.connect(transport, key=key, groups=groups)
