"""The direct path into uvicorn changes nothing on the wire, on every uvicorn implementation.

Each scenario runs twice - direct path on, then off - against a real uvicorn and
a raw TCP client that records every byte after the handshake; the two byte
streams must be identical (frames, order, close frame), and a client that stops
reading must still get everything, in order, once it reads again.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from wsregistry import Registry
from wsregistry.adapters import _uvicorn_direct
from wsregistry.adapters.starlette import Identity, RegistryEndpoint

from ..helpers import TIMEOUT, wait_until
from ..servers import bound_socket

pytestmark = pytest.mark.anyio

IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]


async def _authenticate(websocket: WebSocket) -> Identity:
    return Identity(key=websocket.query_params["user"], groups={"all"})


@asynccontextmanager
async def _server(ws: str, app: Any) -> AsyncIterator[int]:
    with bound_socket() as sock:
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, ws=ws, log_level="warning", lifespan="off", ws_per_message_deflate=False
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(TIMEOUT):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                    await anyio.sleep(0.005)
            try:
                yield port
            finally:
                server.should_exit = True


class RawClient:
    """A WebSocket client on a plain socket: records every byte the server sends."""

    def __init__(self, port: int, user: str, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.port = port
        self.user = user
        self.received = b""

    async def connect(self) -> None:
        self.sock.settimeout(TIMEOUT)
        await anyio.to_thread.run_sync(self.sock.connect, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /?user={self.user} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += await anyio.to_thread.run_sync(self.sock.recv, 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    async def read_until_closed(self) -> bytes:
        def read_all() -> bytes:
            chunks = []
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

        self.received += await anyio.to_thread.run_sync(read_all)
        self.sock.close()
        return self.received


def _messages() -> list[str | bytes]:
    return ["", "x" * 125, "é" * 126, b"\x00\xff" * 40_000, "last"]


async def _scenario(ws: str, *, direct: bool, stalled: bool) -> bytes:
    os.environ["WSREGISTRY_UVICORN_DIRECT"] = "1" if direct else "0"
    registry = Registry(max_queue=10_000, max_queue_bytes=64 * 1024 * 1024)
    endpoint = RegistryEndpoint(registry, authenticate=_authenticate)
    app = Starlette(routes=[WebSocketRoute("/", endpoint)])
    async with registry, _server(ws, app) as port:
        client = RawClient(port, "ann", rcvbuf=4096 if stalled else None)
        await client.connect()
        await wait_until(lambda: bool(registry.lookup("ann")))
        (conn,) = registry.lookup("ann")
        rounds = 100 if stalled else 1
        for n in range(rounds):
            for message in _messages():
                await registry.send("ann", message)
            await registry.broadcast({"n": n}, group="all")
        await conn.send("via conn")
        if stalled:
            await wait_until(lambda: conn.queued > 0)  # back-pressure reached the registry
        with anyio.fail_after(TIMEOUT * 4):
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.close, 4000, "bye")
                received = await client.read_until_closed()
        assert registry.stats().dropped == 0
    return received


DIRECT_WRITES = [0]


@pytest.fixture(autouse=True)
def _count_direct_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSREGISTRY_UVICORN_DIRECT", "1")
    write = _uvicorn_direct.DirectPath.write

    def counted(self: _uvicorn_direct.DirectPath, frame: bytes) -> None:
        DIRECT_WRITES[0] += 1
        write(self, frame)

    monkeypatch.setattr(_uvicorn_direct.DirectPath, "write", counted)


@pytest.mark.parametrize("stalled", [False, True], ids=["reading", "stalled-then-reading"])
@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_the_wire_is_the_same_with_the_direct_path_on_and_off(ws: str, stalled: bool) -> None:
    DIRECT_WRITES[0] = 0
    on = await _scenario(ws, direct=True, stalled=stalled)
    assert DIRECT_WRITES[0] > 0  # the path was taken
    DIRECT_WRITES[0] = 0
    off = await _scenario(ws, direct=False, stalled=stalled)
    assert DIRECT_WRITES[0] == 0
    assert on == off
    # and it ends with our close frame: 4000 "bye"
    assert on.endswith(b"\x88\x05\x0f\xa0bye")


async def test_a_middleware_that_wraps_send_turns_the_path_off_and_sees_every_message() -> None:
    registry = Registry()
    endpoint = RegistryEndpoint(registry, authenticate=_authenticate)
    inner = Starlette(routes=[WebSocketRoute("/", endpoint)])
    seen: list[Any] = []

    async def observing(scope: Any, receive: Any, send: Any) -> None:
        async def observed_send(message: Any) -> None:
            seen.append(message.get("text", message["type"]))
            await send(message)

        await inner(scope, receive, observed_send)

    async with registry, _server("websockets-sansio", observing) as port:
        client = RawClient(port, "ann")
        await client.connect()
        await wait_until(lambda: bool(registry.lookup("ann")))
        (conn,) = registry.lookup("ann")
        for n in range(5):
            await registry.send("ann", f"m{n}")
        await registry.broadcast("all")
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.close, 4000, "bye")
                await client.read_until_closed()
    assert seen == ["websocket.accept", "m0", "m1", "m2", "m3", "m4", "all", "websocket.close"]
