"""The backend contract (:func:`wsregistry.contracts.check_backend`) on every backend.

``memory``: two registries sharing a MemoryHub (asyncio and trio).
``redis``: two registries with their own RedisBackend on the shared Redis, a
fresh namespace per cluster.
``nats``: two registries with their own NatsBackend on the shared NATS (JetStream),
a fresh namespace per cluster; ``nats-cluster``: the same on a private 3-node NATS
cluster, each registry attached to a different node.

The checks themselves live in the library, so users run the same ones on
their own backend; here they are proven against both real backends, and shown
to fail on a backend that delivers twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import pytest

from tests.helpers import TIMEOUT
from wsregistry import Backend, Envelope, Key, MemoryBackend, MemoryHub, Registry
from wsregistry.contracts import check_backend

from .conftest import SHARED_REDIS
from .nats_support import (
    SHARED_NATS,
    PrivateNats,
    delete_streams,
    new_namespace,
    running_cluster,
    wait_jetstream,
)
from .proxy import SlowLinkProxy

pytestmark = pytest.mark.anyio

CASES = [
    pytest.param(("memory", "asyncio"), id="memory-asyncio"),
    pytest.param(("memory", "trio"), id="memory-trio"),
    pytest.param(("redis", "asyncio"), id="redis", marks=pytest.mark.redis),
    pytest.param(("redis-slow", "asyncio"), id="redis-slow-link", marks=pytest.mark.redis),
    pytest.param(("nats", "asyncio"), id="nats", marks=pytest.mark.nats),
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> str:
    return case[1]


def cluster_of(
    make_backend: Callable[[], Backend],
) -> Callable[[], AbstractAsyncContextManager[list[Registry]]]:
    """A ``make_cluster`` for two registries, each with a backend from ``make_backend``."""

    @asynccontextmanager
    async def cluster() -> AsyncIterator[list[Registry]]:
        async with AsyncExitStack() as stack:
            yield [
                await stack.enter_async_context(Registry(backend=make_backend())) for _ in range(2)
            ]

    return cluster


def fresh_cluster(kind: str) -> Callable[[], AbstractAsyncContextManager[list[Registry]]]:
    """Each call: a new empty cluster (a new hub, or a new Redis namespace)."""

    @asynccontextmanager
    async def cluster() -> AsyncIterator[list[Registry]]:
        if kind == "memory":
            hub = MemoryHub()
            make = cluster_of(lambda: MemoryBackend(hub=hub))
        elif kind == "nats":
            async with nats_cluster([SHARED_NATS, SHARED_NATS])() as registries:
                yield registries
            return
        elif kind == "redis":
            from wsregistry.backends.redis import RedisBackend

            namespace = "wsrtest-" + uuid.uuid4().hex[:12]
            make = cluster_of(lambda: RedisBackend(SHARED_REDIS, namespace=namespace))
        else:  # the second node's pub/sub link is slow: races happen on purpose
            async with SlowLinkProxy(6379, 0.05) as proxy, slow_pair(proxy.url) as registries:
                yield registries
            return
        async with make() as registries:
            yield registries

    return cluster


@asynccontextmanager
async def slow_pair(slow_url: str) -> AsyncIterator[list[Registry]]:
    from wsregistry.backends.redis import RedisBackend

    namespace = "wsrtest-" + uuid.uuid4().hex[:12]
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                Registry(backend=RedisBackend(url, namespace=namespace, probe_interval=5.0))
            )
            for url in (SHARED_REDIS, slow_url)
        ]


async def test_backend_keeps_the_contract(case: tuple[str, str]) -> None:
    timeout = TIMEOUT * 3 if case[0] == "redis-slow" else TIMEOUT
    await check_backend(fresh_cluster(case[0]), check_timeout=timeout)


def nats_cluster(urls: list[str]) -> Callable[[], AbstractAsyncContextManager[list[Registry]]]:
    """Each call: registries on a fresh namespace, the i-th attached to ``urls[i % len]``."""
    from wsregistry.backends.nats import NatsBackend

    @asynccontextmanager
    async def cluster() -> AsyncIterator[list[Registry]]:
        namespace = new_namespace()
        try:
            async with AsyncExitStack() as stack:
                yield [
                    await stack.enter_async_context(
                        Registry(backend=NatsBackend(url, namespace=namespace))
                    )
                    for url in urls
                ]
        finally:
            await delete_streams(urls[0], namespace)

    return cluster


@pytest.fixture
def nats_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PrivateNats]]:
    """A private 3-node NATS cluster with JetStream, killed at the end."""
    with running_cluster(tmp_path_factory.mktemp("nats")) as servers:
        yield servers


@pytest.mark.nats
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_nats_keeps_the_contract_across_a_three_node_cluster(
    nats_three: list[PrivateNats],
) -> None:
    urls = [server.url for server in nats_three]
    for url in urls:
        await wait_jetstream(url)
    await check_backend(nats_cluster(urls), check_timeout=TIMEOUT)


class DoubleDelivery(MemoryBackend):
    """Broken on purpose: hands every envelope to the other nodes twice."""

    async def publish(self, envelope: Envelope) -> None:
        await super().publish(envelope)
        await super().publish(envelope)


class LocalPresence(MemoryBackend):
    """Broken on purpose: presence counts only this node."""

    async def presence_count(self, key: Key) -> int:
        return self._node.local_count(key) if self._node is not None else 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_backend_that_delivers_twice_fails() -> None:
    hub = MemoryHub()
    with pytest.raises(AssertionError, match=r"send_reaches_every_connection.*expected 1, got 2"):
        await check_backend(cluster_of(lambda: DoubleDelivery(hub=hub)), check_timeout=TIMEOUT)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_backend_without_cluster_presence_fails() -> None:
    hub = MemoryHub()
    with pytest.raises(AssertionError, match=r"presence_spans_the_cluster.*expected 2, got 1"):
        await check_backend(cluster_of(lambda: LocalPresence(hub=hub)), check_timeout=TIMEOUT)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_cluster_of_one_is_refused() -> None:
    @asynccontextmanager
    async def lonely() -> AsyncIterator[list[Registry]]:
        async with Registry() as registry:
            yield [registry]

    with pytest.raises(ValueError, match="at least two registries"):
        await check_backend(lonely)
