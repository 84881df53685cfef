from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets_server import run_server

from wsregistry import Registry

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "websockets_server.py"


@asynccontextmanager
async def _client(port: int, token: str) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(f"ws://127.0.0.1:{port}", additional_headers=headers) as ws:
        yield ws


async def _recv(ws: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await ws.recv())


async def test_the_script_serves_direct_messages_and_refuses_strangers() -> None:
    async with await anyio.open_process([sys.executable, str(EXAMPLE), "0"]) as process:
        assert process.stdout is not None
        with anyio.fail_after(10):
            output = b""
            while b"\n" not in output:
                output += await process.stdout.receive()
        match = re.search(rb"ws://127\.0\.0\.1:(\d+)", output)
        assert match, output
        port = int(match.group(1))
        try:
            async with _client(port, "alice-token") as alice, _client(port, "bob-token") as bob:
                await alice.send(json.dumps({"to": "bob", "text": "hi bob"}))
                assert await _recv(bob) == {"from": "alice", "text": "hi bob"}
            with pytest.raises(InvalidStatus) as refused:
                async with _client(port, "wrong-token"):
                    pass
            assert refused.value.response.status_code == 403
        finally:
            process.terminate()


async def test_broadcast_skips_the_sender_and_bad_input_gets_an_error() -> None:
    async with Registry() as registry, run_server(registry, port=0) as server:
        port = server.sockets[0].getsockname()[1]
        async with (
            _client(port, "alice-token") as alice,
            _client(port, "bob-token") as bob,
            _client(port, "carol-token") as carol,
        ):
            await alice.send(json.dumps({"text": "hello all"}))
            assert await _recv(bob) == {"from": "alice", "text": "hello all"}
            assert await _recv(carol) == {"from": "alice", "text": "hello all"}
            await alice.send("not json")
            assert "error" in await _recv(alice)  # the broadcast never reached alice
