"""The direct path into uvicorn: found only where it is provably the ASGI send."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from wsregistry.adapters._frames import frame
from wsregistry.adapters._uvicorn_direct import DirectPath, find_direct_path

from ..helpers import TIMEOUT
from ..servers import bound_socket

pytestmark = pytest.mark.anyio

IMPLEMENTATIONS = ["websockets-sansio", "websockets", "wsproto"]


class Probe:
    """An endpoint that records the direct path of each accepted socket and writes through it."""

    def __init__(self, *, compressed: bool = False) -> None:
        self.paths: list[DirectPath | None] = []
        self.compressed = compressed
        self.writable_when_compressed: bool | None = None

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        path = find_direct_path(websocket._send)
        if self.compressed:
            self.paths.append(path)
            await websocket.send_text("asgi text")  # the handshake is complete after it
            await websocket.send_bytes(b"asgi bytes")
            self.writable_when_compressed = path is not None and path.writable()
            await websocket.receive()
            return
        self.paths.append(path)
        with anyio.fail_after(TIMEOUT):  # the legacy implementation completes the
            while path is not None and not path.writable():  # noqa: ASYNC110 - handshake later
                await anyio.sleep(0.001)
        if path is not None:
            path.write(frame("direct text"))
            path.write(frame(b"direct bytes"))
        await websocket.send_text("asgi text")
        await websocket.send_bytes(b"asgi bytes")
        await websocket.receive()  # until the client goes


def _apps(probe: Probe) -> dict[str, Any]:
    fastapi = FastAPI()
    fastapi.add_api_websocket_route("/ws", probe.endpoint)
    return {
        "starlette": Starlette(routes=[WebSocketRoute("/ws", probe.endpoint)]),
        "fastapi": fastapi,
    }


async def _serve_once(app: Any, ws: str, client: Callable[[str], Awaitable[None]]) -> None:
    with bound_socket() as sock:
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, ws=ws, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(TIMEOUT):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                    await anyio.sleep(0.005)
                await client(f"ws://127.0.0.1:{port}/ws")
            server.should_exit = True


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_found_on_every_implementation_and_frames_arrive_like_asgi_ones(
    ws: str, framework: str
) -> None:
    probe = Probe()

    async def client(url: str) -> None:
        async with connect(url, compression=None) as conn:
            got = [await conn.recv() for _ in range(4)]
        assert got == ["direct text", b"direct bytes", "asgi text", b"asgi bytes"]

    await _serve_once(_apps(probe)[framework], ws, client)
    (path,) = probe.paths
    assert path is not None
    assert path.implementation == ws


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_off_when_permessage_deflate_was_negotiated(ws: str) -> None:
    probe = Probe(compressed=True)

    async def client(url: str) -> None:
        async with connect(url) as conn:  # offers permessage-deflate; uvicorn accepts it
            got = [await conn.recv() for _ in range(2)]
        assert got == ["asgi text", b"asgi bytes"]

    await _serve_once(_apps(probe)["starlette"], ws, client)
    (path,) = probe.paths
    assert path is not None  # the protocol is known, but compressed frames are uvicorn's
    assert probe.writable_when_compressed is False


async def test_off_under_a_middleware_that_wraps_send() -> None:
    probe = Probe()
    seen: list[str] = []
    inner = _apps(probe)["starlette"]

    async def observing(scope: Any, receive: Any, send: Any) -> None:
        async def observed_send(message: Any) -> None:
            seen.append(message["type"])
            await send(message)

        await inner(scope, receive, observed_send)

    async def client(url: str) -> None:
        async with connect(url, compression=None) as conn:
            got = [await conn.recv() for _ in range(2)]
        assert got == ["asgi text", b"asgi bytes"]

    await _serve_once(observing, "websockets-sansio", client)
    assert probe.paths == [None]
    assert seen == ["websocket.accept", "websocket.send", "websocket.send"]


async def test_off_for_an_unknown_uvicorn_version_or_when_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = Probe()

    async def client(url: str) -> None:
        async with connect(url, compression=None) as conn:
            await conn.recv()

    monkeypatch.setattr(uvicorn, "__version__", "9.0.0")
    await _serve_once(_apps(probe)["starlette"], "websockets-sansio", client)
    monkeypatch.setattr(uvicorn, "__version__", "0.54.0")
    monkeypatch.setenv("WSREGISTRY_UVICORN_DIRECT", "0")
    await _serve_once(_apps(probe)["starlette"], "websockets-sansio", client)
    assert probe.paths == [None, None]
