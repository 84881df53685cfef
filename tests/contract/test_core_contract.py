"""Black-box tests of the core written from DESIGN.md and the public docstrings only."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

import wsregistry
from wsregistry import Connection, Registry, Transport
from wsregistry.errors import (
    BackendUnavailable,
    ConnectionClosed,
    NotConnected,
    RegistryClosed,
    SerializationError,
    WSRegistryError,
)

from .support import Sock, until

pytestmark = pytest.mark.anyio


class Broken:
    async def send(self, data: str | bytes) -> None:
        raise ConnectionResetError("peer reset")

    async def close(self, code: int, reason: str) -> None:
        raise ConnectionResetError("peer reset")


class Gate:
    """A peer that stopped reading until ``release``."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.go = anyio.Event()
        self.closed_with: tuple[int, str] | None = None

    async def send(self, data: str | bytes) -> None:
        await self.go.wait()
        self.frames.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def decoded(frames: list[str | bytes]) -> list[Any]:
    return [json.loads(f) for f in frames]


def test_names_are_exported() -> None:
    assert isinstance(Sock(), Transport)
    for name in ("Registry", "Connection", "Transport", "Backend"):
        assert hasattr(wsregistry, name)
    for exc in (NotConnected, RegistryClosed, SerializationError, BackendUnavailable):
        assert issubclass(exc, WSRegistryError)
    assert issubclass(SerializationError, TypeError)


async def test_design_code_block() -> None:
    registry = Registry()
    t1, t2 = Sock(), Sock()
    async with registry:
        conn = await registry.connect(t1, key="user-42", groups={"admins"}, metadata={"ip": "x"})
        conn2 = await registry.connect(t2, key="user-42")
        assert isinstance(conn, Connection)
        assert conn.key == "user-42"
        assert "admins" in conn.groups
        assert conn.metadata == {"ip": "x"}
        assert isinstance(conn.id, str)
        assert conn.id != conn2.id
        assert conn.connected_at <= time.time() + 1
        assert conn.closed is False
        n = await registry.send("user-42", {"type": "notice"})
        assert n == 2
        await registry.send("user-42", "m", require=True)
        assert await registry.broadcast("b") == 2
        assert await registry.broadcast("g", group="admins", exclude=conn) == 0
        assert await registry.broadcast("g2", group="admins") == 1
        conns = registry.lookup("user-42")
        assert isinstance(conns, tuple)
        assert set(conns) == {conn, conn2}
        assert await registry.is_online("user-42")
        await registry.join(conn2, "room-1")
        assert "room-1" in conn2.groups
        assert await registry.broadcast("r", group="room-1") == 1
        await registry.leave(conn2, "room-1")
        assert await registry.broadcast("r", group="room-1") == 0
        await registry.disconnect(conn)
        await registry.disconnect(conn)
        assert conn.closed
        assert registry.lookup("user-42") == (conn2,)
        async with registry.session(Sock(), key="user-42") as c3:
            assert c3 in registry.lookup("user-42")
        assert c3.closed
        assert c3 not in registry.lookup("user-42")
        await conn2.send({"x": 1})
    await until(lambda: t2.closed_with is not None)
    assert t2.closed_with is not None
    assert t2.closed_with[0] == 1001
    assert decoded(t1.frames[:1]) == [{"type": "notice"}]
    assert t1.frames[1:] == ["m", "b", "g2"]
    assert t2.frames[:4] == ['{"type":"notice"}', "m", "b", "r"] or json.loads(t2.frames[0]) == {
        "type": "notice"
    }
    assert t2.frames[-1] in ('{"x":1}', '{"x": 1}')


async def test_message_types() -> None:
    async with Registry() as registry:
        t = Sock()
        await registry.connect(t, key=1)
        await registry.send(1, {"a": [1, 2]})
        await registry.send(1, [1, "x"])
        await registry.send(1, "text")
        await registry.send(1, b"\x00\x01")
        await until(lambda: len(t.frames) == 4)
    assert isinstance(t.frames[0], str)
    assert json.loads(t.frames[0]) == {"a": [1, 2]}
    assert isinstance(t.frames[1], str)
    assert json.loads(t.frames[1]) == [1, "x"]
    assert t.frames[2] == "text"
    assert t.frames[3] == b"\x00\x01"


