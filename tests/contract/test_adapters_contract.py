"""Black-box tests of the adapters with real uvicorn / websockets servers and clients.

Written from DESIGN.md ("Adapters must") and the adapters' module docstrings only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import APIRouter, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wsregistry import Connection, Registry
from wsregistry.adapters.fastapi import RegistryDep, registry_lifespan
from wsregistry.adapters.starlette import Identity, RegistryEndpoint
from wsregistry.adapters.websockets import serve

from .support import run_uvicorn, until

pytestmark = pytest.mark.anyio

ORIGIN = "https://app.example.com"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def token_auth(ws: Any) -> Identity | None:
    # Starlette WebSocket has query_params; websockets ServerConnection has request.path
    if hasattr(ws, "query_params"):
        token = ws.query_params.get("token")
    else:
        path = ws.request.path
        token = path.split("token=", 1)[1] if "token=" in path else None
    if not token:
        return None
    return Identity(key=token, groups={"lobby"}, metadata={"via": "token"})


async def drain(ws: Any) -> None:
    """Read until the connection closes (raises ``ConnectionClosed``)."""
    while True:
        await ws.recv()


def starlette_app(registry: Registry, **options: Any) -> Starlette:
    async def on_message(conn: Connection, data: str | bytes) -> None:
        await registry.broadcast({"from": conn.key, "data": data}, group="lobby")

    endpoint = RegistryEndpoint(registry, authenticate=token_auth, on_message=on_message, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)


@pytest.mark.parametrize("ws_impl", ["auto", "websockets-sansio", "wsproto"])
async def test_starlette_accept_send_receive_cleanup(ws_impl: str) -> None:
    registry = Registry()
    async with run_uvicorn(starlette_app(registry), ws=ws_impl) as port:
        url = f"ws://127.0.0.1:{port}/ws?token=alice"
        async with connect(url) as c1, connect(url) as c2:
            await until(lambda: len(registry.lookup("alice")) == 2)
            conn = registry.lookup("alice")[0]
            assert conn.metadata["via"] == "token"
            assert "lobby" in conn.groups
            assert await registry.send("alice", {"type": "notice"}) == 2
            assert json.loads(await c1.recv()) == {"type": "notice"}
            assert json.loads(await c2.recv()) == {"type": "notice"}
            await registry.send("alice", b"\x01\x02")
            assert await c1.recv() == b"\x01\x02"
            assert await c2.recv() == b"\x01\x02"
            await c1.send("hi")
            assert json.loads(await c2.recv()) == {"from": "alice", "data": "hi"}
        await until(lambda: registry.lookup("alice") == ())
        assert registry.stats().connections == 0
        assert registry.stats().groups == 0


@pytest.mark.parametrize("ws_impl", ["auto", "websockets-sansio", "wsproto"])
async def test_starlette_refuses_before_accept_with_403(ws_impl: str) -> None:
    registry = Registry()
    app = starlette_app(registry, allowed_origins=[ORIGIN])
    async with run_uvicorn(app, ws=ws_impl) as port:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/ws"):
                pass
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            async with connect(
                f"ws://127.0.0.1:{port}/ws?token=bob",
                origin="https://evil.example",  # type: ignore[arg-type]
            ):
                pass
        assert info.value.response.status_code == 403
        async with connect(f"ws://127.0.0.1:{port}/ws?token=bob", origin=ORIGIN):  # type: ignore[arg-type]
            await until(lambda: len(registry.lookup("bob")) == 1)
        await until(lambda: registry.stats().connections == 0)


async def test_starlette_close_mode_uses_1008_or_44xx() -> None:
    registry = Registry()
    async with run_uvicorn(starlette_app(registry, refusal="close")) as port:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        rcvd = info.value.rcvd
        assert rcvd is not None
        assert rcvd.code == 1008 or 4400 <= rcvd.code < 4500


async def test_starlette_inbound_size_limit() -> None:
    registry = Registry()
    async with run_uvicorn(starlette_app(registry, max_message_size=1000)) as port:
        async with connect(f"ws://127.0.0.1:{port}/ws?token=big") as ws:
            await until(lambda: len(registry.lookup("big")) == 1)
            await ws.send("x" * 5000)
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009
        await until(lambda: registry.lookup("big") == ())


async def test_starlette_tcp_reset_unregisters() -> None:
    registry = Registry()
    async with run_uvicorn(starlette_app(registry)) as port:
        ws = await connect(f"ws://127.0.0.1:{port}/ws?token=rst")
        await until(lambda: len(registry.lookup("rst")) == 1)
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.transport.abort()
        await until(lambda: registry.lookup("rst") == ())


async def test_uvicorn_server_shutdown_closes_with_1001() -> None:
    registry = Registry()
    app = starlette_app(registry)
    got: list[Any] = []
    async with run_uvicorn(app, registry=registry) as port:
        ws = await connect(f"ws://127.0.0.1:{port}/ws?token=bye")
        await until(lambda: len(registry.lookup("bye")) == 1)
        await registry.send("bye", "last words")
    got.append(await ws.recv())
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert got == ["last words"]
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001


async def test_fastapi_lifespan_dependency_and_route() -> None:
    registry = Registry()
    chat = RegistryEndpoint(registry, authenticate=token_auth)
    router = APIRouter()
    router.add_api_websocket_route("/ws", chat.handle)

    @router.post("/notify/{user_id}")
    async def notify(user_id: str, registry: RegistryDep) -> dict[str, int]:
        return {"delivered": await registry.send(user_id, {"type": "notice"})}

    @router.websocket("/own")
    async def own(websocket: WebSocket) -> None:
        await chat.handle(websocket)

    app = FastAPI(lifespan=registry_lifespan(registry))
    app.include_router(router)
    async with run_uvicorn(app) as port:
        async with (
            connect(f"ws://127.0.0.1:{port}/ws?token=42") as a,
            connect(f"ws://127.0.0.1:{port}/own?token=42") as b,
        ):
            await until(lambda: len(registry.lookup("42")) == 2)
            async with httpx.AsyncClient() as http:
                r = await http.post(f"http://127.0.0.1:{port}/notify/42")
            assert r.json() == {"delivered": 2}
            assert json.loads(await a.recv()) == {"type": "notice"}
            assert json.loads(await b.recv()) == {"type": "notice"}
        await until(lambda: registry.stats().connections == 0)
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/ws"):
                pass
        assert info.value.response.status_code == 403


async def test_websockets_serve_end_to_end() -> None:
    async with Registry() as registry:

        async def on_message(conn: Connection, data: str | bytes) -> None:
            await registry.broadcast(data, exclude=conn)

        async with serve(
            registry,
            "127.0.0.1",
            0,
            authenticate=token_auth,
            on_message=on_message,
            allowed_origins=[ORIGIN],
            max_message_size=1000,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            base = f"ws://127.0.0.1:{port}/ws"
            with pytest.raises(InvalidStatus) as info:
                async with connect(base):
                    pass
            assert info.value.response.status_code == 403
            with pytest.raises(InvalidStatus) as info:
                async with connect(base + "?token=x", origin="https://evil.example"):  # type: ignore[arg-type]
                    pass
            assert info.value.response.status_code == 403
            async with connect(base + "?token=a") as a, connect(base + "?token=b") as b:
                await until(lambda: registry.stats().connections == 2)
                await a.send("hello")
                assert await b.recv() == "hello"
                assert await registry.send("a", {"n": 1}) == 1
                assert json.loads(await a.recv()) == {"n": 1}
                await b.send("y" * 5000)
                with pytest.raises(ConnectionClosed) as closed:
                    await b.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1009
                await until(lambda: registry.lookup("b") == ())
            await until(lambda: registry.stats().connections == 0)
            last = await connect(base + "?token=z")
            await until(lambda: len(registry.lookup("z")) == 1)
            await registry.send("z", "bye")
        assert await last.recv() == "bye"
        with pytest.raises(ConnectionClosed) as closed:
            await last.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001


async def test_websockets_heartbeat_drops_silent_peer() -> None:
    async with (
        Registry(close_timeout=0.5) as registry,
        serve(
            registry, "127.0.0.1", 0, authenticate=token_auth, ping_interval=0.2, ping_timeout=0.2
        ) as server,
    ):
        port = next(iter(server.sockets)).getsockname()[1]
        # a raw client that completes the handshake and then never reads again
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(
            b"GET /ws?token=mute HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            await until(lambda: len(registry.lookup("mute")) == 1)
            await until(lambda: registry.lookup("mute") == (), limit=5)
        finally:
            s.close()


async def test_websockets_serve_tcp_reset_unregisters() -> None:
    async with (
        Registry() as registry,
        serve(registry, "127.0.0.1", 0, authenticate=token_auth) as server,
    ):
        port = next(iter(server.sockets)).getsockname()[1]
        ws = await connect(f"ws://127.0.0.1:{port}/?token=r")
        await until(lambda: len(registry.lookup("r")) == 1)
        sock = ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ws.transport.abort()
        await until(lambda: registry.lookup("r") == ())


async def test_websockets_transport_by_hand() -> None:
    """The transport wrapping an accepted connection in a user's own handler."""
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    from wsregistry.adapters.websockets import WebsocketsTransport

    async with Registry() as registry:

        async def handler(ws: ServerConnection) -> None:
            async with registry.session(WebsocketsTransport(ws), key="hand") as conn:
                async for msg in ws:
                    await conn.send(msg)

        async with ws_serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as c:
                await c.send("echo")
                assert await c.recv() == "echo"
                await registry.send("hand", [1, 2])
                assert json.loads(await c.recv()) == [1, 2]
            await until(lambda: registry.lookup("hand") == ())


