from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest
import sse_transport
from websockets.asyncio.client import connect

from wsregistry import CloseCode, Registry

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

Serve = Callable[[Any], AbstractAsyncContextManager[str]]


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Parse an SSE body into (event, data) pairs; comments come as ("comment", text)."""
    event, data = "message", []
    async for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield event, "\n".join(data)
            event, data = "message", []


async def test_sse_client_receives_sends_and_is_unregistered_on_disconnect(serve: Serve) -> None:
    registry = Registry()
    app = sse_transport.create_app(registry)
    async with serve(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as client:
        async with client.stream("GET", "/events", params={"user": "alice"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response.aiter_lines())
            with anyio.fail_after(TIMEOUT):
                assert await anext(events) == ("comment", "connected")
                (conn,) = registry.lookup("alice")
                notified = await client.post("/notify/alice", json={"text": "hi\nthere"})
                assert notified.json() == {"delivered": 1}
                kind, data = await anext(events)
            assert kind == "message"
            assert json.loads(data) == {"text": "hi\nthere"}
            assert (await client.post("/notify/bob", json={"x": 1})).json() == {"delivered": 0}
        with anyio.fail_after(TIMEOUT):
            await conn.wait_closed()  # the client left: unregistered at once
        assert (await client.get("/stats")).json()["connections"] == 0


async def test_registry_close_ends_the_stream_with_a_close_event(serve: Serve) -> None:
    registry = Registry()
    app = sse_transport.create_app(registry)
    async with serve(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as client:
        async with client.stream("GET", "/events", params={"user": "bob"}) as response:
            events = _events(response.aiter_lines())
            with anyio.fail_after(TIMEOUT):
                assert await anext(events) == ("comment", "connected")
                (conn,) = registry.lookup("bob")
                await conn.send(b"\x00\x01")
                assert await anext(events) == ("binary", "AAE=")
                await conn.close(CloseCode.NORMAL, "bye")
                kind, data = await anext(events)
                assert kind == "close"
                assert json.loads(data) == {"code": 1000, "reason": "bye"}
                assert [item async for item in events] == []
        assert registry.stats().connections == 0


async def test_missing_user_is_rejected(serve: Serve) -> None:
    app = sse_transport.create_app()
    async with serve(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as client:
        assert (await client.get("/events")).status_code == 400


async def test_websocket_and_sse_tabs_of_one_user_share_the_registry(serve: Serve) -> None:
    registry = Registry()
    app = sse_transport.create_app(registry)
    async with (
        serve(app) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as client,
        connect(f"ws://{host}/ws?user=alice") as ws_tab,
        client.stream("GET", "/events", params={"user": "alice"}) as sse_tab,
    ):
        events = _events(sse_tab.aiter_lines())
        with anyio.fail_after(TIMEOUT):
            assert await anext(events) == ("comment", "connected")
            assert json.loads(await ws_tab.recv()) == {"type": "connected"}
            assert len(registry.lookup("alice")) == 2
            notified = await client.post("/notify/alice", json={"to": "every tab"})
            assert notified.json() == {"delivered": 2}
            assert json.loads(await ws_tab.recv()) == {"to": "every tab"}
            assert await anext(events) == ("message", '{"to":"every tab"}')
