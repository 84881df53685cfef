"""Shared fixtures: every async test runs on asyncio and trio unless it overrides this."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The anyio backend; override it in a module or directory that needs asyncio only."""
    backend: str = request.param
    return backend
