"""``make demo DEMO_WORKERS=2`` without Redis: every worker says loudly that users are split."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import anyio
import pytest

from ..helpers import TIMEOUT

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WARNING = b"server workers, but its wsregistry Registry uses the in-memory backend"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("workers", [2, 1])
async def test_the_memory_backend_in_several_workers_is_a_loud_warning(workers: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.set_inheritable(True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSREGISTRY_REDIS")}
        command = [
            *(sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "examples")),
            *("demo.app:app", "--workers", str(workers), "--fd", str(sock.fileno())),
            *("--log-level", "info", "--no-access-log"),
        ]
        process = await anyio.open_process(
            command, env=env, pass_fds=[sock.fileno()], stdout=None, stderr=-1
        )
        async with process:
            assert process.stderr is not None
            log = b""
            try:
                with anyio.fail_after(TIMEOUT * 4):
                    while log.count(b"Application startup complete") < workers:
                        log += await process.stderr.receive()
            finally:
                process.terminate()
                with anyio.fail_after(TIMEOUT * 2):
                    await process.wait()
    assert log.count(WARNING) == (workers if workers > 1 else 0), log.decode()
