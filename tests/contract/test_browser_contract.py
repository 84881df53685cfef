"""A real browser (Chromium via Playwright) against the Starlette adapter on uvicorn."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

from wsregistry import Connection, Registry
from wsregistry.adapters.starlette import Identity, RegistryEndpoint

from .support import run_uvicorn, until

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

PAGE = """<!doctype html><script>
window.log = [];
const ws = new WebSocket(`ws://${location.host}/ws?token=${location.hash.slice(1)}`);
ws.binaryType = "arraybuffer";
ws.onmessage = (e) => {
  window.log.push(typeof e.data === "string" ? e.data : "bin:" + new Uint8Array(e.data).join(","));
  if (e.data === "echo-me") ws.send("echoed");
};
ws.onclose = (e) => window.log.push("close:" + e.code);
</script>"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def chromium() -> str:
    assert CHROMIUM.exists(), "Chromium is missing"
    return str(CHROMIUM)


@pytest.mark.parametrize("refusal", ["http", "close"])
async def test_browser_origin_allow_list_and_delivery(refusal: str, chromium: str) -> None:
    registry = Registry()
    inbound: list[Any] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def authenticate(ws: Any) -> Identity | None:
        token = ws.query_params.get("token")
        return Identity(key=token) if token else None

    async def on_message(conn: Connection, data: str | bytes) -> None:
        inbound.append((conn.key, data))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    endpoint = RegistryEndpoint(
        registry,
        authenticate=authenticate,
        on_message=on_message,
        allowed_origins=[f"http://127.0.0.1:{port}"],
        refusal=refusal,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    app = Starlette(routes=[Route("/", page), WebSocketRoute("/ws", endpoint)], lifespan=lifespan)
    async with run_uvicorn(app, sock=sock), async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox"]
        )
        try:
            good = await browser.new_page()
            await good.goto(f"http://127.0.0.1:{port}/#alice")
            await until(lambda: len(registry.lookup("alice")) == 1, limit=10)
            await registry.send("alice", {"type": "notice"})
            await registry.send("alice", b"\x01\x02")
            await registry.send("alice", "echo-me")
            await until(lambda: inbound == [("alice", "echoed")], limit=10)
            log = await good.evaluate("window.log")
            assert json.loads(log[0]) == {"type": "notice"}
            assert log[1:] == ["bin:1,2", "echo-me"]
            # another origin (same server, other host name) is refused
            evil = await browser.new_page()
            await evil.goto(f"http://localhost:{port}/#mallory")
            with anyio.fail_after(10):
                while not (log := await evil.evaluate("window.log")):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            assert log == ["close:1006"] if refusal == "http" else ["close:4403"]
            assert registry.lookup("mallory") == ()
            # closing the tab unregisters
            await good.close()
            await until(lambda: registry.lookup("alice") == (), limit=10)
        finally:
            await browser.close()
