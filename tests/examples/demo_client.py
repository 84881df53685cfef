"""A scripted user of the demo over real WebSockets (the ``websockets`` client)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from ..helpers import TIMEOUT


async def login(http: httpx.AsyncClient, name: str) -> str:
    response = await http.post("/api/login", json={"name": name})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


class Tab:
    """One browser tab's socket: reads messages in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def next(self) -> dict[str, Any]:
        with anyio.fail_after(TIMEOUT):
            message: dict[str, Any] = json.loads(await self.ws.recv())
        return message

    async def until(self, type: str, **fields: Any) -> list[dict[str, Any]]:
        """Read until a message of ``type`` with ``fields``; return everything read, in order."""
        seen = []
        while True:
            message = await self.next()
            seen.append(message)
            if message["type"] == type and all(message.get(k) == v for k, v in fields.items()):
                return seen


@asynccontextmanager
async def tab(
    host: str, token: str | None, *, origin: str | None = None, welcome: bool = True
) -> AsyncIterator[Tab]:
    """A connected tab; with ``welcome``, returns once the server registered it."""
    uri = f"ws://{host}/ws" + (f"?token={token}" if token else "")
    sent_origin = Origin(origin if origin is not None else f"http://{host}")
    async with connect(uri, origin=sent_origin, open_timeout=5, close_timeout=2) as ws:
        opened = Tab(ws)
        if welcome:
            opened.welcome = (await opened.until("welcome"))[-1]
        yield opened
