"""One behaviour suite for every served stack: uvicorn (three WebSocket
implementations) with Starlette and FastAPI, and the plain ``websockets`` server."""

from __future__ import annotations

import json
import os
import socket
import struct

import anyio
import anyio.lowlevel
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsregistry import CloseCode, Connection, Registry

from ..helpers import TIMEOUT
from ._harness import KINDS, LEGACY, Harness, recv_json

pytestmark = pytest.mark.anyio


async def expect_close(client: ClientConnection) -> int | None:
    """Read until the connection closes; returns the close code the server sent."""
    with anyio.fail_after(TIMEOUT):
        try:
            while True:
                await client.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


async def test_send_reaches_every_tab_of_the_key_and_nobody_else(kind: str) -> None:
    async with Harness(kind) as h:
        tab1 = await h.connect("alice")
        tab2 = await h.connect("alice", groups=("admins",))
        bob = await h.connect("bob", groups=("admins",))
        assert await h.registry.send("alice", {"n": 1}) == 2
        assert await recv_json(tab1) == {"n": 1}
        assert await recv_json(tab2) == {"n": 1}
        assert await h.registry.send("bob", {"marker": True}) == 1
        assert await recv_json(bob) == {"marker": True}  # bob got nothing before this

        assert await h.registry.broadcast({"all": 1}) == 3
        assert await h.registry.broadcast("admins only", group="admins") == 2
        assert await recv_json(tab1) == {"all": 1}
        assert await recv_json(tab2) == {"all": 1}
        assert await recv_json(bob) == {"all": 1}
        with anyio.fail_after(TIMEOUT):
            assert await tab2.recv() == "admins only"
            assert await bob.recv() == "admins only"
        await h.registry.send("alice", b"\x00binary")
        with anyio.fail_after(TIMEOUT):
            assert await tab1.recv() == b"\x00binary"
        for client in (tab1, tab2, bob):
            await client.close()
        await h.wait_disconnected(3)
        assert h.registry.stats().connections == 0


async def test_inbound_messages_reach_the_application_in_order(kind: str) -> None:
    received: list[tuple[str | int, str | bytes]] = []

    async def on_message(conn: Connection, data: str | bytes) -> None:
        received.append((conn.key, data))
        await conn.send({"echo": data if isinstance(data, str) else data.hex()})

    async with Harness(kind, on_message=on_message) as h:
        client = await h.connect("carol")
        for i in range(20):
            await client.send(f"m{i}")
        await client.send(b"\x01\x02")
        for i in range(20):
            assert await recv_json(client) == {"echo": f"m{i}"}
        assert await recv_json(client) == {"echo": "0102"}
        assert received == [("carol", f"m{i}") for i in range(20)] + [("carol", b"\x01\x02")]
        await client.close()


@pytest.mark.parametrize(
    ("refusal", "user", "origin", "status", "code"),
    [
        ("http", "bad", None, 403, CloseCode.UNAUTHORIZED),
        ("http", "dave", "https://evil.example", 403, CloseCode.FORBIDDEN),
        ("close", "bad", None, None, CloseCode.UNAUTHORIZED),
        ("close", "dave", "https://evil.example", None, CloseCode.FORBIDDEN),
    ],
)
async def test_refused_handshakes_get_the_documented_answer_and_are_never_registered(
    kind: str, refusal: str, user: str, origin: str | None, status: int | None, code: int
) -> None:
    async with Harness(kind, refusal=refusal, allowed_origins=["https://App.Example:443"]) as h:
        if status is not None:
            with pytest.raises(InvalidStatus) as info:
                await h.connect(user, origin=origin, welcome=False)
            assert info.value.response.status_code == status
        else:
            client = await h.connect(user, origin=origin, welcome=False)
            assert await expect_close(client) == code
        # allowed after normalisation (case, default port) and when Origin is missing
        ok = await h.connect("erin", origin="https://app.example")
        ok2 = await h.connect("erin")
        assert h.registry.stats().connections == 2
        assert {c.key for c in h.registry.connections()} == {"erin"}
        assert h.disconnected == []
        await ok.close()
        await ok2.close()


async def test_missing_origin_can_be_refused(kind: str) -> None:
    async with Harness(
        kind, allowed_origins=["https://app.example"], allow_missing_origin=False
    ) as h:
        with pytest.raises(InvalidStatus) as info:
            await h.connect("frank", welcome=False)
        assert info.value.response.status_code == 403
        client = await h.connect("frank", origin="https://app.example")
        await client.close()


