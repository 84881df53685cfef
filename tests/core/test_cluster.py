"""require=True and registries sharing a MemoryHub acting as a cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from wsregistry import MemoryBackend, MemoryHub, NotConnected, Registry
from wsregistry.testing import RecordingTransport

from ..helpers import TIMEOUT, wait_until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def cluster(size: int = 2) -> AsyncIterator[list[Registry]]:
    hub = MemoryHub()
    registries = [Registry(backend=MemoryBackend(hub=hub)) for _ in range(size)]
    async with registries[0], registries[1]:
        if size == 3:
            async with registries[2]:
                yield registries
        else:
            yield registries


async def _settled(*registries: Registry) -> None:
    """Wait until nothing is queued: every frame enqueued so far has been written."""
    await wait_until(lambda: all(r.stats().queued == 0 for r in registries))


async def test_require_raises_not_connected_when_offline_everywhere() -> None:
    async with Registry() as registry:
        with pytest.raises(NotConnected) as info:
            await registry.send("ghost", "x", require=True)
        assert info.value.key == "ghost"
        assert isinstance(info.value, LookupError)
        assert await registry.send("ghost", "x") == 0  # without require: 0, no error
        transport = RecordingTransport()
        await registry.connect(transport, key="here")
        assert await registry.send("here", "x", require=True) == 1


async def test_send_reaches_the_key_on_every_node_exactly_once() -> None:
    async with cluster(3) as (a, b, c):
        ta, tb, tb2 = RecordingTransport(), RecordingTransport(), RecordingTransport()
        await a.connect(ta, key="u")
        await b.connect(tb, key="u")
        await b.connect(tb2, key="u")
        assert await c.send("u", "from c") == 0  # counts local connections only
        assert await a.send("u", "from a") == 1
        assert await b.send("u", "from b") == 2
        with anyio.fail_after(TIMEOUT):
            for t in (ta, tb, tb2):
                await t.wait_for(3)
        await _settled(a, b, c)  # anything more (a duplicate) would be written now
        for t in (ta, tb, tb2):
            assert t.sent == ["from c", "from a", "from b"]


async def test_require_sees_remote_connections() -> None:
    async with cluster() as (a, b):
        tb = RecordingTransport()
        await b.connect(tb, key="remote")
        assert await a.send("remote", "x", require=True) == 0
        with anyio.fail_after(TIMEOUT):
            await tb.wait_for(1)
        with pytest.raises(NotConnected):
            await a.send("nobody", "x", require=True)


async def test_broadcast_group_and_exclude_span_nodes() -> None:
    async with cluster() as (a, b):
        ta, tb, tc = RecordingTransport(), RecordingTransport(), RecordingTransport()
        ca = await a.connect(ta, key=1, groups=["room"])
        cb = await b.connect(tb, key=2, groups=["room"])
        await b.connect(tc, key=3)
        assert await a.broadcast("all") == 1
        assert await a.broadcast("room", group="room") == 1
        assert await a.broadcast("not me", group="room", exclude=ca) == 0
        assert await a.broadcast("not b", exclude=cb.id) == 1
        assert await b.send_to_connection(ca.id, "direct") == 0  # remote: published
        with anyio.fail_after(TIMEOUT):
            await ta.wait_for(4)
            await tb.wait_for(3)
            await tc.wait_for(2)
        await _settled(a, b)
        assert ta.sent == ["all", "room", "not b", "direct"]
        assert tb.sent == ["all", "room", "not me"]
        assert tc.sent == ["all", "not b"]


async def test_presence_spans_nodes_and_follows_disconnects() -> None:
    async with cluster() as (a, b):
        ca = await a.connect(RecordingTransport(), key="u")
        cb = await b.connect(RecordingTransport(), key="u")
        await b.connect(RecordingTransport(), key="v")
        assert await a.is_online("v")
        assert await a.online_count("u") == 2
        assert await b.online_keys() == frozenset({"u", "v"})
        assert a.lookup("u") == (ca,)  # lookup is local
        await a.disconnect(ca)
        assert await a.is_online("u")
        assert await a.online_count("u") == 1
        await b.disconnect(cb)
        assert not await a.is_online("u")
        assert await a.online_keys() == frozenset({"v"})


async def test_a_closed_node_leaves_the_cluster() -> None:
    hub = MemoryHub()
    a = Registry(backend=MemoryBackend(hub=hub))
    async with a:
        tb = RecordingTransport()
        async with Registry(backend=MemoryBackend(hub=hub)) as b:
            await b.connect(tb, key="u")
            assert await a.is_online("u")
        assert not await a.is_online("u")
        assert await a.send("u", "x") == 0
        assert tb.close_code == 1001
        assert a.stats().backend.detail == {"nodes": 1}
