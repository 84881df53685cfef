"""Fixtures for the example apps: uvicorn and the websockets server run on asyncio."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

import pytest

from ..servers import bound_socket
from ..servers import serve as _serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn and websockets run on asyncio


@pytest.fixture
def serve() -> Callable[..., AbstractAsyncContextManager[str]]:
    """``async with serve(app[, sock][, registry=]) as host:`` (see ``tests.servers.serve``)."""
    return _serve


@pytest.fixture
def listen_socket() -> Iterator[socket.socket]:
    """A socket bound to a free port on 127.0.0.1, for apps that must know their origin."""
    with bound_socket() as sock:
        yield sock
