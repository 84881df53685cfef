from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Core tests run on both; adapter/Redis modules override this with asyncio."""
    return str(request.param)
