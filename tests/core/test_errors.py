"""Semantic 6: all-or-nothing errors, argument checks, lifecycle errors."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from wsregistry import (
    Registry,
    RegistryClosed,
    RegistryNotStarted,
    SerializationError,
    WSRegistryError,
)
from wsregistry.testing import RecordingTransport

pytestmark = pytest.mark.anyio

BAD_MESSAGES = [
    {"x": object()},
    [1, {2, 3}],
    {"nan": math.nan},
    {"inf": math.inf},
    {1j: "complex key"},
]


@pytest.mark.parametrize("message", BAD_MESSAGES)
@pytest.mark.parametrize("nowait", [False, True])
async def test_unserialisable_message_raises_before_anything_is_sent(
    message: Any, nowait: bool
) -> None:
    async with Registry() as registry:
        transports = [RecordingTransport(nowait=nowait) for _ in range(3)]
        conns = [await registry.connect(t, key="k", groups=["g"]) for t in transports]
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: registry.send("k", message),
            lambda: registry.send("k", message, require=True),
            lambda: registry.broadcast(message),
            lambda: registry.broadcast(message, group="g", exclude=conns[0]),
            lambda: registry.send_to_connection(conns[1].id, message),
            lambda: conns[2].send(message),
        ]
        for call in calls:
            with pytest.raises(SerializationError) as info:
                await call()
            assert isinstance(info.value, TypeError)
            assert isinstance(info.value, WSRegistryError)
        sync_calls: list[Callable[[], object]] = [
            lambda: registry.send_threadsafe("k", message),
            lambda: registry.broadcast_threadsafe(message, group="g"),
        ]
        for sync_call in sync_calls:
            with pytest.raises(SerializationError):
                sync_call()
        for _ in range(10):  # give any wrongly-started writer a chance to run
            await anyio.lowlevel.checkpoint()
        assert all(t.sent == [] for t in transports)
        assert registry.stats().sent == 0
        assert registry.stats().queued == 0


async def test_serializer_failures_become_serialization_errors() -> None:
    def returns_int(message: Any) -> Any:
        return 42

    def raises_value_error(message: Any) -> str:
        raise ValueError("no")

    for serializer in (returns_int, raises_value_error):
        async with Registry(serializer=serializer) as registry:
            transport = RecordingTransport(nowait=True)
            await registry.connect(transport, key="k")
            with pytest.raises(SerializationError):
                await registry.broadcast({"a": 1})
            assert transport.sent == []
            await registry.broadcast("text passes through")  # str/bytes skip the serializer
            await registry.broadcast(b"\x00\x01")
            assert transport.sent == ["text passes through", b"\x00\x01"]


async def test_serialised_once_per_call_whatever_the_target_count() -> None:
    calls = 0

    def counting(message: Any) -> str:
        nonlocal calls
        calls += 1
        return repr(message)

    async with Registry(serializer=counting) as registry:
        for i in range(50):
            await registry.connect(RecordingTransport(), key=i % 5, groups=["g"])
        await registry.broadcast({"a": 1})
        await registry.broadcast({"a": 1}, group="g")
        await registry.send(1, {"a": 1})
    assert calls == 3


BAD_KEYS = [True, False, 1.5, None, ["k"], ("k",), b"k", object()]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_bad_key_types_raise_type_error(key: Any) -> None:
    async with Registry() as registry:
        transport = RecordingTransport()
        with pytest.raises(TypeError):
            await registry.connect(transport, key=key)
        assert registry.stats().connections == 0
        with pytest.raises(TypeError):
            await registry.send(key, "x")
        with pytest.raises(TypeError):
            registry.lookup(key)
        with pytest.raises(TypeError):
            await registry.is_online(key)
        with pytest.raises(TypeError):
            await registry.online_count(key)
        with pytest.raises(TypeError):
            registry.send_threadsafe(key, "x")


async def test_good_keys_are_str_and_int() -> None:
    async with Registry() as registry:
        a = await registry.connect(RecordingTransport(), key="1")
        b = await registry.connect(RecordingTransport(), key=1)
        assert registry.lookup("1") == (a,)  # "1" and 1 are different keys
        assert registry.lookup(1) == (b,)


@pytest.mark.parametrize("group", [5, None, b"g", ""], ids=repr)
async def test_bad_groups_raise(group: Any) -> None:
    async with Registry() as registry:
        with pytest.raises((TypeError, ValueError)):
            await registry.connect(RecordingTransport(), key="k", groups=[group])
        assert registry.stats().connections == 0
        conn = await registry.connect(RecordingTransport(), key="k")
        with pytest.raises((TypeError, ValueError)):
            await registry.join(conn, group)
        if group is not None:  # group=None means everyone
            with pytest.raises((TypeError, ValueError)):
                await registry.broadcast("x", group=group)
        with pytest.raises(TypeError):
            await registry.connect(RecordingTransport(), key="k", groups="single-str")


class OnlySend:
    async def send(self, data: str | bytes) -> None:
        pass


@pytest.mark.parametrize("transport", [object(), "ws", None, 42, OnlySend()], ids=repr)
async def test_non_transports_raise_type_error(transport: Any) -> None:
    async with Registry() as registry:
        with pytest.raises(TypeError, match="transport"):
            await registry.connect(transport, key="k")
        assert registry.stats().connections == 0


async def test_wrong_argument_types_of_calls() -> None:
    async with Registry() as registry, Registry() as other:
        conn = await registry.connect(RecordingTransport(), key="k", groups=["g"])
        foreign = await other.connect(RecordingTransport(), key="k", groups=["g"])
        with pytest.raises(TypeError):
            await registry.disconnect("not a connection")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.broadcast("x", exclude=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.send_to_connection(5, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.join("conn", "g")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await registry.leave("conn", "g")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="another registry"):
            await registry.join(foreign, "h")
        with pytest.raises(ValueError, match="another registry"):
            await registry.leave(foreign, "g")
        assert foreign.groups == {"g"}
        assert other.members("g") == (foreign,)
        assert registry.members("g") == (conn,)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_queue": 0}, ValueError),
        ({"max_queue": -1}, ValueError),
        ({"max_queue_bytes": 0}, ValueError),
        ({"drain_timeout": -1}, ValueError),
        ({"drain_timeout": math.nan}, ValueError),
        ({"close_timeout": -0.5}, ValueError),
        ({"close_timeout": math.nan}, ValueError),
        ({"overflow": "explode"}, ValueError),
        ({"max_queue": 1.5}, TypeError),
        ({"max_queue": True}, TypeError),
        ({"max_queue_bytes": "1MB"}, TypeError),
        ({"drain_timeout": "5"}, TypeError),
        ({"close_timeout": None}, TypeError),
        ({"backend": object()}, TypeError),
        ({"serializer": "json"}, TypeError),
    ],
    ids=repr,
)
def test_nonsensical_options_raise_at_construction(kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        Registry(**kwargs)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Registry(None)  # type: ignore[call-arg]


async def test_use_before_start_and_after_close_raise_named_errors() -> None:
    registry = Registry()
    transport = RecordingTransport()
    conn_holder: list[Any] = []

    def calls() -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        return [
            ("connect", lambda: registry.connect(transport, key="k")),
            ("send", lambda: registry.send("k", "x")),
            ("broadcast", lambda: registry.broadcast("x")),
            ("send_to_connection", lambda: registry.send_to_connection("id", "x")),
            ("is_online", lambda: registry.is_online("k")),
            ("online_count", lambda: registry.online_count("k")),
            ("online_keys", registry.online_keys),
        ]

    for name, call in calls():
        with pytest.raises(RegistryNotStarted) as not_started:
            await call()
        assert isinstance(not_started.value, RuntimeError)
        assert isinstance(not_started.value, RegistryClosed)  # "not open", like after close
        assert name in str(not_started.value)
    assert registry.lookup("k") == ()
    assert registry.connections() == ()
    assert registry.stats().connections == 0
    assert not registry.running

    async with registry:
        conn_holder.append(await registry.connect(RecordingTransport(), key="k"))
    (conn,) = conn_holder

    for name, call in calls():
        with pytest.raises(RegistryClosed) as closed:
            await call()
        assert name in str(closed.value)
    with pytest.raises(RegistryClosed):
        await registry.join(conn, "g")
    # cleanup calls stay harmless after close
    await registry.disconnect(conn)
    await registry.leave(conn, "g")
    await conn.close()
    assert registry.lookup("k") == ()
    assert registry.stats().connections == 0
    assert "closed" in repr(registry)
