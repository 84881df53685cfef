"""Defects an outside review demonstrated in 0.1; each test failed on 0.1."""

from __future__ import annotations

import enum

import anyio
import pytest

from wsregistry import CloseCode, ConnectionState, Key, MemoryBackend, Registry
from wsregistry.testing import RecordingTransport, StallingTransport

from ..helpers import TIMEOUT, wait_until
from .transports import SlowTransport

pytestmark = pytest.mark.anyio


async def test_identity_is_read_only() -> None:
    async with Registry() as registry:
        conn = await registry.connect(RecordingTransport(), key="k")
        with pytest.raises(AttributeError):
            conn.key = "other"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            conn.id = "other"  # type: ignore[misc]
        await registry.disconnect(conn)
        assert registry.stats().keys == 0
        assert registry.lookup("k") == ()


async def test_concurrent_close_connections_each_wait_only_for_the_queues() -> None:
    # 0.1: the second call replaced the first one's event, which then waited the full
    # drain_timeout
    async with Registry(drain_timeout=TIMEOUT * 10) as registry:
        transports = [SlowTransport(0.02) for _ in range(3)]
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        for n in range(5):
            await registry.broadcast(n)
        closed: list[int] = []

        async def close_all() -> None:
            closed.append(await registry.close_connections())

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(close_all)
                tg.start_soon(close_all)
        assert sorted(closed) == [0, 3]
        for transport in transports:
            assert transport.messages() == [0, 1, 2, 3, 4]
            assert transport.close_code == CloseCode.GOING_AWAY


async def test_queue_bytes_are_utf8_bytes() -> None:
    async with Registry(max_queue_bytes=1000, overflow="drop_newest") as registry:
        conn = await registry.connect(StallingTransport(), key="k")
        await conn.send("m0")
        await wait_until(lambda: conn.queued == 0)  # m0 is stuck in flight
        for _ in range(4):
            await registry.send("k", "€" * 300)  # 900 bytes each
        assert conn.queued_bytes == 900
        assert registry.stats().queued_bytes == 900
        assert registry.stats().dropped == 3


class Kind(str, enum.Enum):
    A = "a"


class Level(enum.IntEnum):
    HIGH = 3


async def test_str_and_int_enum_members_are_sent_as_their_values() -> None:
    async with Registry() as registry:
        transport = RecordingTransport()
        await registry.connect(transport, key="k")
        await registry.send("k", Kind.A)
        await registry.send("k", {"kind": Kind.A, Kind.A: Level.HIGH})
        await transport.wait_for(2)
        assert transport.sent == ["a", '{"kind":"a","a":3}']


@pytest.mark.parametrize("nowait", [False, True])
async def test_close_delivers_what_was_sent_before_it(nowait: bool) -> None:
    # 0.1 discarded every queued frame: always without a fast path, always on trio+Starlette
    async with Registry() as registry:
        transport = RecordingTransport(nowait=nowait)
        conn = await registry.connect(transport, key="k")
        for n in range(50):
            await conn.send(n)
        await registry.broadcast("last")
        await conn.close(CloseCode.NORMAL, "bye")
        assert transport.messages() == [*range(50), "last"]
        assert transport.close_code == CloseCode.NORMAL
        assert conn.state is ConnectionState.CLOSED
        assert registry.stats().dropped == 0


async def test_close_without_flush_and_abort_drop_the_queue() -> None:
    async with Registry() as registry:
        slow = SlowTransport(0.05)
        conn = await registry.connect(slow, key="a")
        for n in range(5):
            await conn.send(n)
        await conn.close(CloseCode.NORMAL, flush=False)
        assert len(slow.sent) <= 1  # at most the frame that was in flight
        assert slow.close_code == CloseCode.NORMAL

        other = SlowTransport(0.05)
        conn = await registry.connect(other, key="b")
        for n in range(5):
            await conn.send(n)
        conn.abort()
        assert conn.closed
        assert registry.lookup("b") == ()
        await wait_until(lambda: other.close_code is not None)  # no abort(): closed 1011
        assert other.close_code == CloseCode.INTERNAL_ERROR
        assert len(other.sent) <= 1
        assert registry.stats().queued == 0


async def test_a_closing_connection_gets_nothing_new_and_reports_closing() -> None:
    async with Registry() as registry:
        stalled = StallingTransport()
        conn = await registry.connect(stalled, key="k")
        await conn.send("m0")
        await conn.send("m1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.close)
            await wait_until(lambda: conn.state is ConnectionState.CLOSING)
            assert conn.closed
            assert registry.lookup("k") == ()
            assert await registry.send("k", "not for a closing connection") == 0
            stalled.release()
        assert stalled.sent == ["m0", "m1"]
        assert conn.state is ConnectionState.CLOSED


class _Recording(MemoryBackend):
    """Records the membership hooks; connection_added waits until the test opens a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.gate = anyio.Event()
        self.entered = anyio.Event()

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        self.entered.set()
        await self.gate.wait()

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        self.calls.append(f"joined {group}")

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        self.calls.append(f"left {group}")


async def test_a_connection_dropped_during_connect_joins_no_group_afterwards() -> None:
    # reported by the Redis work: group_left ran first, then connect() still joined,
    # leaving the backend subscribed to a group with no local member
    backend = _Recording()
    async with Registry(backend=backend) as registry:
        transport = RecordingTransport()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: registry.connect(transport, key="k", groups={"room"}))
            await backend.entered.wait()
            (conn,) = registry.lookup("k")
            await registry.disconnect(conn)  # while the backend is still adding it
            backend.gate.set()
        assert backend.calls == ["left room"]
        assert registry.members("room") == ()