async def test_serialised_once_and_custom_serializer() -> None:
    calls: list[Any] = []

    def ser(obj: Any) -> str:
        calls.append(obj)
        return "S:" + json.dumps(obj)

    async with Registry(serializer=ser) as registry:
        socks = [Sock() for _ in range(5)]
        for i, s in enumerate(socks):
            await registry.connect(s, key=f"k{i}", groups={"g"})
        assert await registry.broadcast({"hi": 1}, group="g") == 5
        await until(lambda: all(s.frames for s in socks))
    assert len(calls) == 1
    assert all(s.frames == ['S:{"hi": 1}'] for s in socks)


async def test_unserialisable_raises_before_anything_sent() -> None:
    async with Registry() as registry:
        t = Sock()
        conn = await registry.connect(t, key="a")
        for bad in ({"x": object()}, object(), {"s": {1, 2}}, {"n": float("nan")}):
            with pytest.raises(SerializationError):
                await registry.send("a", bad)
            with pytest.raises(SerializationError):
                await registry.broadcast(bad)
            with pytest.raises(TypeError):
                await conn.send(bad)
        await registry.send("a", "ok")
        await until(lambda: t.frames == ["ok"])
        assert registry.stats().sent == 1


async def test_keys_edge_cases() -> None:
    async with Registry() as registry:
        keys: list[str | int] = [0, "", "x" * 10_000, "ключ-🔑", -5, 2**70]
        socks = {}
        for k in keys:
            socks[k] = Sock()
            await registry.connect(socks[k], key=k)
        for k in keys:
            assert await registry.send(k, "hi") == 1
            assert await registry.is_online(k)
            assert len(registry.lookup(k)) == 1
        # int 0 and str "0" are different keys
        assert registry.lookup("0") == ()
        assert await registry.send("0", "x") == 0
        assert not await registry.is_online("0")
        await until(lambda: all(s.frames == ["hi"] for s in socks.values()))
        assert registry.stats().keys == len(keys)


