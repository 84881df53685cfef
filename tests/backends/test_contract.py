"""The contract every backend keeps, run on each: two registries acting as a cluster.

``memory``: two registries sharing a MemoryHub (asyncio and trio).
``redis``: two registries with their own RedisBackend on the shared Redis, one
namespace per test.

Exactly-once is checked with a fence: a publisher's messages arrive in order, so
once a connection has the fence it must hold each earlier message exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.helpers import TIMEOUT
from wsregistry import MemoryBackend, MemoryHub, NotConnected, Registry
from wsregistry.testing import RecordingTransport

from .conftest import SHARED_REDIS
from .support import until

pytestmark = pytest.mark.anyio

CASES = [
    pytest.param(("memory", "asyncio"), id="memory-asyncio"),
    pytest.param(("memory", "trio"), id="memory-trio"),
    pytest.param(("redis", "asyncio"), id="redis", marks=pytest.mark.redis),
]

HOSTILE: list[str | int] = [
    "*",
    "?",
    "[ab]",
    "a",
    "b",
    "a:b",
    "ab",
    "a\nb",
    "a\x00b",
    "a b",
    "\r\n*1\r\n$4\r\nPING\r\n",
    "k:sYQ",
    "é",
    "\ud800",
    "",
    "x" * 10_000,
    "x" * 10_001,
    "1",
    1,
    -1,
    2**70,
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def kind(case: tuple[str, str]) -> str:
    return case[0]


@asynccontextmanager
async def cluster(kind: str, namespace: str, nodes: int = 2) -> AsyncIterator[list[Registry]]:
    """``nodes`` registries that see each other through the backend under test."""
    hub = MemoryHub()
    async with AsyncExitStack() as stack:
        registries = []
        for _ in range(nodes):
            if kind == "memory":
                backend: Any = MemoryBackend(hub=hub)
            else:
                from wsregistry.backends.redis import RedisBackend

                backend = RedisBackend(SHARED_REDIS, namespace=namespace)
            registries.append(await stack.enter_async_context(Registry(backend=backend)))
        yield registries


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def fenced(
    registry: Registry, key: str | int, *transports: RecordingTransport, fence: str = "fence"
) -> None:
    """Send ``fence`` to ``key`` and wait until every transport has it."""
    await registry.send(key, fence)
    with anyio.fail_after(TIMEOUT):
        for transport in transports:
            while fence not in transport.sent:
                await transport.wait_for(len(transport.sent) + 1)


async def test_send_reaches_every_connection_of_the_key_once(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        tabs = [RecordingTransport() for _ in range(3)]
        bob = RecordingTransport()
        await a.connect(tabs[0], key="alice")
        await a.connect(tabs[1], key="alice")
        await b.connect(tabs[2], key="alice")
        await b.connect(bob, key="bob")
        assert await a.send("alice", {"n": 1}) == 2
        assert await b.send("alice", {"n": 2}) == 1
        await fenced(a, "alice", *tabs, fence="fence-a")
        await fenced(b, "alice", *tabs, fence="fence-b")
        for tab in tabs:
            assert tab.messages().count({"n": 1}) == 1
            assert tab.messages().count({"n": 2}) == 1
            assert tab.sent.count("fence-a") == tab.sent.count("fence-b") == 1
        assert bob.sent == []


async def test_sender_node_delivers_locally_without_echo(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        local, remote = RecordingTransport(), RecordingTransport()
        await a.connect(local, key="k")
        await b.connect(remote, key="k")
        for i in range(50):
            await a.send("k", i)
        await fenced(a, "k", local, remote)
        expected = [*(str(i) for i in range(50)), "fence"]
        assert local.messages() == [*range(50), "fence"]
        assert [str(m) for m in remote.messages()] == expected


async def test_broadcast_reaches_everyone_once_and_honours_exclude(
    kind: str, namespace: str
) -> None:
    async with cluster(kind, namespace) as (a, b):
        ta, tb1, tb2 = RecordingTransport(), RecordingTransport(), RecordingTransport()
        await a.connect(ta, key="a")
        excluded = await b.connect(tb1, key="b1")
        await b.connect(tb2, key="b2")
        assert await a.broadcast("all") == 1
        assert await a.broadcast("not-b1", exclude=excluded.id) == 1
        assert await a.broadcast(b"last") == 1
        with anyio.fail_after(TIMEOUT):
            for transport in (ta, tb1, tb2):
                while b"last" not in transport.sent:
                    await transport.wait_for(len(transport.sent) + 1)
        assert ta.sent == ["all", "not-b1", b"last"]
        assert tb1.sent == ["all", b"last"]
        assert tb2.sent == ["all", "not-b1", b"last"]


async def test_group_broadcast_reaches_members_on_every_node(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        ma, mb, sender_b, outsider = (RecordingTransport() for _ in range(4))
        await a.connect(ma, key="ma", groups={"room"})
        await b.connect(mb, key="mb", groups={"room"})
        me = await b.connect(sender_b, key="sender", groups={"room"})
        await a.connect(outsider, key="out")
        assert await b.broadcast("hi room", group="room", exclude=me) == 1
        await b.broadcast("end", group="room")
        with anyio.fail_after(TIMEOUT):
            for transport in (ma, mb, sender_b):
                while "end" not in transport.sent:
                    await transport.wait_for(len(transport.sent) + 1)
        assert ma.sent == ["hi room", "end"]
        assert mb.sent == ["hi room", "end"]
        assert sender_b.sent == ["end"]
        # join/leave at run time change who receives
        conn_out = a.lookup("out")[0]
        await a.join(conn_out, "room")
        await b.leave(b.lookup("mb")[0], "room")
        await b.broadcast("second", group="room")
        await b.broadcast("end2", group="room")
        with anyio.fail_after(TIMEOUT):
            for transport in (ma, outsider):
                while "end2" not in transport.sent:
                    await transport.wait_for(len(transport.sent) + 1)
        assert outsider.sent == ["second", "end2"]
        assert mb.sent == ["hi room", "end"]


async def test_send_to_connection_on_another_node(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        target, sibling = RecordingTransport(), RecordingTransport()
        conn = await b.connect(target, key="same")
        await b.connect(sibling, key="same")
        assert await a.send_to_connection(conn.id, {"only": "you"}) == 0
        assert await a.send_to_connection("no-such-connection", "lost") == 0
        await a.send_to_connection(conn.id, "fence")
        with anyio.fail_after(TIMEOUT):
            await target.wait_for(2)
        assert target.messages() == [{"only": "you"}, "fence"]
        assert sibling.sent == []


async def test_presence_spans_the_cluster(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        assert not await a.is_online("alice")
        assert await a.online_count("alice") == 0
        c1 = await a.connect(RecordingTransport(), key="alice")
        c2 = await b.connect(RecordingTransport(), key="alice")
        await b.connect(RecordingTransport(), key=7)
        assert await a.online_count("alice") == 2
        assert await b.online_count("alice") == 2
        assert await a.is_online(7)
        assert not await a.is_online("7")
        assert await a.online_keys() == {"alice", 7}
        await b.disconnect(c2)
        await until(lambda: _equals(a.online_count("alice"), 1))
        await a.disconnect(c1)
        await until(lambda: _equals(b.is_online("alice"), False))
        assert await b.online_keys() == {7}


async def test_require_raises_only_when_offline_everywhere(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="alice")
        assert await a.send("alice", "you are there", require=True) == 0
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(1)
        with pytest.raises(NotConnected) as info:
            await a.send("nobody", "x", require=True)
        assert info.value.key == "nobody"


async def test_hostile_names_never_cross_deliver(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        transports: dict[int, RecordingTransport] = {}
        for i, key in enumerate(HOSTILE):
            transports[i] = RecordingTransport()
            group = key if isinstance(key, str) and key else "g-empty"
            await b.connect(transports[i], key=key, groups={group})
        for i, key in enumerate(HOSTILE):
            await a.send(key, f"key-{i}")
            group = key if isinstance(key, str) and key else "g-empty"
            await a.broadcast(f"group-{i}", group=group)
        await a.broadcast("end")
        with anyio.fail_after(TIMEOUT):
            for transport in transports.values():
                while "end" not in transport.sent:
                    await transport.wait_for(len(transport.sent) + 1)
        for i, key in enumerate(HOSTILE):
            expected_groups = [
                f"group-{j}"
                for j, other in enumerate(HOSTILE)
                if (other if isinstance(other, str) and other else "g-empty")
                == (key if isinstance(key, str) and key else "g-empty")
            ]
            got = transports[i].sent
            assert [m for m in got if str(m).startswith("key-")] == [f"key-{i}"], key
            assert [m for m in got if str(m).startswith("group-")] == expected_groups, key
        assert await a.online_keys() == set(HOSTILE)
        for key in HOSTILE:
            assert await a.online_count(key) == 1


async def test_interest_survives_quick_leave_and_return(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        for _ in range(5):
            conn = await b.connect(RecordingTransport(), key="flappy", groups={"fg"})
            await b.disconnect(conn)
        last = RecordingTransport()
        await b.connect(last, key="flappy", groups={"fg"})
        await a.send("flappy", "to key")
        await a.broadcast("to group", group="fg")
        with anyio.fail_after(TIMEOUT):
            await last.wait_for(2)
        assert last.sent == ["to key", "to group"]
        assert await a.online_count("flappy") == 1


async def test_publisher_order_is_kept_across_kinds(kind: str, namespace: str) -> None:
    async with cluster(kind, namespace) as (a, b):
        remote = RecordingTransport()
        conn = await b.connect(remote, key="ordered", groups={"og"})
        for i in range(300):
            if i % 3 == 0:
                await a.send("ordered", i)
            elif i % 3 == 1:
                await a.broadcast(i, group="og")
            else:
                await a.broadcast(i)
        await a.send_to_connection(conn.id, 300)
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(301)
        assert remote.messages() == list(range(301))
