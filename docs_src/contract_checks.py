"""Running wsregistry's contract checks on your own transport and backend, in pytest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from docs_src.custom_backend import Broker, BrokerBackend
from docs_src.custom_transport import StreamTransport
from wsregistry import Registry
from wsregistry.contracts import ConnectedTransport, check_backend, check_transport


# --8<-- [start:transport]
@asynccontextmanager
async def connected_stream() -> AsyncIterator[ConnectedTransport]:
    """A StreamTransport and its peer: the task that reads the stream."""
    send_stream, receive_stream = anyio.create_memory_object_stream[str | bytes](16)
    async with receive_stream:
        yield ConnectedTransport(
            transport=StreamTransport(send_stream),
            receive=receive_stream.receive,  # the next frame the peer got
            break_peer=receive_stream.aclose,  # the peer goes away: send must raise
        )


@pytest.mark.anyio
async def test_stream_transport_keeps_the_contract() -> None:
    await check_transport(connected_stream)
    # --8<-- [end:transport]


# --8<-- [start:backend]
@asynccontextmanager
async def broker_cluster() -> AsyncIterator[list[Registry]]:
    """Two nodes on a fresh broker: each check starts from an empty cluster."""
    broker = Broker()  # against a real broker: a new namespace / channel prefix
    async with (
        Registry(backend=BrokerBackend(broker)) as node_a,
        Registry(backend=BrokerBackend(broker)) as node_b,
    ):
        yield [node_a, node_b]


@pytest.mark.anyio
async def test_broker_backend_keeps_the_contract() -> None:
    await check_backend(broker_cluster, check_timeout=5)
    # --8<-- [end:backend]
