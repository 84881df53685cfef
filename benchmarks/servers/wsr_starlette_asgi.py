"""wsregistry on Starlette and uvicorn with the direct path off: every frame takes the ASGI send."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from benchmarks.servers._wsr import RegistryApp
from benchmarks.servers.base import Options
from benchmarks.servers.wsr_starlette import running as running_starlette


@asynccontextmanager
async def running(options: Options) -> AsyncIterator[RegistryApp]:
    os.environ["WSREGISTRY_UVICORN_DIRECT"] = "0"  # read at each connection
    async with running_starlette(options) as app:
        yield app