@pytest.mark.parametrize("refusal", ["http", "close"])
async def test_connection_limit_rejects_the_new_connection(kind: str, refusal: str) -> None:
    async with Harness(kind, refusal=refusal, max_connections_per_key=2) as h:
        first = await h.connect("gina")
        second = await h.connect("gina")
        if refusal == "http":
            with pytest.raises(InvalidStatus) as info:
                await h.connect("gina", welcome=False)
            assert info.value.response.status_code == 429
        else:
            third = await h.connect("gina", welcome=False)
            assert await expect_close(third) == CloseCode.TOO_MANY_CONNECTIONS
        assert len(h.registry.lookup("gina")) == 2
        other = await h.connect("hank")  # other keys are not limited
        await h.registry.send("gina", "still here")
        with anyio.fail_after(TIMEOUT):
            assert await first.recv() == "still here"
            assert await second.recv() == "still here"
        for client in (first, second, other):
            await client.close()


async def test_connection_limit_can_evict_the_oldest(kind: str) -> None:
    async with Harness(kind, max_connections_per_key=2, limit_policy="evict_oldest") as h:
        oldest = await h.connect("ivan")
        middle = await h.connect("ivan")
        newest = await h.connect("ivan")
        assert await expect_close(oldest) == CloseCode.TOO_MANY_CONNECTIONS
        assert len(h.registry.lookup("ivan")) == 2
        await h.registry.send("ivan", "hi")
        with anyio.fail_after(TIMEOUT):
            assert await middle.recv() == "hi"
            assert await newest.recv() == "hi"
        await middle.close()
        await newest.close()


async def test_oversize_message_closes_with_1009_and_unregisters(kind: str) -> None:
    async with Harness(kind, max_message_size=1024) as h:
        client = await h.connect("judy")
        await client.send("x" * 1024)  # at the limit: fine
        await client.send("é" * 600)  # 1200 bytes in UTF-8
        assert await expect_close(client) == CloseCode.MESSAGE_TOO_BIG
        await h.wait_disconnected(1)
        assert not h.registry.lookup("judy")


async def test_tcp_reset_unregisters_within_a_bound(kind: str) -> None:
    async with Harness(kind) as h:
        client = await h.connect("ken")
        keep = await h.connect("ken")
        sock = client.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.transport.abort()  # RST, no close frame
        await h.wait_disconnected(1)
        assert len(h.registry.lookup("ken")) == 1
        await h.registry.send("ken", "survivor")
        with anyio.fail_after(TIMEOUT):
            assert await keep.recv() == "survivor"
        await keep.close()


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in LEGACY], indirect=True)
async def test_half_open_peer_is_dropped_by_the_server_ping(kind: str) -> None:
    # uvicorn's legacy "websockets" implementation reports the ping timeout only
    # after its fixed 10 s close timeout (documented); the app-level heartbeat
    # test below covers it.
    registry = Registry(close_timeout=0.5)
    async with Harness(kind, registry=registry, ping=(0.2, 0.3)) as h:
        client = await h.connect("lena", ping_interval=None)
        client.transport.pause_reading()  # never answers pings again: a half-open peer
        await h.wait_disconnected(1)
        assert not h.registry.lookup("lena")
        client.transport.abort()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "websockets"], indirect=True)
async def test_half_open_peer_is_dropped_by_the_app_heartbeat(kind: str) -> None:
    async with Harness(
        kind,
        ping=(None, None),  # no protocol pings: the endpoint's heartbeat must do it
        heartbeat_interval=0.2,
        heartbeat_timeout=TIMEOUT / 5,  # generous: the live client must answer in time
        heartbeat_message={"type": "ping"},
    ) as h:
        alive = await h.connect("lena", ping_interval=None)
        silent = await h.connect("mo", ping_interval=None)
        silent.transport.pause_reading()
        (mo,) = h.registry.lookup("mo")
        with anyio.fail_after(TIMEOUT):
            for _ in range(2):  # the live client answers every ping
                assert await recv_json(alive) == {"type": "ping"}
                await alive.send('{"type":"pong"}')
        with anyio.fail_after(TIMEOUT):
            await mo.wait_closed()
        assert mo.close_code == CloseCode.INTERNAL_ERROR
        assert len(h.registry.lookup("lena")) == 1
        silent.transport.abort()
        await alive.close()


