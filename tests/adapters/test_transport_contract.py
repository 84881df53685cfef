"""The transport contract (:func:`wsregistry.contracts.check_transport`) on the real
transports: ``WebsocketsTransport`` on a ``websockets`` server and
``StarletteTransport`` under uvicorn, each with a real ``websockets`` client as the peer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from tests.helpers import TIMEOUT
from tests.servers import serve as serve_uvicorn
from wsregistry.adapters.starlette import StarletteTransport
from wsregistry.adapters.websockets import WebsocketsTransport
from wsregistry.contracts import ConnectedTransport, check_transport
from wsregistry.transport import Transport

pytestmark = pytest.mark.anyio


def peer_of(transport: Transport, client: ClientConnection) -> ConnectedTransport:
    """The client is the peer: it reads frames, sees the close code and can vanish."""

    async def wait_closed() -> int | None:
        await client.wait_closed()
        return client.close_code

    async def break_peer() -> None:
        client.transport.abort()  # drop the TCP connection, no closing handshake
        await client.wait_closed()

    return ConnectedTransport(
        transport=transport, receive=client.recv, wait_closed=wait_closed, break_peer=break_peer
    )


async def test_websockets_transport_keeps_the_contract() -> None:
    accepted_send, accepted = anyio.create_memory_object_stream[ServerConnection](1)

    async def handler(connection: ServerConnection) -> None:
        await accepted_send.send(connection)
        await connection.wait_closed()

    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                connection = await accepted.receive()
                yield peer_of(WebsocketsTransport(connection), client)

    with accepted_send, accepted:
        await check_transport(connected, check_timeout=TIMEOUT)


async def test_starlette_transport_under_uvicorn_keeps_the_contract() -> None:
    accepted_send, accepted = anyio.create_memory_object_stream[WebSocket](1)

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await accepted_send.send(websocket)
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        async with connect(f"ws://{address}/ws") as client:
            websocket = await accepted.receive()
            yield peer_of(StarletteTransport(websocket), client)

    with accepted_send, accepted:
        async with serve_uvicorn(app) as address:
            await check_transport(connected, check_timeout=TIMEOUT)