@pytest.mark.parametrize("server_kind", ["uvicorn", "websockets"])
async def test_slow_real_client_does_not_delay_others(server_kind: str) -> None:
    """A real client that stops reading: the others get every message at once; the slow
    one is closed by the overflow policy (1013) once its queue is full."""
    registry = Registry(max_queue_bytes=256 * 1024, drain_timeout=0.5, close_timeout=0.5)

    @contextlib.asynccontextmanager
    async def server() -> AsyncIterator[int]:
        if server_kind == "uvicorn":
            async with run_uvicorn(starlette_app(registry)) as port:
                yield port
        else:
            async with registry, serve(registry, "127.0.0.1", 0, authenticate=token_auth) as srv:
                yield next(iter(srv.sockets)).getsockname()[1]

    async with server() as port:
        base = f"ws://127.0.0.1:{port}/ws"
        # max_queue=1: the client stops reading from TCP as soon as one frame waits; a small
        # receive buffer keeps loopback autotuning (up to 32 MiB here) from hiding the stall
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
        slow = await connect(base + "?token=slow", max_queue=1, sock=raw)
        async with connect(base + "?token=fast", max_size=None) as fast:
            await until(lambda: registry.stats().connections == 2)
            slow_conn = registry.lookup("slow")[0]
            received = 0
            with anyio.fail_after(10):
                # random payloads: permessage-deflate would shrink repeated ones to nothing
                for i in range(800):  # 13 MB: far more than the socket buffers + queue bound
                    await registry.broadcast(i.to_bytes(4, "big") + os.urandom(16_384))
                    if i % 50 == 49:
                        while received <= i:
                            msg = await fast.recv()
                            assert msg[:4] == received.to_bytes(4, "big")
                            received += 1
                assert received == 800
            await until(lambda: slow_conn.closed, limit=5)
            assert registry.stats().slow_consumer_closes == 1
            assert slow_conn.close_code == 1013
        slow.transport.abort()