async def test_bad_keys_are_type_errors() -> None:
    async with Registry() as registry:
        for bad in (None, 1.5, b"k", ("a",)):
            with pytest.raises(TypeError):
                await registry.connect(Sock(), key=bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.connect(Sock(), key="k", groups={1})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.connect(object(), key="k")  # type: ignore[arg-type]
        assert registry.stats().connections == 0


async def test_nobody_there() -> None:
    async with Registry() as registry:
        assert await registry.send("ghost", {"a": 1}) == 0
        assert await registry.broadcast("x") == 0
        assert await registry.broadcast("x", group="nope") == 0
        assert registry.lookup("ghost") == ()
        assert not await registry.is_online("ghost")
        with pytest.raises(NotConnected):
            await registry.send("ghost", "x", require=True)
        with pytest.raises(LookupError):
            await registry.send(7, "x", require=True)


async def test_exclude_connection_and_id() -> None:
    async with Registry() as registry:
        a, b = Sock(), Sock()
        ca = await registry.connect(a, key="a", groups={"g"})
        await registry.connect(b, key="b", groups={"g"})
        assert await registry.broadcast("1", exclude=ca) == 1
        assert await registry.broadcast("2", group="g", exclude=ca) == 1
        assert await registry.broadcast("3", exclude=ca.id) == 1
        await until(lambda: len(b.frames) == 3)
        assert a.frames == []


async def test_disconnect_removes_only_that_connection() -> None:
    async with Registry() as registry:
        old = await registry.connect(Sock(), key="u", groups={"g"})
        new_t = Sock()
        new = await registry.connect(new_t, key="u", groups={"g"})
        await registry.disconnect(old)
        await registry.disconnect(old)
        assert registry.lookup("u") == (new,)
        assert await registry.is_online("u")
        assert await registry.broadcast("x", group="g") == 1
        s = registry.stats()
        assert (s.connections, s.keys, s.groups) == (1, 1, 1)
        await registry.disconnect(new)
        s = registry.stats()
        assert (s.connections, s.keys, s.groups) == (0, 0, 0)
        assert not await registry.is_online("u")
        with pytest.raises(WSRegistryError):
            await new.send("x")


async def test_transport_error_unregisters_at_once() -> None:
    async with Registry() as registry:
        ok = Sock()
        bad = await registry.connect(Broken(), key="u", groups={"g"})
        await registry.connect(ok, key="v", groups={"g"})
        await registry.broadcast("x", group="g")
        await until(lambda: bad.closed)
        assert registry.lookup("u") == ()
        assert not await registry.is_online("u")
        assert await registry.broadcast("y", group="g") == 1
        await until(lambda: ok.frames == ["x", "y"])
        s = registry.stats()
        assert s.connections == 1
        assert s.keys == 1
        assert s.groups == 1


async def test_order_across_send_broadcast_conn_send() -> None:
    async with Registry() as registry:
        g = Gate()
        conn = await registry.connect(g, key="k", groups={"g"})
        for i in range(300):
            m = i % 3
            if m == 0:
                await registry.send("k", str(i))
            elif m == 1:
                await registry.broadcast(str(i), group="g")
            else:
                await conn.send(str(i))
        g.go.set()
        await until(lambda: len(g.frames) == 300)
        assert g.frames == [str(i) for i in range(300)]


async def test_isolation_stalled_peer_and_overflow_close() -> None:
    async with Registry(max_queue=10) as registry:
        stalled = Gate()
        fast = Sock()
        sc = await registry.connect(stalled, key="slow")
        await registry.connect(fast, key="fast")
        with anyio.fail_after(2):
            for i in range(50):
                await registry.broadcast(str(i))
        await until(lambda: len(fast.frames) == 50)
        await until(lambda: sc.closed)
        assert stalled.closed_with is not None
        assert stalled.closed_with[0] == 1013
        s = registry.stats()
        assert s.slow_consumer_closes == 1
        assert registry.lookup("slow") == ()
        stalled.go.set()


async def test_queue_bounded_in_bytes() -> None:
    async with Registry(max_queue_bytes=1000) as registry:
        stalled = Gate()
        sc = await registry.connect(stalled, key="slow")
        for _ in range(20):
            await registry.send("slow", "x" * 200)
        await until(lambda: sc.closed)
        stalled.go.set()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_drop_policies(policy: str) -> None:
    async with Registry(max_queue=3, overflow=policy) as registry:
        g = Gate()
        c = await registry.connect(g, key="k")
        for i in range(10):
            await registry.send("k", str(i))
        assert not c.closed
        assert registry.stats().dropped > 0
        g.go.set()
        await until(lambda: c.queued == 0)
        assert len(g.frames) < 10


async def test_calls_after_close_raise_registry_closed() -> None:
    registry = Registry()
    async with registry:
        conn = await registry.connect(Sock(), key="k")
    assert conn.closed
    with pytest.raises(RegistryClosed):
        await registry.send("k", "x")
    with pytest.raises(RegistryClosed):
        await registry.broadcast("x")
    with pytest.raises(RegistryClosed):
        await registry.connect(Sock(), key="k")
    with pytest.raises(RegistryClosed):
        await registry.is_online("k")
    await registry.disconnect(conn)  # idempotent, also after close
    assert registry.lookup("k") == ()
    registry.stats()


async def test_calls_before_start_raise() -> None:
    registry = Registry()
    with pytest.raises(RegistryClosed):
        await registry.send("k", "x")
    with pytest.raises(WSRegistryError):
        await registry.connect(Sock(), key="k")


async def test_registry_can_be_entered_again_after_exit() -> None:
    registry = Registry()
    async with registry:
        await registry.connect(Sock(), key="k")
    async with registry:
        assert registry.lookup("k") == ()  # a fresh run
        t = Sock()
        await registry.connect(t, key="k")
        assert await registry.send("k", "again") == 1
    assert t.frames == ["again"]
    with pytest.raises(RegistryClosed):
        await registry.send("k", "after")


def test_registry_in_two_event_loops_one_after_the_other() -> None:
    registry = Registry()
    frames: list[list[str | bytes]] = []

    async def use() -> None:
        async with registry:
            t = Sock()
            await registry.connect(t, key="a")
            await registry.send("a", "hi")
        frames.append(t.frames)

    anyio.run(use)
    anyio.run(use, backend="trio")
    anyio.run(use)
    assert frames == [["hi"], ["hi"], ["hi"]]


def test_registry_created_outside_loop_on_trio() -> None:
    registry = Registry()
    t = Sock()

    async def use() -> None:
        async with registry:
            await registry.connect(t, key="a")
            await registry.send("a", {"a": 1})

    anyio.run(use, backend="trio")
    assert t.frames == ['{"a":1}'] or decoded(t.frames) == [{"a": 1}]
    assert t.closed_with is not None
    assert t.closed_with[0] == 1001


async def test_shutdown_drains_and_closes_1001_without_leftover_tasks() -> None:
    async with anyio.create_task_group() as tg:
        g = Gate()
        async with Registry() as registry:
            c = await registry.connect(g, key="k")
            await registry.send("k", "last")
            g.go.set()
            with pytest.raises(WSRegistryError) as info:
                async with registry:
                    pass
            assert isinstance(info.value, RuntimeError)
            assert registry.lookup("k") == (c,)  # the refused re-entry closed nothing
        assert g.frames == ["last"]
        assert g.closed_with is not None
        assert g.closed_with[0] == 1001
        assert c.closed
        tg.cancel_scope.cancel()


async def test_shutdown_bounded_with_stalled_peer() -> None:
    g = Gate()
    with anyio.fail_after(5):
        async with Registry(drain_timeout=0.2, close_timeout=0.2) as registry:
            await registry.connect(g, key="k")
            await registry.send("k", "never")
    g.go.set()


async def test_session_unregisters_on_error_and_cancel() -> None:
    async with Registry() as registry:
        with pytest.raises(ZeroDivisionError):
            async with registry.session(Sock(), key="e") as c1:
                1 / 0  # noqa: B018
        assert c1.closed
        assert registry.lookup("e") == ()
        with anyio.move_on_after(0.01):
            async with registry.session(Sock(), key="c") as c2:
                await anyio.sleep_forever()
        assert c2.closed
        assert registry.lookup("c") == ()
        assert registry.stats().connections == 0


async def test_disconnect_in_cancelled_finally() -> None:
    async with Registry() as registry:
        with anyio.CancelScope() as scope:
            conn = await registry.connect(Sock(), key="u")
            try:
                scope.cancel()
                await anyio.sleep_forever()
            finally:
                await registry.disconnect(conn)
        assert registry.lookup("u") == ()


async def test_stats_fields() -> None:
    async with Registry() as registry:
        await registry.connect(Sock(), key="a", groups={"g", "h"})
        await registry.connect(Sock(), key="a")
        await registry.send("a", "x")
        await until(lambda: registry.stats().sent == 2)
        s = registry.stats()
        assert s.connections == 2
        assert s.keys == 1
        assert s.groups == 2
        for f in ("queued", "sent", "dropped", "slow_consumer_closes", "backend_errors"):
            assert isinstance(getattr(s, f), int)


async def test_logging_under_wsregistry_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wsregistry")
    async with Registry() as registry:
        c = await registry.connect(Broken(), key="u")
        await registry.send("u", "x")
        await until(lambda: c.closed)
    assert any(r.name.startswith("wsregistry") for r in caplog.records)


async def test_join_leave_idempotent_and_closed() -> None:
    async with Registry() as registry:
        c = await registry.connect(Sock(), key="u")
        await registry.join(c, "r")
        await registry.join(c, "r")
        assert registry.stats().groups == 1
        await registry.leave(c, "r")
        await registry.leave(c, "r")
        await registry.leave(c, "never-joined")
        assert registry.stats().groups == 0
        await registry.disconnect(c)
        with pytest.raises(WSRegistryError):
            await registry.join(c, "r")


async def test_concurrent_churn_and_broadcast() -> None:
    async with Registry() as registry:
        steady = Sock()
        await registry.connect(steady, key="steady", groups={"g"})

        async def churn(i: int) -> None:
            for _ in range(50):
                c = await registry.connect(Sock(), key=f"u{i % 3}", groups={"g"})
                await registry.disconnect(c)

        async def blast() -> None:
            for j in range(200):
                n = await registry.broadcast(str(j), group="g")
                assert n >= 1

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(churn, i)
            tg.start_soon(blast)
        await until(lambda: len(steady.frames) == 200)
        s = registry.stats()
        assert (s.connections, s.keys, s.groups) == (1, 1, 1)


async def test_disconnect_with_another_registrys_connection_changes_nothing() -> None:
    async with Registry() as a, Registry() as b:
        t = Sock()
        ca = await a.connect(t, key="k", groups={"g"})
        with pytest.raises(ValueError, match="another registry"):
            await b.disconnect(ca)
        with pytest.raises(ValueError, match="another registry"):
            b.disconnect_nowait(ca)
        assert not ca.closed
        assert a.lookup("k") == (ca,)
        assert await a.broadcast("x", group="g") == 1
        await until(lambda: t.frames == ["x"])
        await ca.close()
        assert ca.closed
        assert a.lookup("k") == ()
        assert t.closed_with == (1000, "")


async def test_defaults_of_a_connection() -> None:
    async with Registry() as registry:
        meta = {"a": 1}
        c = await registry.connect(Sock(), key=5, metadata=meta)
        meta["a"] = 2
        assert c.metadata == {"a": 1}
        assert c.groups == set()
        c2 = await registry.connect(Sock(), key=5)
        assert c2.metadata == {}
        assert c.connected_at <= c2.connected_at
        with pytest.raises(TypeError):
            await registry.connect(Sock(), key=True)


class YieldingSock(Sock):
    """Like a real socket write: yields to the loop once per frame."""

    async def send(self, data: str | bytes) -> None:
        await anyio.lowlevel.checkpoint()
        self.frames.append(data)


async def test_tight_broadcast_loop_lets_writers_drain() -> None:
    async with Registry() as registry:
        socks = [YieldingSock() for _ in range(3)]
        conns = [await registry.connect(s, key=i, groups={"g"}) for i, s in enumerate(socks)]
        for i in range(5000):
            await registry.broadcast(str(i), group="g")
            await registry.send(0, "s")
        await until(lambda: all(len(s.frames) >= 5000 for s in socks))
        assert not any(c.closed for c in conns)
        assert registry.stats().slow_consumer_closes == 0
        assert registry.stats().dropped == 0


async def test_public_calls_honour_cancellation() -> None:
    async with Registry() as registry:
        t = Sock()
        conn = await registry.connect(t, key="k", groups={"g"})
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: registry.send("k", "x"),
            lambda: registry.broadcast("x"),
            lambda: registry.broadcast("x", group="g"),
            lambda: conn.send("x"),
            lambda: registry.is_online("k"),
            lambda: registry.join(conn, "h"),
            lambda: registry.connect(Sock(), key="new"),
        ]
        for call in calls:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await call()
                pytest.fail("a cancelled call returned")  # pragma: no cover
        assert registry.lookup("new") == ()
        await anyio.lowlevel.checkpoint()
        assert t.frames == []
        assert "h" not in conn.groups


