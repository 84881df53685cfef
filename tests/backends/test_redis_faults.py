"""Redis failures against a private redis-server: outage and restart, killed links, deafness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import anyio
import pytest

from tests.helpers import TIMEOUT
from wsregistry import BackendHealth, BackendUnavailable, Registry
from wsregistry.backends.redis import RedisBackend
from wsregistry.testing import RecordingTransport

from .conftest import PrivateRedis
from .proxy import DeafeningProxy
from .support import until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

FAST = {
    "heartbeat_interval": 0.2,
    "probe_interval": 0.2,
    "probe_timeout": 0.5,
    "reconnect_backoff": (0.02, 0.2),
    "op_timeout": 2.0,
    "socket_timeout": 2.0,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def pair(url: str, namespace: str, **first_options: Any) -> AsyncIterator[list[Registry]]:
    """Two registries; ``first_options`` apply to the first one's backend only."""
    async with AsyncExitStack() as stack:
        registries = []
        for options in (first_options, {}):
            backend = RedisBackend(url, namespace=namespace, **{**FAST, **options})
            registries.append(await stack.enter_async_context(Registry(backend=backend)))
        yield registries


def health(registry: Registry) -> BackendHealth:
    return registry.stats().backend


async def connected(*registries: Registry) -> bool:
    return all(health(registry).connected for registry in registries)


async def test_restart_local_delivery_goes_on_then_remote_resumes(
    private_redis: PrivateRedis, namespace: str
) -> None:
    states: list[bool] = []
    async with pair(
        private_redis.url, namespace, on_state_change=lambda h: states.append(h.connected)
    ) as (a, b):
        local, remote = RecordingTransport(), RecordingTransport()
        await a.connect(local, key="k")
        await b.connect(remote, key="k")
        for i in range(20):
            await a.send("k", i)
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(20)

        private_redis.kill()
        await until(lambda: _not(connected(a, b)))
        failures = health(a).detail["link_failures"]
        # stay down while the link fails to reconnect a few times (backoff)
        await until(lambda: _true(health(a).detail["link_failures"] >= failures + 3))
        errors_before = a.stats().backend_errors
        for i in range(20, 40):
            assert await a.send("k", i) == 1  # local delivery goes on
        # each publish was refused at once (or, the first ones, lost in flight): counted
        lost = health(a).detail["rejected"] + health(a).detail["publish_failures"]
        assert lost == 20
        assert a.stats().backend_errors >= errors_before + health(a).detail["rejected"]
        with anyio.fail_after(TIMEOUT):
            await local.wait_for(40)
        churn = [await b.connect(RecordingTransport(), key="churn") for _ in range(50)]
        for conn in churn[:48]:
            await b.disconnect(conn)  # presence changes during the outage

        private_redis.start()
        await until(lambda: connected(a, b))
        await until(lambda: _equals(a.online_count("k"), 2))  # presence re-asserted
        await until(lambda: _equals(a.online_count("churn"), 2))
        for i in range(40, 60):
            await a.send("k", i)
        with anyio.fail_after(TIMEOUT):
            while 59 not in remote.messages():
                await remote.wait_for(len(remote.sent) + 1)

    got = remote.messages()
    assert got == sorted(set(got)), "duplicates or reordering"
    assert set(range(20)) <= set(got)
    assert set(range(40, 60)) <= set(got)
    assert local.messages() == list(range(60))
    assert health(a).reconnects >= 1
    assert states == [True, False, True, False]  # up, outage, back, closed


async def test_fifty_killed_pubsub_links_always_come_back(
    private_redis: PrivateRedis, namespace: str
) -> None:
    client = private_redis.client()
    async with pair(private_redis.url, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="k", groups={"g"})
        for round_ in range(50):
            before = health(b).reconnects
            killed = client.client_kill_filter(_type="pubsub")
            assert killed == 2  # one link per node
            await until(partial(_reconnected, b, before))
            await until(lambda: connected(a, b))
            await a.send("k", round_)
            with anyio.fail_after(TIMEOUT):
                await remote.wait_for(round_ + 1)
        await a.broadcast("group still routed", group="g")
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(51)
        assert remote.messages() == [*range(50), "group still routed"]
        assert health(b).reconnects >= 50
        assert health(b).detail["task_failures"] == 0
    client.close()


