"""RedisBackend and the emitters against the shared Redis: routing, safety, options."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import TIMEOUT
from wsregistry import BackendHealth, BackendUnavailable, NotConnected, Registry
from wsregistry.backends import _redis_wire as wire
from wsregistry.backends.redis import RedisBackend, RedisEmitter, SyncRedisEmitter
from wsregistry.contracts import HOSTILE_KEYS as HOSTILE
from wsregistry.envelope import Envelope, EnvelopeKind
from wsregistry.testing import RecordingTransport

from .conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def nodes(url: str, namespace: str, count: int, **options: Any) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        registries = [
            await stack.enter_async_context(
                Registry(backend=RedisBackend(url, namespace=namespace, **options))
            )
            for _ in range(count)
        ]
        yield registries


def detail(registry: Registry) -> dict[str, Any]:
    return registry.stats().backend.detail


# -- wire format (pure) ----------------------------------------------------------------


def test_names_are_injective_pattern_free_and_reversible() -> None:
    names = [wire.name_of(key) for key in HOSTILE]
    assert len(set(names)) == len(HOSTILE)
    for key, name in zip(HOSTILE, names, strict=True):
        assert wire.key_of(name) == key
        assert type(wire.key_of(name)) is type(key)
        assert not set(name) & set("*?[]:\\ \r\n\x00")
        assert len(wire.short(name)) <= 65 or name == wire.short(name)
    assert wire.short(wire.name_of("x" * 10_000)) != wire.short(wire.name_of("x" * 10_001))
    assert len(wire.Layout("ns").key_channel("x" * 100_000)) < 80


@pytest.mark.parametrize("payload", ["text é \x00", b"\x00\xffbinary", "", b""])
def test_envelopes_round_trip_exactly(payload: str | bytes) -> None:
    for kind, target in (
        (EnvelopeKind.KEY, "a:b"),
        (EnvelopeKind.KEY, 42),
        (EnvelopeKind.GROUP, "[ab]"),
        (EnvelopeKind.BROADCAST, None),
        (EnvelopeKind.CONNECTION, "c0ffee"),
    ):
        envelope = Envelope(kind, payload, target, "ex", "node-1")
        decoded = wire.unpack(wire.pack(envelope, b"node-1"))
        assert decoded == envelope
        assert type(decoded.payload) is type(payload)


@pytest.mark.parametrize("data", [b"", b"\x01k", b"\x09" + b"\x00" * 20, b"\x01z" + b"\x00" * 20])
def test_malformed_envelopes_are_rejected(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.unpack(data)


def test_bad_names_are_rejected() -> None:
    bad = "s" + base64.urlsafe_b64encode(b"\xff").decode().rstrip("=")
    for name in ("", "x1", "iabc", bad):
        with pytest.raises(wire.WireError):
            wire.key_of(name)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"namespace": "a:b"}, ValueError),
        ({"namespace": "*"}, ValueError),
        ({"namespace": ""}, ValueError),
        ({"namespace": 3}, TypeError),
        ({"heartbeat_interval": 0}, ValueError),
        ({"heartbeat_interval": "1"}, TypeError),
        ({"heartbeat_interval": 2.0, "presence_timeout": 1.0}, ValueError),
        ({"heartbeat_interval": 1.0, "presence_timeout": 1.5}, ValueError),  # leases would flap
        ({"publish_linger": -0.001}, ValueError),
        ({"publish_linger": 1.0}, ValueError),
        ({"publish_linger": "0"}, TypeError),
        ({"max_pending": 0}, ValueError),
        ({"reconnect_backoff": (0.1,)}, ValueError),
        ({"on_state_change": 5}, TypeError),
    ],
)
def test_options_are_checked(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RedisBackend(**options)


def test_url_scheme_is_checked() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RedisBackend("http://127.0.0.1:6379")


# -- lifecycle -------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error(redis_url: str, namespace: str) -> None:
    with pytest.raises(RuntimeError, match="needs asyncio"):
        async with Registry(backend=RedisBackend(redis_url, namespace=namespace)):
            pass


async def test_unreachable_redis_fails_start() -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0", op_timeout=1.0)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        async with Registry(backend=backend):
            pass
    assert not backend.connected


async def test_close_removes_presence_and_leaves_no_keys(redis_url: str, namespace: str) -> None:
    async with nodes(redis_url, namespace, 2) as (a, b):
        await a.connect(RecordingTransport(), key="k", groups={"g"})
        await b.connect(RecordingTransport(), key="k")
        assert await b.online_count("k") == 2
        assert detail(a)["subscriptions"] == 4  # all, own node, key, group
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys(f"{namespace}:*") == []
    finally:
        client.close()


# -- routing ---------------------------------------------------------------------------


async def test_interest_routing_nodes_process_only_their_traffic(
    redis_url: str, namespace: str
) -> None:
    async with nodes(redis_url, namespace, 4) as (x_node, y_node, sender, idle):
        tx, ty = RecordingTransport(), RecordingTransport()
        await x_node.connect(tx, key="x", groups={"gx"})
        await y_node.connect(ty, key="y")
        for i in range(100):
            await sender.send("y", i)
        for i in range(30):
            await sender.send("x", i)
            await sender.broadcast(i, group="gx")
        await sender.send("nobody", "dropped by Redis, not by nodes")
        await sender.broadcast("everyone")
        with anyio.fail_after(TIMEOUT):
            await ty.wait_for(101)
            await tx.wait_for(61)
        assert detail(y_node)["processed"] == 101  # 100 sends + 1 broadcast
        assert detail(x_node)["processed"] == 61
        with anyio.fail_after(TIMEOUT):
            while detail(idle)["processed"] < 1:  # noqa: ASYNC110 - counters have no event
                await anyio.sleep(0.005)
        # the idle node saw the broadcast and nothing else; the sender none of it
        assert detail(idle)["processed"] == 1
        assert detail(idle)["received"] - detail(idle)["own"] == 1
        assert detail(sender)["processed"] == 0
        assert detail(sender)["own"] >= 1  # its broadcast came back and was dropped
        assert detail(y_node)["delivered"] == 101
        assert detail(y_node)["unmatched"] == 0


async def test_namespaces_are_isolated(redis_url: str, namespace: str) -> None:
    async with (
        nodes(redis_url, namespace + "-1", 1) as (one,),
        nodes(redis_url, namespace + "-2", 1) as (two,),
    ):
        t1, t2 = RecordingTransport(), RecordingTransport()
        await one.connect(t1, key="same")
        await two.connect(t2, key="same")
        await one.send("same", "for one")
        await one.broadcast("bcast one")
        await two.send("same", "for two")
        with anyio.fail_after(TIMEOUT):
            await t2.wait_for(1)
        assert t2.sent == ["for two"]
        assert t1.sent == ["for one", "bcast one"]
        assert await one.online_count("same") == 1
        assert await two.online_keys() == {"same"}


async def test_oversized_messages_stay_local_and_are_counted(
    redis_url: str, namespace: str
) -> None:
    async with nodes(redis_url, namespace, 2, max_message_bytes=1000) as (a, b):
        local, remote = RecordingTransport(), RecordingTransport()
        await a.connect(local, key="k")
        await b.connect(remote, key="k")
        assert await a.send("k", "x" * 2000) == 1
        await a.send("k", "small")
        with anyio.fail_after(TIMEOUT):
            await remote.wait_for(1)
        assert remote.sent == ["small"]
        assert local.sent == ["x" * 2000, "small"]
        assert detail(a)["oversized"] == 1
        assert a.stats().backend.errors == 1


# -- emitters --------------------------------------------------------------------------


async def test_async_emitter_reaches_the_cluster(redis_url: str, namespace: str) -> None:
    async with (
        nodes(redis_url, namespace, 2) as (a, b),
        RedisEmitter(redis_url, namespace=namespace) as emitter,
    ):
        ta, tb, other = RecordingTransport(), RecordingTransport(), RecordingTransport()
        conn_a = await a.connect(ta, key="u", groups={"room"})
        await b.connect(tb, key="u")
        await b.connect(other, key="v", groups={"room"})
        assert await emitter.send("u", {"hello": 1}) == 2  # two nodes hold "u"
        assert await emitter.broadcast(b"\x00bin", group="room", exclude=conn_a.id) == 2
        assert await emitter.send_to_connection(conn_a.id, "direct")
        assert not await emitter.send_to_connection("unknown", "lost")
        assert await emitter.broadcast("all") == 2
        assert await emitter.online_count("u") == 2
        assert await emitter.is_online("v")
        assert await emitter.send("nobody", "x") == 0
        with pytest.raises(NotConnected):
            await emitter.send("nobody", "x", require=True)
        with anyio.fail_after(TIMEOUT):
            await ta.wait_for(3)
            await tb.wait_for(2)
            await other.wait_for(2)
        assert ta.messages() == [{"hello": 1}, "direct", "all"]
        assert tb.messages() == [{"hello": 1}, "all"]
        assert other.sent == [b"\x00bin", "all"]


async def test_sync_emitter_from_a_thread(redis_url: str, namespace: str) -> None:
    async with nodes(redis_url, namespace, 1) as (a,):
        transport = RecordingTransport()
        conn = await a.connect(transport, key=7, groups={"g"})

        def worker() -> list[Any]:
            with SyncRedisEmitter(redis_url, namespace=namespace) as emitter:
                results: list[Any] = [emitter.send(7, {"from": "thread"})]
                results.append(emitter.broadcast("group", group="g"))
                results.append(emitter.send_to_connection(conn.id, b"raw"))
                results.append(emitter.online_count(7))
                results.append(emitter.is_online("7"))
                try:
                    emitter.send("7", "x", require=True)
                except NotConnected:
                    results.append("not connected")
                return results

        results = await anyio.to_thread.run_sync(worker)
        assert results == [1, 1, True, 1, False, "not connected"]
        with anyio.fail_after(TIMEOUT):
            await transport.wait_for(3)
        assert transport.messages() == [{"from": "thread"}, "group", b"raw"]


async def test_emitter_reports_unreachable_redis() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with RedisEmitter(url) as emitter:
        with pytest.raises(BackendUnavailable):
            await emitter.send("k", "x")
    with SyncRedisEmitter(url) as sync_emitter, pytest.raises(BackendUnavailable):
        sync_emitter.broadcast("x")


async def test_emitter_checks_arguments(redis_url: str) -> None:
    async with RedisEmitter(redis_url) as emitter:
        with pytest.raises(TypeError):
            await emitter.send(1.5, "x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="group"):
            await emitter.broadcast("x", group="")
        with pytest.raises(TypeError):
            await emitter.send("k", object())
    with pytest.raises(ValueError, match="namespace"):
        RedisEmitter(redis_url, namespace="a b")


def test_public_names() -> None:
    import wsregistry.backends.redis as module

    assert set(module.__all__) == {"RedisBackend", "RedisEmitter", "SyncRedisEmitter"}


def test_missing_redis_py_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['redis'] = None\n"
        "try:\n"
        "    import wsregistry.backends.redis\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'wsregistry[redis]'" in result.stdout


async def test_concurrent_publishers_exactly_once_in_order(redis_url: str, namespace: str) -> None:
    """Three nodes publish at once to a key held on all of them, and to everyone."""
    async with nodes(redis_url, namespace, 3) as registries:
        transports = []
        for registry in registries:
            for _ in range(5):
                transport = RecordingTransport(nowait=True)
                await registry.connect(transport, key="shared", groups={"g"})
                transports.append(transport)

        async def publish(index: int, registry: Registry) -> None:
            for seq in range(100):
                if seq % 2:
                    await registry.send("shared", [index, seq])
                else:
                    await registry.broadcast([index, seq], group="g")
            await registry.broadcast([index, "fence"])  # after it, nothing of index may come

        async with anyio.create_task_group() as tg:
            for index, registry in enumerate(registries):
                tg.start_soon(publish, index, registry)
        with anyio.fail_after(TIMEOUT):
            for transport in transports:
                await transport.wait_for(303)
        for transport in transports:
            got = transport.messages()
            assert len(got) == 303
            for index in range(3):
                assert [seq for i, seq in got if i == index] == [*range(100), "fence"]


@given(
    st.lists(
        st.one_of(st.text(), st.integers(min_value=-(2**80), max_value=2**80)),
        min_size=2,
        max_size=2,
        unique_by=lambda key: (type(key), key),
    )
)
def test_names_never_collide_property(keys: list[str | int]) -> None:
    first, second = keys
    layout = wire.Layout("ns")
    assert wire.name_of(first) != wire.name_of(second)
    assert layout.key_channel(first) != layout.key_channel(second)
    assert layout.group_channel(str(first)) != layout.key_channel(str(first))
    for key in keys:
        assert wire.key_of(wire.name_of(key)) == key
        envelope = Envelope(EnvelopeKind.KEY, str(key), key, None, "n")
        assert wire.unpack(wire.pack(envelope, b"n")) == envelope


async def test_state_callback_errors_are_counted_not_raised(redis_url: str, namespace: str) -> None:
    def broken(health: BackendHealth) -> None:
        raise RuntimeError("callback bug")

    async with nodes(redis_url, namespace, 1, on_state_change=broken) as (a,):
        transport = RecordingTransport()
        await a.connect(transport, key="k")
        assert await a.send("k", "still works") == 1
        assert a.stats().backend.errors >= 1  # the callback failed when it connected
        assert a.stats().backend.connected


async def test_a_live_node_id_cannot_be_reused(redis_url: str, namespace: str) -> None:
    options: dict[str, Any] = {"namespace": namespace, "heartbeat_interval": 0.1}
    async with Registry(backend=RedisBackend(redis_url, **options), node_id="worker-1"):
        duplicate = Registry(backend=RedisBackend(redis_url, **options), node_id="worker-1")
        with pytest.raises(RuntimeError, match="already live"):
            async with duplicate:
                pass
    # after a clean exit (or a crash) the id is free again
    async with Registry(backend=RedisBackend(redis_url, **options), node_id="worker-1") as again:
        await again.connect(RecordingTransport(), key="k")
        assert await again.online_count("k") == 1
