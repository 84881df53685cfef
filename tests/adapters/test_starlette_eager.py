"""StarletteTransport.send_nowait: an ASGI send runs in the caller unless the server waits."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsregistry.adapters.starlette import StarletteTransport


class _Server:
    """An ASGI ``send`` that records frames and can be made to wait (back-pressure)."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.writable = True
        self._resumed: anyio.Event | None = None
        self.fail: Exception | None = None

    def pause(self) -> None:
        self.writable = False

    def resume(self) -> None:
        self.writable = True
        if self._resumed is not None:
            self._resumed.set()

    async def send(self, message: MutableMapping[str, Any]) -> None:
        while not self.writable:  # like uvicorn: no suspension while writable
            self._resumed = anyio.Event()
            await self._resumed.wait()
        if self.fail is not None:
            raise self.fail
        if message["type"] == "websocket.send":
            self.frames.append(message.get("text") or message["bytes"])

    async def receive(self) -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


def _accepted(server: _Server) -> WebSocket:
    websocket = WebSocket({"type": "websocket", "path": "/"}, server.receive, server.send)
    websocket.application_state = websocket.application_state.CONNECTED
    return websocket


@pytest.mark.anyio
async def test_a_send_that_does_not_wait_is_written_at_once() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    assert transport.send_nowait("a") is True
    assert transport.send_nowait(b"b") is True
    assert server.frames == ["a", b"b"]


@pytest.mark.anyio
async def test_a_send_that_waits_finishes_in_order_before_the_next() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    server.pause()  # back-pressure: the next send waits
    assert transport.send_nowait("first") is True
    assert transport.send_nowait("second") is False  # busy: the caller must queue
    assert server.frames == []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.send, "second")
            await anyio.wait_all_tasks_blocked()
            assert server.frames == []
            server.resume()
    assert server.frames == ["first", "second"]
    assert transport.send_nowait("third") is True
    assert server.frames == ["first", "second", "third"]


@pytest.mark.anyio
async def test_a_failure_before_waiting_raises_from_send_nowait() -> None:
    server = _Server()
    server.fail = ConnectionError("gone")
    transport = StarletteTransport(_accepted(server))
    with pytest.raises(WebSocketDisconnect):
        transport.send_nowait("a")


@pytest.mark.anyio
async def test_a_failure_after_waiting_raises_from_the_next_send() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    server.pause()
    assert transport.send_nowait("a") is True
    server.fail = ConnectionError("gone")
    server.resume()
    with anyio.fail_after(5), pytest.raises(WebSocketDisconnect):
        await transport.send("b")
    assert transport.send_nowait("c") is False  # still failed: the registry's writer sees it
    assert server.frames == []


@pytest.mark.anyio
async def test_abort_abandons_a_waiting_send() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    server.pause()
    assert transport.send_nowait("a") is True
    transport.abort()
    assert transport.send_nowait("b") is True  # not busy any more: "a" was abandoned
    server.resume()
    with anyio.fail_after(5):
        await transport.send("c")
    assert server.frames == ["b", "c"]


def test_on_trio_every_message_is_queued() -> None:
    async def main() -> None:
        server = _Server()
        transport = StarletteTransport(_accepted(server))
        assert transport.send_nowait("a") is False
        await transport.send("a")
        assert server.frames == ["a"]

    anyio.run(main, backend="trio")
