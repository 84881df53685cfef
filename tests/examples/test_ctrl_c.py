"""Ctrl+C stops the examples quietly: a graceful shutdown, no traceback, exit status 0."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import anyio
import pytest

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("script", "ready"),
    [
        ("websockets_server.py", b"listening on"),  # anyio.run(main)
        ("starlette_app.py", b"Application startup complete"),  # adapters.uvicorn.run()
    ],
)
async def test_ctrl_c_stops_without_a_traceback(script: str, ready: bytes) -> None:
    command = [sys.executable, str(ROOT / "examples" / script), str(free_port())]
    async with await anyio.open_process(command, stdout=-1, stderr=-1) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        output = b""

        async def read(stream: anyio.abc.ByteReceiveStream) -> None:
            nonlocal output
            async for chunk in stream:
                output += chunk

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, process.stdout)
            tg.start_soon(read, process.stderr)
            with anyio.fail_after(TIMEOUT * 2):
                while ready not in output:  # noqa: ASYNC110 - the child's output is the event
                    await anyio.sleep(0.02)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(TIMEOUT * 2):
                code = await process.wait()
    assert b"Traceback" not in output, output.decode()
    assert code == 0, output.decode()
