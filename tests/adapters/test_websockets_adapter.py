"""The ``websockets`` adapter specifics: the non-blocking fast path, hand-made servers."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from wsregistry import Connection, Registry
from wsregistry.adapters import Identity
from wsregistry.adapters.websockets import RegistryHandler, WebsocketsTransport
from wsregistry.adapters.websockets import serve as registry_serve

from ..helpers import TIMEOUT
from ._harness import Harness, websockets_auth

pytestmark = pytest.mark.anyio


async def test_send_nowait_writes_until_the_buffer_is_full_then_defers() -> None:
    async with Harness("websockets") as h:
        client = await h.connect("ada", compression=None, ping_interval=None)
        (conn,) = h.registry.lookup("ada")
        transport = conn.transport
        assert isinstance(transport, WebsocketsTransport)
        assert "OPEN" in repr(transport)

        assert transport.send_nowait("fast") is True
        assert transport.send_nowait(b"\x00bin") is True
        with anyio.fail_after(TIMEOUT):
            assert await client.recv() == "fast"
            assert await client.recv() == b"\x00bin"

        client.transport.pause_reading()  # the peer stops reading
        chunk = os.urandom(64 * 1024)
        accepted = 0
        while transport.send_nowait(chunk):  # never blocks; stops once over write_limit
            accepted += 1
            assert accepted < 10_000, "send_nowait never reported a full buffer"
        assert transport.connection.paused
        with anyio.move_on_after(0.2) as waited:  # the slow path waits for the peer
            await transport.send(chunk)
        assert waited.cancelled_caught

        client.transport.resume_reading()
        with anyio.fail_after(TIMEOUT):
            for _ in range(accepted):
                assert await client.recv() == chunk
        await client.close()
        await h.wait_disconnected(1)
        with pytest.raises(ConnectionError, match="CLOSED"):
            transport.send_nowait("late")


async def test_registry_order_holds_across_fast_path_and_queue() -> None:
    registry = Registry(max_queue=100_000, max_queue_bytes=64 * 1024 * 1024)
    async with Harness("websockets", registry=registry) as h:
        client = await h.connect("bea", compression=None)
        client.transport.pause_reading()  # fills the buffer: the registry switches to its queue
        for n in range(2000):
            await registry.send("bea", {"n": n, "pad": "x" * 512})
        (conn,) = registry.lookup("bea")
        assert conn.queued > 0  # some went through the queue, the first ones did not
        client.transport.resume_reading()
        with anyio.fail_after(TIMEOUT * 2):
            got = [json.loads(await client.recv())["n"] for _ in range(2000)]
        assert got == list(range(2000))
        await client.close()


async def test_handler_without_process_request_refuses_after_the_handshake_with_1008() -> None:
    registered = anyio.Event()

    async def on_connect(conn: Connection) -> None:
        registered.set()

    async with Registry() as registry:
        handler = RegistryHandler(registry, authenticate=websockets_auth, on_connect=on_connect)
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/?user=bad") as client:
                with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                    await client.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            async with connect(f"ws://127.0.0.1:{port}/?user=cy") as client:
                with anyio.fail_after(TIMEOUT):  # admitted without process_request too
                    await registered.wait()
                assert [c.key for c in registry.connections()] == ["cy"]


async def test_authenticate_sees_the_request() -> None:
    seen: list[tuple[str, str | None]] = []

    async def authenticate(connection: ServerConnection) -> Identity | None:
        request = connection.request
        assert request is not None
        seen.append((urlsplit(request.path).path, request.headers.get("Authorization")))
        return Identity(key="dee")

    registry = Registry()
    async with (
        registry,
        registry_serve(registry, "127.0.0.1", 0, authenticate=authenticate) as server,
    ):
        port = server.sockets[0].getsockname()[1]
        headers = {"Authorization": "Bearer t0k3n"}
        async with connect(f"ws://127.0.0.1:{port}/chat", additional_headers=headers):
            pass
    assert seen == [("/chat", "Bearer t0k3n")]


async def test_serve_rejects_options_it_sets_itself() -> None:
    async with Registry() as registry:
        with pytest.raises(TypeError, match="process_request"):
            async with registry_serve(
                registry, authenticate=websockets_auth, process_request=lambda c, r: None
            ):
                pass


async def test_a_broadcast_shares_one_frame_and_compressed_peers_get_their_own() -> None:
    async with Harness("websockets") as h:
        plain = [await h.connect(f"p{i}", compression=None) for i in range(3)]
        deflate = await h.connect("z", compression="deflate")  # per-connection framing
        peers = [*plain, deflate]
        messages: list[object] = [{"n": 1, "pad": "é" * 300}, "text", b"\x00\x01bin", {"n": 2}]
        for message in messages:
            assert await h.registry.broadcast(message) == len(peers)
        await h.registry.send("p1", "only p1")
        expected = [
            json.dumps(messages[0], ensure_ascii=False, separators=(",", ":")),
            "text",
            b"\x00\x01bin",
            '{"n":2}',
        ]
        with anyio.fail_after(TIMEOUT):
            for peer in peers:
                assert [await peer.recv() for _ in expected] == expected
            assert await plain[1].recv() == "only p1"
        for peer in peers:
            await peer.close()