async def test_deaf_link_is_detected_and_rebuilt(
    private_redis: PrivateRedis, namespace: str
) -> None:
    async with DeafeningProxy(private_redis.port) as proxy, pair(proxy.url, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="k")
        assert proxy.freeze_subscribers() == 2
        await until(lambda: _true(health(b).detail["probe_failures"] >= 1))
        await until(partial(_reconnected, b, 0))
        await until(lambda: connected(a, b))
        await a.send("k", "heard again")
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(1)
        assert remote.sent[-1] == "heard again"


async def test_crashed_node_presence_expires_and_is_purged(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """A node that stops heartbeating (here: its tasks die without cleanup) drops out."""
    async with pair(private_redis.url, namespace) as (a, b):
        await b.connect(RecordingTransport(), key="ghost")
        assert await a.online_count("ghost") == 1
        backend = b.backend
        assert isinstance(backend, RedisBackend)
        assert backend._run is not None
        for task in backend._run.tasks:  # simulate a frozen/killed process
            task.cancel()
        started = anyio.current_time()
        await until(lambda: _equals(a.is_online("ghost"), False))
        assert anyio.current_time() - started <= backend.presence_timeout + 0.5
        client = private_redis.client()
        await until(lambda: _true(not client.keys(f"{namespace}:p:*")))  # purged by a's reaper
        client.close()


async def _reconnected(registry: Registry, before: int) -> bool:
    return health(registry).reconnects > before


async def _not(value: Any) -> bool:
    return not await value


async def _true(value: bool) -> bool:
    return value


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_publishing_goes_on_while_only_the_subscription_link_is_down(
    private_redis: PrivateRedis, namespace: str
) -> None:
    client = private_redis.client()
    async with pair(private_redis.url, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="k")  # b's link holds 3 channels, a's 2
        (a_link,) = [c for c in client.client_list(_type="pubsub") if c["sub"] == "2"]
        client.client_kill_filter(_id=a_link["id"])
        await until(lambda: _true(health(a).detail["link_failures"] >= 1))
        for i in range(10):
            await a.send("k", i)  # the command link is fine: nothing refused
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(10)
        assert remote.messages() == list(range(10))
        assert health(a).detail["rejected"] == 0
        await until(lambda: connected(a, b))
    client.close()


async def test_password_in_the_url(
    private_redis_with_password: PrivateRedis, namespace: str
) -> None:
    server = private_redis_with_password
    async with pair(server.url, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="k")
        await a.send("k", "authenticated")
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(1)
    wrong = server.url.replace("s3cret-pass", "wrong")
    with pytest.raises(BackendUnavailable) as info:
        async with Registry(backend=RedisBackend(wrong, namespace=namespace)):
            pass
    assert "wrong" not in str(info.value)  # the password is not echoed
    assert "***@127.0.0.1" in str(info.value)


async def test_link_that_lost_its_subscriptions_is_rebuilt(
    private_redis: PrivateRedis, namespace: str
) -> None:
    """The connection stays up but the server dropped its subscriptions: the probe notices."""
    async with pair(private_redis.url, namespace) as (a, b):
        remote = RecordingTransport()
        await b.connect(remote, key="k")
        backend = b.backend
        assert isinstance(backend, RedisBackend)
        link = backend._run.listener._conn if backend._run is not None else None
        assert link is not None
        await link.send_command("UNSUBSCRIBE")  # fault injection: every channel dropped
        await until(lambda: _true(health(b).detail["probe_failures"] >= 1))
        await until(partial(_reconnected, b, 0))
        await until(lambda: connected(a, b))
        await a.send("k", "back")
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(1)
        assert remote.sent == ["back"]
