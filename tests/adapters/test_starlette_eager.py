"""StarletteTransport.send_nowait: an ASGI send runs in the caller unless the server waits."""

from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.websockets import WebSocket, WebSocketDisconnect

from wsregistry.adapters._eager import EAGER_TASKS
from wsregistry.adapters.starlette import StarletteTransport

from ..helpers import TIMEOUT
from ._harness import Harness

needs_eager_tasks = pytest.mark.skipif(
    not EAGER_TASKS, reason="the eager fast path needs Python 3.12 (asyncio eager tasks)"
)


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


@needs_eager_tasks
@pytest.mark.anyio
async def test_a_send_that_does_not_wait_is_written_at_once() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    assert transport.send_nowait("a") is True
    assert transport.send_nowait(b"b") is True
    assert server.frames == ["a", b"b"]


@needs_eager_tasks
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


@needs_eager_tasks
@pytest.mark.anyio
async def test_a_failure_before_waiting_raises_from_send_nowait() -> None:
    server = _Server()
    server.fail = ConnectionError("gone")
    transport = StarletteTransport(_accepted(server))
    with pytest.raises(WebSocketDisconnect):
        transport.send_nowait("a")


@needs_eager_tasks
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


@needs_eager_tasks
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


@pytest.mark.skipif(EAGER_TASKS, reason="Python 3.12+ has the eager fast path")
@pytest.mark.anyio
async def test_before_python_3_12_every_message_goes_through_send() -> None:
    server = _Server()
    transport = StarletteTransport(_accepted(server))
    assert transport.send_nowait("a") is False
    await transport.send("a")
    assert server.frames == ["a"]


_span: contextvars.ContextVar[str | None] = contextvars.ContextVar("span", default=None)


def _tracing(app: Any) -> Any:
    """An ASGI middleware that wraps ``send`` like OpenTelemetry's: a context variable
    and a cancel scope around it, and a wait inside (an exporter hop)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def traced_send(message: MutableMapping[str, Any]) -> None:
            token = _span.set("send")
            try:
                with anyio.CancelScope():
                    await anyio.lowlevel.checkpoint()
                    await send(message)
            finally:
                _span.reset(token)

        await app(scope, receive, traced_send)

    return wrapped


@pytest.mark.parametrize("impl", ["websockets-sansio", "wsproto"])
@pytest.mark.anyio
async def test_an_asgi_send_starts_and_ends_in_one_task_under_a_wrapping_middleware(
    impl: str,
) -> None:
    async with Harness(f"starlette-{impl}", middleware=_tracing) as h:
        client = await h.connect("otel")
        with anyio.move_on_after(TIMEOUT) as scope:  # the caller's own cancel scope
            for n in range(50):
                assert await h.registry.send("otel", f"m{n}") == 1
                assert _span.get() is None  # nothing leaked into the caller's context
        assert not scope.cancelled_caught
        with anyio.fail_after(TIMEOUT):
            assert [await client.recv() for _ in range(50)] == [f"m{n}" for n in range(50)]
        assert h.registry.stats().send_errors == 0
        assert len(h.registry.lookup("otel")) == 1  # not closed with 1011
        await client.close()
        await h.wait_disconnected(1)
    assert not h.disconnected[0].close_code  # closed by the peer, not the registry