async def test_handler_exception_closes_1011_and_unregisters(kind: str) -> None:
    async def on_message(conn: Connection, data: str | bytes) -> None:
        raise RuntimeError("application bug")

    async with Harness(kind, on_message=on_message) as h:
        client = await h.connect("mia")
        await client.send("boom")
        assert await expect_close(client) == CloseCode.INTERNAL_ERROR
        await h.wait_disconnected(1)
        assert h.disconnected[0].key == "mia"
        assert not h.registry.lookup("mia")


async def test_stalled_client_does_not_hold_back_healthy_ones(kind: str) -> None:
    count, size = 120, 16 * 1024
    registry = Registry(max_queue_bytes=128 * 1024, close_timeout=0.5)
    async with Harness(kind, registry=registry) as h:
        healthy = [await h.connect(f"ok{i}") for i in range(2)]
        stalled = await h.connect(
            "stalled",
            sock=_small_rcvbuf_socket(h.port),
            ping_interval=None,
            compression=None,
        )
        stalled.transport.pause_reading()  # never reads again
        (stalled_conn,) = h.registry.lookup("stalled")
        got: dict[int, list[bytes]] = {0: [], 1: []}

        async def read(i: int) -> None:
            while len(got[i]) < count:
                data = await healthy[i].recv()
                assert isinstance(data, bytes)
                got[i].append(data)

        payloads = [struct.pack("!I", n) + os.urandom(size) for n in range(count)]
        with anyio.fail_after(TIMEOUT * 3):
            async with anyio.create_task_group() as readers:
                for i in range(2):
                    readers.start_soon(read, i)
                for payload in payloads:
                    await h.registry.broadcast(payload)
        assert got[0] == payloads
        assert got[1] == payloads
        with anyio.fail_after(TIMEOUT):
            await stalled_conn.wait_closed()
        assert stalled_conn.close_code == CloseCode.TRY_AGAIN_LATER
        stats = h.registry.stats()
        assert stats.slow_consumer_closes == 1
        assert stats.connections == 2
        stalled.transport.abort()
        for client in healthy:
            await client.close()


def _small_rcvbuf_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_shutdown_delivers_queued_messages_then_closes_1001(kind: str) -> None:
    h = Harness(kind)
    async with h:
        clients = [await h.connect(f"user{i}") for i in range(3)]
        for n in range(50):
            await h.registry.broadcast({"n": n, "pad": "x" * 2000})
        received: dict[int, list[int]] = {i: [] for i in range(3)}
        codes: dict[int, int | None] = {}

        async def read(i: int) -> None:
            try:
                while True:
                    received[i].append(json.loads(await clients[i].recv())["n"])
            except ConnectionClosed as exc:
                codes[i] = exc.rcvd.code if exc.rcvd is not None else None

        async with anyio.create_task_group() as readers:
            for i in range(3):
                readers.start_soon(read, i)
            await h.stop()
    assert codes == dict.fromkeys(range(3), CloseCode.GOING_AWAY)
    assert received == {i: list(range(50)) for i in range(3)}
    assert h.registry.stats().connections == 0
    assert len(h.disconnected) == 3


async def test_concurrent_connects_and_disconnects_while_broadcasting(kind: str) -> None:
    async with Harness(kind) as h:
        stop = anyio.Event()
        broadcasts = 0

        async def broadcaster() -> None:
            nonlocal broadcasts
            while not stop.is_set():
                await h.registry.broadcast({"tick": broadcasts})
                await h.registry.broadcast("room", group="room")
                broadcasts += 1
                await anyio.lowlevel.checkpoint()

        async def churn(i: int) -> None:
            for round_ in range(4):
                # a broadcast may overtake the welcome: any message proves delivery
                client = await h.connect(f"churn{i % 3}", groups=("room",), welcome=False)
                await client.recv()
                if round_ % 2:
                    client.transport.abort()
                else:
                    await client.close()

        with anyio.fail_after(TIMEOUT * 3):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(broadcaster)
                async with anyio.create_task_group() as churners:
                    for i in range(8):
                        churners.start_soon(churn, i)
                stop.set()
        assert broadcasts > 0
        await h.wait_disconnected(32)  # every handler finished
        stats = h.registry.stats()
        assert (stats.connections, stats.keys, stats.groups) == (0, 0, 0)


async def test_a_hook_may_close_its_own_connection(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_message(conn: Connection, data: str | bytes) -> None:
        await conn.close(4000, "bye")
        await conn.send("too late")  # raises ConnectionClosed: not an application error

    async with Harness(kind, on_message=on_message) as h:
        client = await h.connect("nia")
        await client.send("leave")
        assert await expect_close(client) == 4000
        await h.wait_disconnected(1)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
