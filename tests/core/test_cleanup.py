"""Semantics 4 and 5: cleanup, exact and idempotent disconnect, concurrency."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import pytest

from wsregistry import CloseCode, Connection, Registry
from wsregistry.testing import FailingTransport, RecordingTransport

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio


def _assert_gone(registry: Registry, conn: Connection) -> None:
    assert conn.closed
    assert conn not in registry.connections()
    assert conn not in registry.lookup(conn.key)
    for group in ("a", "b"):
        assert conn not in registry.members(group)


@pytest.mark.parametrize("nowait", [False, True])
async def test_transport_error_unregisters_from_key_groups_and_presence(nowait: bool) -> None:
    async with Registry() as registry:
        transport = FailingTransport(fail_after=0, nowait=nowait)
        conn = await registry.connect(transport, key="k", groups=["a", "b"])
        await registry.send("k", "boom")
        if nowait:  # the fast path fails inside the call: gone before it returns
            assert conn.closed
        with anyio.fail_after(TIMEOUT):
            await conn.wait_closed()
        _assert_gone(registry, conn)
        assert not await registry.is_online("k")
        assert await registry.online_count("k") == 0
        assert await registry.online_keys() == frozenset()
        stats = registry.stats()
        assert (stats.connections, stats.keys, stats.groups) == (0, 0, 0)
        assert await registry.send("k", "again") == 0


async def test_closed_transport_unregisters_on_next_send() -> None:
    async with Registry() as registry:
        transport = RecordingTransport()
        conn = await registry.connect(transport, key="k", groups=["a"])
        await transport.close(1000, "peer left")  # the peer went away under us
        await registry.broadcast("x")
        with anyio.fail_after(TIMEOUT):
            await conn.wait_closed()
        _assert_gone(registry, conn)


async def test_disconnect_is_exact_and_idempotent() -> None:
    async with Registry() as registry:
        old_t, new_t = RecordingTransport(), RecordingTransport()
        old = await registry.connect(old_t, key="user", groups=["a"])
        new = await registry.connect(new_t, key="user", groups=["a"])  # reconnect
        await registry.disconnect(old)  # the old socket's late cleanup
        await registry.disconnect(old)
        assert registry.lookup("user") == (new,)
        assert registry.members("a") == (new,)
        assert await registry.is_online("user")
        assert await registry.send("user", "hi") == 1
        with anyio.fail_after(TIMEOUT):
            await new_t.wait_for(1)
        assert old_t.sent == []
        assert old.close_code is None  # disconnect does not close the socket
        assert old_t.close_code is None
        await registry.disconnect(new)
        assert registry.stats().connections == 0


async def test_late_disconnect_of_old_connection_after_new_one_joined() -> None:
    # interleaving of a reconnect race: old registered, new registered, old's
    # cleanup runs concurrently with traffic to the key
    async with Registry() as registry:
        for _ in range(50):
            old = await registry.connect(RecordingTransport(), key="u")
            new_t = RecordingTransport()
            async with anyio.create_task_group() as tg:
                tg.start_soon(registry.disconnect, old)
                new = await registry.connect(new_t, key="u")
            assert registry.lookup("u") == (new,)
            await registry.disconnect(old)
            assert registry.lookup("u") == (new,)
            await registry.disconnect(new)
        assert registry.stats().connections == 0


async def test_cleanup_calls_do_their_work_even_when_cancelled() -> None:
    # `finally: await registry.disconnect(conn)` in a cancelled handler must unregister;
    # like trio's aclose(), the call does its work, then raises the cancellation.
    async with Registry(close_timeout=0.05) as registry:
        a = await registry.connect(RecordingTransport(), key="a", groups=["g", "h"])
        b_transport = RecordingTransport()
        b = await registry.connect(b_transport, key="b")
        cleanups: list[Callable[[], Awaitable[None]]] = [
            lambda: registry.leave(a, "h"),
            lambda: registry.disconnect(a),
            lambda: b.close(CloseCode.NORMAL),
        ]
        for cleanup in cleanups:
            with anyio.CancelScope() as scope:
                scope.cancel()
                try:
                    await anyio.sleep(TIMEOUT)
                finally:
                    await cleanup()
            assert scope.cancelled_caught
            if cleanup is cleanups[0]:
                assert a.groups == {"g"}
                assert registry.members("h") == ()
        _assert_gone(registry, a)
        assert b.closed
        assert registry.lookup("b") == ()
        assert b_transport.close_code == CloseCode.NORMAL  # attempted, then aborted
        assert registry.stats().connections == 0


@pytest.mark.parametrize("exit_by", ["normal", "exception", "cancel"])
async def test_session_unregisters_on_every_exit(exit_by: str) -> None:
    async with Registry() as registry:
        conns: list[Connection] = []
        with anyio.CancelScope() as scope:
            try:
                async with registry.session(
                    RecordingTransport(), key="k", groups=["a", "b"]
                ) as conn:
                    conns.append(conn)
                    assert registry.lookup("k") == (conn,)
                    if exit_by == "exception":
                        raise ValueError("handler failed")
                    if exit_by == "cancel":
                        scope.cancel()
                        await anyio.sleep(TIMEOUT)
            except ValueError:
                assert exit_by == "exception"
        (conn,) = conns
        _assert_gone(registry, conn)
        assert registry.stats().connections == 0
        assert registry.stats().groups == 0


async def test_concurrent_churn_never_raises_nor_skips_stable_connections() -> None:
    async with Registry() as registry:
        stable = [RecordingTransport() for _ in range(20)]
        for i, transport in enumerate(stable):
            await registry.connect(transport, key=f"stable-{i % 5}", groups=["room"])
        rounds = 300
        counts: list[int] = []

        async def churn(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(rounds):
                key = f"stable-{rng.randrange(5)}"  # share keys with the stable ones
                conn = await registry.connect(RecordingTransport(), key=key, groups=["room"])
                if rng.random() < 0.5:
                    await registry.join(conn, "other")
                await registry.disconnect(conn)
                await registry.disconnect(conn)

        async def broadcaster() -> None:
            for i in range(rounds):
                counts.append(await registry.broadcast(str(i), group="room"))
                counts.append(await registry.send(f"stable-{i % 5}", f"k{i}"))

        with anyio.fail_after(TIMEOUT * 2):
            async with anyio.create_task_group() as tg:
                for seed in range(8):
                    tg.start_soon(churn, seed)
                tg.start_soon(broadcaster)
            for transport in stable:
                await transport.wait_for(rounds + rounds // 5)
        assert all(n >= 4 for n in counts)  # at least the stable members each time
        for i, transport in enumerate(stable):
            expected = []
            for r in range(rounds):
                expected.append(str(r))
                if r % 5 == i % 5:
                    expected.append(f"k{r}")
            assert transport.sent == expected
        stats = registry.stats()
        assert stats.connections == 20
        assert stats.groups == 1