async def test_starlette_hooks_app_heartbeat_and_handler_errors() -> None:
    registry = Registry()
    events: list[tuple[str, Any]] = []

    async def on_connect(conn: Connection) -> None:
        events.append(("connect", conn.key))

    async def on_disconnect(conn: Connection) -> None:
        events.append(("disconnect", conn.key))

    async def on_message(conn: Connection, data: str | bytes) -> None:
        if data == "boom":
            raise RuntimeError("application bug")

    endpoint = RegistryEndpoint(
        registry,
        authenticate=token_auth,
        on_message=on_message,
        on_connect=on_connect,
        on_disconnect=on_disconnect,
        heartbeat_interval=0.1,
        heartbeat_timeout=0.3,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
    async with run_uvicorn(app) as port:
        async with connect(f"ws://127.0.0.1:{port}/ws?token=err") as ws:
            await until(lambda: ("connect", "err") in events)
            await ws.send("boom")
            with pytest.raises(ConnectionClosed) as info:
                await drain(ws)  # heartbeats may arrive first
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1011
        await until(lambda: ("disconnect", "err") in events)
        assert registry.lookup("err") == ()
        # a peer that never answers the app-level heartbeat is closed with 1011
        async with connect(f"ws://127.0.0.1:{port}/ws?token=mute", max_queue=None) as mute:
            await until(lambda: len(registry.lookup("mute")) == 1)
            await until(lambda: registry.lookup("mute") == (), limit=3)
            with pytest.raises(ConnectionClosed) as info:
                await drain(mute)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1011
        # a peer that answers stays
        async with connect(f"ws://127.0.0.1:{port}/ws?token=chatty") as chatty:
            await until(lambda: len(registry.lookup("chatty")) == 1)
            with anyio.move_on_after(0.8):
                while True:
                    await chatty.recv()
                    await chatty.send("pong")
            assert len(registry.lookup("chatty")) == 1
        await until(lambda: events.count(("disconnect", "chatty")) == 1)
        assert events.count(("connect", "chatty")) == 1


async def test_websockets_handler_without_process_request_closes_1008() -> None:
    from websockets.asyncio.server import serve as ws_serve

    from wsregistry.adapters.websockets import RegistryHandler

    async with Registry() as registry:
        handler = RegistryHandler(registry, authenticate=token_auth)
        async with ws_serve(handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/") as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await drain(ws)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008
            async with connect(f"ws://127.0.0.1:{port}/?token=ok") as ok:
                await until(lambda: len(registry.lookup("ok")) == 1)
                await registry.send("ok", "hello")
                assert await ok.recv() == "hello"
            await until(lambda: registry.stats().connections == 0)


@pytest.mark.parametrize("server_kind", ["uvicorn", "websockets"])
async def test_connection_limit_per_key(server_kind: str) -> None:
    registry = Registry()

    @contextlib.asynccontextmanager
    async def server(**options: Any) -> AsyncIterator[int]:
        if server_kind == "uvicorn":
            async with run_uvicorn(starlette_app(registry, **options)) as port:
                yield port
        else:
            async with (
                registry,
                serve(registry, "127.0.0.1", 0, authenticate=token_auth, **options) as srv,
            ):
                yield next(iter(srv.sockets)).getsockname()[1]

    async with server(max_connections_per_key=1) as port:
        url = f"ws://127.0.0.1:{port}/ws?token=one"
        async with connect(url):
            await until(lambda: len(registry.lookup("one")) == 1)
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 429
            assert len(registry.lookup("one")) == 1


HANDSHAKE = (
    b"GET /ws?token=mute HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("ws_impl", ["auto", "wsproto"])
async def test_uvicorn_protocol_pings_drop_a_silent_peer(ws_impl: str) -> None:
    registry = Registry()
    app = starlette_app(registry)
    async with run_uvicorn(app, ws=ws_impl, ws_ping_interval=0.2, ws_ping_timeout=0.2) as port:
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(HANDSHAKE)
            await until(lambda: len(registry.lookup("mute")) == 1)
            await until(lambda: registry.lookup("mute") == (), limit=5)
        finally:
            s.close()


async def test_registry_not_running_answers_503() -> None:
    registry = Registry()  # never started: the app has no lifespan
    endpoint = RegistryEndpoint(registry, authenticate=token_auth)
    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with run_uvicorn(app) as port:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/ws?token=a"):
                pass
        assert info.value.response.status_code == 503


async def test_starlette_subprotocol_and_binary_inbound() -> None:
    registry = Registry()
    inbound: list[str | bytes] = []

    async def on_message(conn: Connection, data: str | bytes) -> None:
        inbound.append(data)

    endpoint = RegistryEndpoint(
        registry, authenticate=token_auth, on_message=on_message, subprotocols=["chat.v2", "chat"]
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
    async with (
        run_uvicorn(app) as port,
        connect(
            f"ws://127.0.0.1:{port}/ws?token=p",
            subprotocols=["chat"],  # type: ignore[list-item]
        ) as ws,
    ):
        assert ws.subprotocol == "chat"
        await ws.send(b"\x00\xff")
        await ws.send("text")
        await until(lambda: inbound == [b"\x00\xff", "text"])


@pytest.mark.parametrize("drain_first", [False, True])
async def test_server_shutdown_runs_on_disconnect_for_everyone(drain_first: bool) -> None:
    registry = Registry()
    gone: list[Any] = []

    async def on_disconnect(conn: Connection) -> None:
        gone.append(conn.key)

    endpoint = RegistryEndpoint(registry, authenticate=token_auth, on_disconnect=on_disconnect)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
    clients = []
    async with run_uvicorn(app, registry=registry if drain_first else None) as port:
        for name in ("a", "b", "c"):
            clients.append(await connect(f"ws://127.0.0.1:{port}/ws?token={name}"))
        await until(lambda: registry.stats().connections == 3)
    assert sorted(gone) == ["a", "b", "c"]
    assert registry.stats().connections == 0
    for ws in clients:
        with pytest.raises(ConnectionClosed) as info:
            await drain(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == (1001 if drain_first else 1012)


@pytest.mark.parametrize("server_kind", ["uvicorn", "websockets"])
async def test_order_reaches_a_real_client(server_kind: str) -> None:
    registry = Registry()

    @contextlib.asynccontextmanager
    async def server() -> AsyncIterator[int]:
        if server_kind == "uvicorn":
            async with run_uvicorn(starlette_app(registry)) as port:
                yield port
        else:
            async with (
                registry,
                serve(registry, "127.0.0.1", 0, authenticate=token_auth) as srv,
            ):
                yield next(iter(srv.sockets)).getsockname()[1]

    async with server() as port, connect(f"ws://127.0.0.1:{port}/ws?token=o") as ws:
        await until(lambda: len(registry.lookup("o")) == 1)
        conn = registry.lookup("o")[0]
        for i in range(900):
            kind = i % 3
            if kind == 0:
                await registry.send("o", {"i": i})
            elif kind == 1:
                await registry.broadcast({"i": i}, group="lobby")
            else:
                await conn.send({"i": i})
        got = [json.loads(await ws.recv())["i"] for _ in range(900)]
        assert got == list(range(900))
