"""Black-box cluster tests over the shared Redis (DESIGN.md semantics 8), asyncio only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from typing import Any

import anyio
import pytest

from wsregistry import Registry
from wsregistry.backends.redis import RedisBackend
from wsregistry.errors import NotConnected

from .support import Sock, until, until_async

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ns() -> str:
    return "wsr-audit-" + uuid.uuid4().hex[:10]


async def test_two_registries_exactly_once(ns: str) -> None:
    a = Registry(backend=RedisBackend(URL, namespace=ns))
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    async with a, b:
        ta1, ta2, tb = Sock(), Sock(), Sock()
        await a.connect(ta1, key="user-42", groups={"admins"})
        await a.connect(ta2, key=7)
        cb = await b.connect(tb, key="user-42", groups={"admins"})
        # send from a: one local connection counted, b's connection reached too
        assert await a.send("user-42", {"type": "notice"}) == 1
        await until(lambda: len(tb.frames) == 1)
        assert json.loads(tb.frames[0]) == {"type": "notice"}
        # from b to a key that only lives on a
        assert await b.send(7, "hi", require=True) == 0
        await until(lambda: ta2.frames == ["hi"])
        with pytest.raises(NotConnected):
            await b.send("nobody", "x", require=True)
        assert await b.is_online(7)
        assert await a.is_online("user-42")
        assert not await a.is_online("nobody")
        await b.broadcast("all")
        await b.broadcast("adm", group="admins", exclude=cb)
        await until(lambda: ta1.frames[-1:] == ["adm"] and "all" in ta2.frames)
        await until(lambda: "all" in tb.frames)
        # exactly once: give the broker time to deliver any duplicate
        await a.send("user-42", "ping-1")
        await b.send("user-42", "ping-2")
        await until(lambda: tb.frames.count("ping-2") == 1 and ta1.frames.count("ping-1") == 1)
        await until(lambda: tb.frames.count("ping-1") == 1 and ta1.frames.count("ping-2") == 1)
        marker_a, marker_b = Sock(), Sock()
        await a.connect(marker_a, key="m")
        await b.connect(marker_b, key="m")
        await a.send("m", "fence")
        await until(lambda: marker_b.frames == ["fence"])
        assert tb.frames.count("ping-1") == 1
        assert tb.frames.count("ping-2") == 1
        assert ta1.frames.count("ping-1") == 1
        assert ta1.frames.count("ping-2") == 1
        assert tb.frames.count("adm") == 0
        assert a.stats().backend_errors == 0
        assert b.stats().backend_errors == 0
        # disconnect on b: presence follows
        await b.disconnect(cb)
        assert await a.is_online("user-42")  # still on a
        assert not await b.is_online("nobody")
    assert tb.closed_with is None  # disconnect does not close the socket
    assert ta1.closed_with is not None
    assert ta1.closed_with[0] == 1001


async def test_presence_follows_disconnect_across_nodes(ns: str) -> None:
    a = Registry(backend=RedisBackend(URL, namespace=ns))
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    async with a, b:
        c = await a.connect(Sock(), key="p")
        assert await b.is_online("p")
        await a.disconnect(c)
        await until_async(lambda: b.is_online("p"), False)


CHILD = textwrap.dedent(
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
            await r.connect(Sock(), key="crashy")
            print("ready", flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


async def test_crashed_process_leaves_presence_within_timeout(ns: str) -> None:
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any await
        [sys.executable, "-c", CHILD, URL, ns], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == "ready"
        async with Registry(backend=RedisBackend(URL, namespace=ns)) as reader:
            assert await reader.is_online("crashy")
            os.kill(proc.pid, signal.SIGKILL)
            # the child's presence_timeout is 3 x 0.2 s
            await until_async(lambda: reader.is_online("crashy"), False, limit=3)
    finally:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_redis(port: int, tmp: str) -> subprocess.Popen[bytes]:
    import redis

    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(1000):
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                import time

                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")
    finally:
        client.close()


async def test_broker_outage_keeps_local_delivery_and_recovers(tmp_path: Any) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _start_redis(port, str(tmp_path))
    try:
        a = Registry(backend=RedisBackend(url, reconnect_backoff=(0.05, 0.2)))
        b = Registry(backend=RedisBackend(url, reconnect_backoff=(0.05, 0.2)))
        async with a, b:
            ta, tb = Sock(), Sock()
            await a.connect(ta, key="local")
            await b.connect(tb, key="remote")
            proc.kill()
            proc.wait()
            await until(lambda: not a.stats().backend.connected, limit=10)
            # local delivery goes on, no exception reaches the app
            assert await a.send("local", "still here") == 1
            assert await a.broadcast("bcast") == 1
            assert await a.send("remote", "lost?") == 0
            await until(lambda: ta.frames == ["still here", "bcast"])
            assert a.stats().backend_errors > 0
            proc = _start_redis(port, str(tmp_path))
            await until(
                lambda: a.stats().backend.connected and b.stats().backend.connected, limit=10
            )
            # presence re-asserted and cross-node delivery back
            await until_async(lambda: a.is_online("remote"), True, limit=10)
            with anyio.fail_after(10):
                while "back" not in tb.frames:
                    await a.send("remote", "back")
                    await anyio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


async def test_edge_keys_and_exclude_by_id_across_nodes(ns: str) -> None:
    a = Registry(backend=RedisBackend(URL, namespace=ns))
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    keys: list[str | int] = [0, "", "x" * 10_000, "ключ-🔑", 7, "7", "a:b*c?[d]"]
    async with a, b:
        socks = {k: Sock() for k in keys}
        conns = {k: await a.connect(socks[k], key=k, groups={"room"}) for k in keys}
        for k in keys:
            assert await b.is_online(k)
            assert await b.send(k, f"to {k!r}", require=True) == 0
        assert not await b.is_online("0")
        await until(lambda: all(socks[k].frames == [f"to {k!r}"] for k in keys))
        # exclude a remote connection by its id
        await b.broadcast("room-msg", group="room", exclude=conns[7].id)
        await until(lambda: all("room-msg" in socks[k].frames for k in keys if k != 7))
        await b.send(7, "fence")
        await until(lambda: socks[7].frames[-1] == "fence")
        assert "room-msg" not in socks[7].frames
        assert socks["7"].frames == ["to '7'", "room-msg"]


async def test_graceful_shutdown_of_a_node_clears_its_presence_at_once(ns: str) -> None:
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    async with b:
        async with Registry(backend=RedisBackend(URL, namespace=ns)) as a:
            await a.connect(Sock(), key="leaving", groups={"g"})
            await a.connect(Sock(), key="leaving")
            assert await b.is_online("leaving")
            assert await b.online_count("leaving") == 2
        # no lease expiry to wait for: a clean exit removes the node's presence
        assert not await b.is_online("leaving")
        assert await b.online_count("leaving") == 0
        assert "leaving" not in await b.online_keys()


async def test_order_across_nodes_and_call_kinds(ns: str) -> None:
    a = Registry(backend=RedisBackend(URL, namespace=ns))
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    async with a, b:
        t = Sock()
        conn = await b.connect(t, key="target", groups={"g"})
        for i in range(600):
            kind = i % 4
            if kind == 0:
                await a.send("target", str(i))
            elif kind == 1:
                await a.broadcast(str(i), group="g")
            elif kind == 2:
                await a.broadcast(str(i))
            else:
                await a.send_to_connection(conn.id, str(i))
        await until(lambda: len(t.frames) >= 600, limit=10)
        assert t.frames == [str(i) for i in range(600)]


async def test_an_outage_is_logged_once_not_per_call(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="wsregistry")
    port = _free_port()
    proc = _start_redis(port, str(tmp_path))
    try:
        backend = RedisBackend(f"redis://127.0.0.1:{port}/0", reconnect_backoff=(0.05, 0.2))
        async with Registry(backend=backend) as registry:
            t = Sock()
            await registry.connect(t, key="k")
            proc.kill()
            proc.wait()
            await until(lambda: not registry.stats().backend.connected)
            for _ in range(50):
                assert await registry.broadcast("x") == 1
            warnings = [
                r
                for r in caplog.records
                if r.levelno >= logging.WARNING and "publish failed" in r.getMessage()
            ]
            assert len(warnings) == 1
            assert registry.stats().backend_errors > 0
            proc = _start_redis(port, str(tmp_path))
            await until(lambda: registry.stats().backend.connected, limit=10)
            await registry.broadcast("y")
            await until(
                lambda: any(
                    "publishing to the backend again" in r.getMessage() for r in caplog.records
                )
            )
    finally:
        proc.kill()
        proc.wait()


async def test_join_and_leave_take_effect_across_nodes_at_once(ns: str) -> None:
    a = Registry(backend=RedisBackend(URL, namespace=ns))
    b = Registry(backend=RedisBackend(URL, namespace=ns))
    async with a, b:
        t = Sock()
        conn = await b.connect(t, key="j")
        for round_ in range(5):
            await b.join(conn, "room")
            await a.broadcast(f"in-{round_}", group="room")  # right after join returned
            await until(lambda r=round_: f"in-{r}" in t.frames)  # type: ignore[misc]
            await b.leave(conn, "room")
            await a.broadcast(f"out-{round_}", group="room")  # right after leave returned
            await a.send("j", f"fence-{round_}")
            await until(lambda r=round_: f"fence-{r}" in t.frames)  # type: ignore[misc]
        assert t.frames == [f for r in range(5) for f in (f"in-{r}", f"fence-{r}")]
