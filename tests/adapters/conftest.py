from __future__ import annotations

import pytest

from ._harness import KINDS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn and websockets run on asyncio only


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
