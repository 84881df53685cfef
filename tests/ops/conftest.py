from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..backends.conftest import PrivateRedis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn, websockets and httpx run on asyncio here


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server the test may stop and restart (killed at the end)."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
