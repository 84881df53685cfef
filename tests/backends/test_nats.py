"""The NATS backend: names on the wire, options, lifecycle, and failures of private nats-servers
(a restart mid-traffic, a 3-node cluster losing a node mid-traffic)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import TIMEOUT
from wsregistry import BackendHealth, BackendUnavailable, Envelope, EnvelopeKind, Registry
from wsregistry.backends import _nats_wire as wire
from wsregistry.backends.nats import NatsBackend
from wsregistry.contracts import HOSTILE_KEYS
from wsregistry.testing import RecordingTransport

from .nats_support import (
    SHARED_NATS,
    PrivateNats,
    delete_streams,
    new_namespace,
    running_cluster,
    wait_jetstream,
)
from .support import until

pytestmark = [pytest.mark.anyio]

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "reconnect_wait": 0.05,
    "ping_interval": 0.5,
    "op_timeout": 2.0,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- names and envelopes (no server) ---------------------------------------------------


def test_tokens_are_injective_literal_subject_tokens() -> None:
    names: list[str | int] = [*HOSTILE_KEYS, ">", ".", "a.b", "a.*", " ", "\t", "42", 42, "i42"]
    tokens = [wire.name_of(name) for name in names]
    assert len(set(tokens)) == len(names)  # 42 and "42", "a.b" and "a", "b"... never collide
    for name, token in zip(names, tokens, strict=True):
        assert wire.key_of(token) == name
        short = wire.subject_token(name)
        assert len(short) <= wire.MAX_TOKEN + 1
        assert not set(short) & set(".*> \t\r\n\x00"), short
    layout = wire.Layout("ns")
    for name in names:
        subject = layout.key_subject(name)
        assert subject.count(".") == 2
        assert "*" not in subject
        assert ">" not in subject
        node = wire.subject_token("node-1")
        assert layout.split_entry(layout.entry(name, node, "c1")) == (
            wire.subject_token(name),
            node,
        )


def test_envelopes_round_trip() -> None:
    for envelope in (
        Envelope(EnvelopeKind.KEY, "text \ud800", 42, None, "node"),
        Envelope(EnvelopeKind.KEY, b"\x00bin", "42", "conn-x", "node"),
        Envelope(EnvelopeKind.GROUP, "g", "*.>", "c", "n"),
        Envelope(EnvelopeKind.BROADCAST, "all", None, None, "n"),
        Envelope(EnvelopeKind.CONNECTION, "one", "conn-id", None, "n"),
    ):
        data = wire.pack(envelope, envelope.origin.encode())
        assert wire.peek(data)[1] == envelope.origin.encode()
        assert wire.unpack(data) == envelope
    with pytest.raises(wire.WireError):
        wire.unpack(b"\x09garbage-garbage")


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="namespace"):
        NatsBackend(namespace="a.b")
    with pytest.raises(ValueError, match="presence_timeout"):
        NatsBackend(heartbeat_interval=1, presence_timeout=1)
    with pytest.raises(ValueError, match="replicas"):
        NatsBackend(replicas=0)
    with pytest.raises(ValueError, match="storage"):
        NatsBackend(storage="disk")
    with pytest.raises(TypeError, match="servers"):
        NatsBackend([])
    with pytest.raises(TypeError, match="heartbeat_interval"):
        NatsBackend(heartbeat_interval="1")  # type: ignore[arg-type]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="asyncio"):
        async with Registry(backend=NatsBackend(SHARED_NATS)):
            pass


# -- helpers ---------------------------------------------------------------------------


def health(registry: Registry) -> BackendHealth:
    return registry.stats().backend


async def _connected(*registries: Registry) -> bool:
    return all(health(registry).connected for registry in registries)


async def _disconnected(*registries: Registry) -> bool:
    return not any(health(registry).connected for registry in registries)


@asynccontextmanager
async def nodes(
    urls: Sequence[Sequence[str]], namespace: str, **options: Any
) -> AsyncIterator[list[Registry]]:
    """One registry per entry of ``urls`` (its servers, tried in order)."""
    async with AsyncExitStack() as stack:
        registries = []
        for servers in urls:
            backend = NatsBackend(
                list(servers),
                namespace=namespace,
                connect_options={"dont_randomize": True},
                **{**FAST, **options},
            )
            registries.append(await stack.enter_async_context(Registry(backend=backend)))
        yield registries


def assert_exactly_once_in_order(received: list[Any], *, what: str) -> None:
    assert len(received) == len(set(received)), f"duplicates on {what}: {received}"
    assert received == sorted(received), f"out of order on {what}: {received}"


class Sender:
    """Sends increasing numbers to a key from a task until stopped (traffic across a fault)."""

    def __init__(self, registry: Registry, key: str) -> None:
        self.registry = registry
        self.key = key
        self.sent = 0
        self.stopped = anyio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            await self.registry.send(self.key, self.sent)
            self.sent += 1
            await anyio.sleep(0.002)


# -- lifecycle on the shared server ----------------------------------------------------


@pytest.mark.nats
async def test_registry_enters_again_and_a_clean_exit_removes_presence() -> None:
    namespace = new_namespace()
    backend = NatsBackend(SHARED_NATS, namespace=namespace, **FAST)
    try:
        async with nodes([[SHARED_NATS]], namespace) as (observer,):
            registry = Registry(backend=backend)
            for run in range(2):  # the registry is entered again: its backend starts again
                async with registry:
                    assert health(registry).connected
                    assert health(registry).name == "nats"
                    remote = RecordingTransport()
                    await registry.connect(remote, key="again")
                    assert await observer.online_count("again") == 1
                    await observer.send("again", run)
                    with anyio.fail_after(TIMEOUT):
                        await remote.wait_for(1)
                    assert remote.messages() == [run]
                assert not health(registry).connected
                assert await observer.online_count("again") == 0  # removed at once, not expired
    finally:
        await delete_streams(SHARED_NATS, namespace)


@pytest.mark.nats
async def test_interest_routing_only_holders_receive_key_and_group_traffic() -> None:
    namespace = new_namespace()
    try:
        async with nodes([[SHARED_NATS]] * 3, namespace) as (holder, sender, bystander):
            tab = RecordingTransport()
            await holder.connect(tab, key="alice", groups={"room"})
            for i in range(30):
                await sender.send("alice", i)
                await sender.broadcast(i, group="room")
            with anyio.fail_after(TIMEOUT):
                await tab.wait_for(60)
            await sender.broadcast("everyone")
            await until(lambda: _true(health(bystander).detail["received"] == 1))
            assert health(holder).detail["processed"] == 61
            assert health(bystander).detail["processed"] == 1  # only the broadcast
            conn = await bystander.connect(RecordingTransport(), key="alice")
            await holder.disconnect(await _only(holder, "alice"))
            await sender.send("alice", "moved")
            await until(lambda: _true(health(bystander).detail["processed"] == 2))
            assert health(holder).detail["delivered"] == 61  # "moved" went to the new holder
            await bystander.disconnect(conn)
    finally:
        await delete_streams(SHARED_NATS, namespace)


async def _only(registry: Registry, key: str) -> Any:
    (conn,) = registry.lookup(key)
    return conn


@pytest.mark.nats
async def test_start_fails_cleanly_when_nats_is_down() -> None:
    from tests.backends.conftest import free_port

    backend = NatsBackend(f"nats://127.0.0.1:{free_port()}", op_timeout=0.5)
    with pytest.raises(BackendUnavailable):
        async with Registry(backend=backend):
            pass


@pytest.mark.nats
async def test_a_node_whose_lease_was_lost_while_alive_writes_its_presence_again() -> None:
    import nats

    namespace = new_namespace()
    try:
        async with nodes([[SHARED_NATS]] * 2, namespace) as (a, b):
            await a.connect(RecordingTransport(), key="stalled")
            assert await b.online_count("stalled") == 1
            # what a reaper does to a node that stalled past presence_timeout
            node = wire.subject_token(a.node_id)
            layout = wire.Layout(namespace)
            client = await nats.connect(SHARED_NATS)
            try:
                for stream, subject in (
                    (layout.lease_stream, layout.lease(node)),
                    (layout.presence_stream, layout.node_entries(node)),
                ):
                    await client.request(
                        f"$JS.API.STREAM.PURGE.{stream}", f'{{"filter": "{subject}"}}'.encode()
                    )
            finally:
                await client.close()
            assert await b.online_count("stalled") == 0
            await until(lambda: _true(health(a).detail["lease_lost"] >= 1))
            await until(lambda: _equal(b.online_count("stalled"), 1))
    finally:
        await delete_streams(SHARED_NATS, namespace)


# -- a private server that goes away ---------------------------------------------------


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.nats
async def test_restart_mid_traffic_local_delivery_goes_on_then_remote_resumes_without_duplicates(
    private_nats: PrivateNats,
) -> None:
    namespace = new_namespace()
    states: list[bool] = []
    async with nodes(
        [[private_nats.url]] * 2, namespace, on_state_change=lambda h: states.append(h.connected)
    ) as (a, b):
        local, remote = RecordingTransport(), RecordingTransport()
        await a.connect(local, key="k")
        await b.connect(remote, key="k")
        sender = Sender(a, "k")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.run)
            await until(lambda: _true(len(remote.sent) >= 20))

            private_nats.kill()
            await until(lambda: _disconnected(a, b))
            errors = a.stats().backend_errors
            with pytest.raises(BackendUnavailable):
                await a.backend.publish(Envelope(EnvelopeKind.BROADCAST, "x", None, None, "me"))
            sent_while_down = sender.sent
            await until(lambda: _true(sender.sent >= sent_while_down + 20))  # local goes on
            assert a.stats().backend_errors > errors
            with pytest.raises(BackendUnavailable):
                await a.online_count("k")

            private_nats.start()  # same port, same store
            await until(lambda: _connected(a, b), within=3 * TIMEOUT)
            await until(lambda: _true(health(a).reconnects >= 1 and health(b).reconnects >= 1))
            resumed_from = sender.sent
            await until(
                lambda: _true(bool(remote.messages()) and remote.messages()[-1] > resumed_from + 20)
            )
            sender.stopped.set()
        assert local.messages() == list(range(sender.sent))  # local delivery never stopped
        assert_exactly_once_in_order(remote.messages(), what="the remote tab")
        await until(lambda: _equal(a.online_count("k"), 2))  # presence re-asserted
        assert states[:1] == [True]
        assert False in states
        assert states[-1] is True


@pytest.mark.nats
async def test_connect_and_shutdown_while_nats_is_down_are_prompt_and_leave_no_task(
    private_nats: PrivateNats,
) -> None:
    import asyncio
    import time

    before = len(asyncio.all_tasks())
    async with nodes([[private_nats.url]], new_namespace()) as (registry,):
        tab = RecordingTransport()
        await registry.connect(tab, key="a", groups={"g"})
        private_nats.kill()
        await until(lambda: _disconnected(registry))
        with anyio.fail_after(0.5):  # hooks never wait for a broker that is down
            await registry.connect(RecordingTransport(), key="b", groups={"h"})
        assert await registry.send("a", "local") == 1
        with anyio.fail_after(TIMEOUT):
            await tab.wait_for(1)
        closing_at = time.monotonic()
    assert time.monotonic() - closing_at < FAST["op_timeout"]
    await until(lambda: _true(len(asyncio.all_tasks()) <= before))


# -- a 3-node NATS cluster -------------------------------------------------------------


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[PrivateNats]]:
    with running_cluster(tmp_path) as servers:
        yield servers


@pytest.mark.nats
async def test_three_node_cluster_exactly_once_and_a_node_killed_mid_traffic(
    nats_cluster: list[PrivateNats],
) -> None:
    urls = [server.url for server in nats_cluster]
    for url in urls:
        await wait_jetstream(url)
    namespace = new_namespace()
    # registry i is attached to server i and fails over to the others; presence has 3 replicas
    attach = [[urls[i], *urls[:i], *urls[i + 1 :]] for i in range(3)]
    async with nodes(attach, namespace, replicas=3) as (r0, r1, r2):
        tabs = [RecordingTransport() for _ in range(3)]
        for registry, tab in zip((r0, r1, r2), tabs, strict=True):
            await registry.connect(tab, key="alice", groups={"room"})
        bob = RecordingTransport()
        await r1.connect(bob, key="bob")
        assert await r2.online_count("alice") == 3
        for i in range(50):
            await (r0, r1, r2)[i % 3].send("alice", i)
            await r2.broadcast(("room", i), group="room")
        with anyio.fail_after(TIMEOUT):
            for tab in tabs:
                await tab.wait_for(100)
        for tab in tabs:
            messages = tab.messages()
            numbers = [m for m in messages if isinstance(m, int)]
            assert sorted(numbers) == list(range(50))  # exactly once
            for publisher in range(3):  # each publisher's order is kept
                assert [n for n in numbers if n % 3 == publisher] == list(range(publisher, 50, 3))
            assert [m[1] for m in messages if isinstance(m, list)] == list(range(50))
        assert bob.messages() == []  # interest routing: nothing for alice reached bob

        sender = Sender(r0, "alice")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender.run)
            await until(lambda: _true(len(tabs[2].sent) >= 120))
            nats_cluster[2].kill()  # r2's server: r2 fails over to n0 or n1
            await until(lambda: _true(health(r2).reconnects >= 1), within=3 * TIMEOUT)
            resumed_from = sender.sent
            for tab in tabs:
                await until(lambda tab=tab: _true(tab.messages()[-1] > resumed_from + 20))  # type: ignore[misc]
            sender.stopped.set()
        for i, tab in enumerate(tabs):
            streamed = [m for m in tab.messages()[100:] if isinstance(m, int)]
            assert_exactly_once_in_order(streamed, what=f"tab {i}")
        assert tabs[0].messages()[100:] == list(range(sender.sent))  # r0 delivers locally
        assert tabs[1].messages()[100:] == list(range(sender.sent))  # r1's server stayed up
        # r2 re-asserted presence (JetStream may be electing new leaders for a few seconds)
        await until(lambda: _equal_when_up(r0.online_count("alice"), 3), within=4 * TIMEOUT)
        assert health(r2).connected


async def _true(value: bool) -> bool:
    return value


async def _equal_when_up(awaitable: Any, expected: Any) -> bool:
    try:
        return bool(await awaitable == expected)
    except BackendUnavailable:
        return False


async def _equal(awaitable: Any, expected: Any) -> bool:
    return bool(await awaitable == expected)