async def test_tight_loop_can_be_cancelled() -> None:
    async with Registry() as registry:
        await registry.connect(Sock(), key="k")
        with anyio.move_on_after(0.05) as scope:
            while True:
                await registry.broadcast("spin")
        assert scope.cancelled_caught


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_shutdown_leaves_no_asyncio_task() -> None:
    import asyncio

    before = asyncio.all_tasks()
    stalled = Gate()
    async with Registry(drain_timeout=0.1, close_timeout=0.1) as registry:
        for i in range(20):
            await registry.connect(Sock(), key=i, groups={"g"})
        await registry.connect(stalled, key="stalled")
        await registry.connect(Broken(), key="broken")
        await registry.broadcast({"x": 1})
        await registry.send("stalled", "more")
    assert asyncio.all_tasks() == before
    assert registry.stats().connections == 0
    stalled.go.set()


class Frozen:
    """A peer whose send and close both hang (no abort offered)."""

    async def send(self, data: str | bytes) -> None:
        await anyio.sleep_forever()

    async def close(self, code: int, reason: str) -> None:
        await anyio.sleep_forever()


async def test_shutdown_is_bounded_by_a_frozen_transport() -> None:
    with anyio.fail_after(3):
        async with Registry(drain_timeout=0.2, close_timeout=0.2) as registry:
            frozen = await registry.connect(Frozen(), key="f")
            ok = Sock()
            await registry.connect(ok, key="ok")
            await registry.broadcast("x")
            await until(lambda: ok.frames == ["x"])
            c = await registry.connect(Frozen(), key="g")
            with anyio.fail_after(1):
                await c.close()
            assert c.closed
    assert frozen.closed
    assert ok.closed_with is not None
    assert ok.closed_with[0] == 1001


