"""The websockets adapter unregisters as soon as the server decides to close or loses the peer.

Real ``websockets`` server (:func:`wsregistry.adapters.websockets.serve`) and
real clients that misbehave on purpose: they ignore the server's close frame
(they stop reading), or reset the TCP connection while ``on_message`` runs.
Pings are off, so nothing but the adapter itself can notice.
"""

from __future__ import annotations

import logging
import socket
import struct

import anyio
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wsregistry import CloseCode, Connection, Key, Registry
from wsregistry.backends.memory import MemoryBackend

from ..helpers import TIMEOUT, wait_until
from ._harness import Harness

pytestmark = pytest.mark.anyio

NO_PINGS = (None, None)


def reset(client: object) -> None:
    """Drop the client's TCP connection with an RST (SO_LINGER 0), no close frame."""
    transport = client.transport  # type: ignore[attr-defined]
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def test_an_oversized_message_unregisters_a_peer_that_ignores_the_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsregistry")
    async with Harness("websockets", ping=NO_PINGS, max_message_size=1024) as h:
        client = await h.connect("big", ping_interval=None)
        await client.send("x" * 4096)  # over max_size: the server closes with 1009
        client.transport.pause_reading()  # and the peer never reads the close frame
        await wait_until(lambda: not h.registry.lookup("big"))
        assert not await h.registry.is_online("big")
        await h.wait_disconnected(1)
        assert any(
            r.levelno == logging.INFO and "inbound message of over 1024 bytes" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
        client.transport.abort()


async def test_a_protocol_error_unregisters_a_peer_that_ignores_the_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsregistry")
    async with Harness("websockets", ping=NO_PINGS) as h:
        client = await h.connect("rude", ping_interval=None)
        client.transport.pause_reading()
        client.transport.write(b"\x81\x05hello")  # unmasked client frame: protocol error 1002
        await wait_until(lambda: not h.registry.lookup("rude"))
        assert not await h.registry.is_online("rude")
        assert any(
            r.levelno == logging.INFO and "(1002)" in r.getMessage() for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
        client.transport.abort()


async def test_a_reset_during_on_message_unregisters_before_the_hook_returns() -> None:
    entered, release = anyio.Event(), anyio.Event()

    async def on_message(conn: Connection, data: str | bytes) -> None:
        entered.set()
        await release.wait()  # a slow (or hung) hook

    async with Harness("websockets", ping=NO_PINGS, on_message=on_message) as h:
        client = await h.connect("gone", ping_interval=None)
        await client.send("work")
        with anyio.fail_after(TIMEOUT):
            await entered.wait()
        reset(client)
        await wait_until(lambda: not h.registry.lookup("gone"))
        assert not await h.registry.is_online("gone")
        assert not release.is_set()  # the hook is still running, not cancelled
        release.set()
        await h.wait_disconnected(1)  # on_disconnect once the hook returned
        assert h.registry.stats().connections == 0


async def test_on_asgi_a_reset_during_on_message_unregisters_when_the_hook_returns() -> None:
    """ASGI reports a disconnect only through ``receive()``: documented narrower bound."""
    entered, release = anyio.Event(), anyio.Event()

    async def on_message(conn: Connection, data: str | bytes) -> None:
        entered.set()
        await release.wait()

    async with Harness("starlette-websockets-sansio", ping=NO_PINGS, on_message=on_message) as h:
        client = await h.connect("asgi", ping_interval=None)
        await client.send("work")
        with anyio.fail_after(TIMEOUT):
            await entered.wait()
        reset(client)
        release.set()
        await h.wait_disconnected(1)
        assert not h.registry.lookup("asgi")


class _GatedBackend(MemoryBackend):
    """Holds each registration until ``count`` of them are in flight: a race made on purpose."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.arrived = 0
        self.gate = anyio.Event()

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        await super().connection_added(connection_id, key, first_of_key=first_of_key)
        self.arrived += 1
        if self.arrived >= self.count:
            self.gate.set()
        with anyio.fail_after(TIMEOUT):
            await self.gate.wait()


@pytest.mark.parametrize("kind", ["starlette-websockets-sansio", "fastapi-wsproto", "websockets"])
async def test_evict_oldest_with_simultaneous_connections_keeps_the_newest(kind: str) -> None:
    registry = Registry(backend=_GatedBackend(2))
    async with Harness(
        kind, registry=registry, max_connections_per_key=1, limit_policy="evict_oldest"
    ) as h:
        clients: list[ClientConnection] = []

        async def open_tab() -> None:
            clients.append(await h.connect("tabs", welcome=False))

        async with anyio.create_task_group() as tg:
            tg.start_soon(open_tab)
            tg.start_soon(open_tab)
        await h.registry.send("tabs", "kept")  # the gate is open: both registered by now
        codes: list[int | None] = []
        texts: list[str] = []

        async def read(client: ClientConnection) -> None:
            with anyio.fail_after(TIMEOUT):
                try:
                    while True:
                        message = await client.recv()
                        if message == "kept":
                            texts.append("kept")
                            return
                except ConnectionClosed as exc:
                    codes.append(exc.rcvd.code if exc.rcvd is not None else None)

        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(read, client)
        assert codes == [CloseCode.TOO_MANY_CONNECTIONS]  # exactly one evicted
        assert texts == ["kept"]  # the other one stays and receives
        assert len(h.registry.lookup("tabs")) == 1
        for client in clients:
            await client.close()


@pytest.mark.parametrize("heartbeat", [None, 30.0], ids=["no-heartbeat", "heartbeat"])
async def test_hook_errors_are_classified_the_same_with_or_without_heartbeat(
    heartbeat: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsregistry")

    async def on_message(conn: Connection, data: str | bytes) -> None:
        if data == "close-then-send":
            await conn.close(CloseCode.NORMAL, "bye")
            await conn.send("too late")  # ConnectionClosed on a closed connection: expected
        else:
            raise ValueError("bug in the app")

    async with Harness(
        "starlette-websockets-sansio", on_message=on_message, heartbeat_interval=heartbeat
    ) as h:
        polite = await h.connect("polite")
        await polite.send("close-then-send")
        await h.wait_disconnected(1)
        buggy = await h.connect("buggy")
        await buggy.send("boom")
        await h.wait_disconnected(2)
    closed_records = [r for r in caplog.records if "closed while its handler ran" in r.getMessage()]
    assert [r.levelno for r in closed_records] == [logging.DEBUG]
    failed = [
        r for r in caplog.records if "handler of" in r.getMessage() and "failed" in r.getMessage()
    ]
    assert [r.levelno for r in failed] == [logging.ERROR]
    assert failed[0].exc_info is not None
    assert type(failed[0].exc_info[1]) is ValueError  # the app's error, not an ExceptionGroup
    assert not any(
        r.levelno >= logging.ERROR and "polite" in r.getMessage() for r in caplog.records
    )


async def test_what_a_peer_sent_before_its_close_frame_still_reaches_on_message() -> None:
    received: list[str | bytes] = []

    async def on_message(conn: Connection, data: str | bytes) -> None:
        received.append(data)

    async with Harness("websockets", ping=NO_PINGS, on_message=on_message) as h:
        client = await h.connect("polite", ping_interval=None)
        client.protocol.send_text(b"last words")
        client.protocol.send_close(1000, "bye")
        client.transport.write(b"".join(client.protocol.data_to_send()))  # one write
        await h.wait_disconnected(1)
        assert received == ["last words"]
        assert not h.registry.lookup("polite")
        client.transport.abort()