async def test_json_scalars_and_send_on_a_connection_after_shutdown() -> None:
    t = Sock()
    async with Registry() as registry:
        conn = await registry.connect(t, key="k")
        for i in range(3):
            await registry.send("k", i)
        await registry.send("k", None)
        await until(lambda: len(t.frames) == 4)
    assert t.frames == ["0", "1", "2", "null"]
    with pytest.raises(ConnectionClosed) as info:
        await conn.send("late")
    assert info.value.code == 1001


async def test_memory_returns_to_baseline_after_churn() -> None:
    import gc
    import tracemalloc

    async with Registry() as registry:
        keeper = await registry.connect(Sock(), key="keeper", groups={"room"})

        async def churn(n: int) -> None:
            for i in range(n):
                c = await registry.connect(Sock(), key=f"u{i}", groups={"room", f"g{i}"})
                await registry.join(c, "extra")
                await registry.send(f"u{i}", {"i": i})
                await registry.broadcast("b", group="room", exclude=keeper)
                if i % 2:
                    await registry.disconnect(c)
                else:
                    await c.close()

        await churn(200)  # warm up caches and free lists
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await churn(2000)
            await until(lambda: registry.stats().queued == 0)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        s = registry.stats()
        assert (s.connections, s.keys, s.groups) == (1, 1, 1)
        assert grown < 64 * 1024, f"{grown} bytes left after 2000 connections came and went"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_every_public_async_call_is_a_checkpoint() -> None:
    """On asyncio one yield runs every ready task; trio may reorder a batch, so there
    the checkpoint is checked through cancellation (test_public_calls_honour_cancellation)."""
    async with Registry() as registry:
        conn = await registry.connect(Sock(), key="k", groups={"g"})
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("send", lambda: registry.send("k", "x")),
            ("send-nobody", lambda: registry.send("nobody", "x")),
            ("broadcast", lambda: registry.broadcast("x")),
            ("broadcast-group", lambda: registry.broadcast("x", group="none")),
            ("conn.send", lambda: conn.send("x")),
            ("is_online", lambda: registry.is_online("k")),
            ("join", lambda: registry.join(conn, "h")),
            ("join-again", lambda: registry.join(conn, "h")),
            ("leave", lambda: registry.leave(conn, "h")),
            ("leave-again", lambda: registry.leave(conn, "h")),
            ("connect", lambda: registry.connect(Sock(), key="other")),
            ("disconnect", lambda: registry.disconnect(registry.lookup("other")[0])),
        ]
        for name, call in calls:
            ran = False

            async def other() -> None:
                nonlocal ran
                ran = True

            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
                await call()
                assert ran, f"{name} did not yield to the event loop"
