"""The cluster contract every :class:`~wsregistry.Backend` keeps, as an async checker.

:func:`check_backend` builds clusters of registries through a factory you give
it and checks, one promise at a time, what the registry relies on: a send to a
key reaches its connections on every node exactly once, a publisher's order is
kept, broadcasts and group broadcasts reach the right connections, presence
spans the cluster, and hostile key or group names never cross-deliver.

Races are checked too: two connects of one key (two joins of one group) racing
on a node must both return only once the key (group) is reachable, and a
connect cancelled half-way must leave no half state (no stale presence, no
group left unsubscribed for the member that stays).

Exactly-once is checked with a fence: a publisher's messages arrive in order,
so once a connection has the fence it must hold each earlier message exactly
once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial

import anyio

from ..connection import Connection
from ..errors import NotConnected
from ..registry import Registry
from ..testing import RecordingTransport
from ._common import run_checks

__all__ = ["HOSTILE_KEYS", "MakeCluster", "check_backend"]

MakeCluster = Callable[[], AbstractAsyncContextManager[Sequence[Registry]]]
"""Builds a fresh, empty cluster: an async context manager yielding started registries."""

HOSTILE_KEYS: tuple[str | int, ...] = (
    "*",
    "?",
    "[ab]",
    "a",
    "b",
    "a:b",
    "ab",
    "a\nb",
    "a\x00b",
    "a b",
    "\r\n*1\r\n$4\r\nPING\r\n",
    "k:sYQ",
    "é",
    "\ud800",
    "",
    "x" * 10_000,
    "x" * 10_001,
    "1",
    1,
    -1,
    2**70,
)
"""Keys (and group names) that look like patterns, separators or protocol text."""

_POLL = 0.005


async def check_backend(make_cluster: MakeCluster, *, check_timeout: float = 5.0) -> None:
    """Check that registries sharing your backend behave as one cluster.

    Each check calls ``make_cluster()`` for a fresh cluster, uses its first two
    registries as two nodes, and must finish within ``check_timeout`` seconds. Each
    call must give an **empty** cluster: with a shared broker, use a new
    namespace (channel prefix) per call.

    Args:
        make_cluster: returns an async context manager that yields at least two
            started :class:`~wsregistry.Registry` objects, each with its own
            instance of your backend, connected to the same broker. Leaving it
            stops them.
        check_timeout: seconds each check may take (default 5).

    Raises:
        AssertionError: a promise is broken; the message names the check and
            what was expected.
        ValueError: ``make_cluster`` yielded fewer than two registries, or
            ``check_timeout`` is not positive.

    Example:
        In a pytest test (with anyio's pytest plugin)::

            @asynccontextmanager
            async def cluster():
                broker = f"ns-{uuid.uuid4().hex}"
                async with Registry(backend=MyBackend(broker)) as a:
                    async with Registry(backend=MyBackend(broker)) as b:
                        yield [a, b]

            @pytest.mark.anyio
            async def test_my_backend_keeps_the_contract():
                await check_backend(cluster)
    """
    await run_checks(
        [(check.__name__.lstrip("_"), _on_cluster(make_cluster, check)) for check in _CHECKS],
        check_timeout=check_timeout,
    )


def _on_cluster(
    make_cluster: MakeCluster, check: Callable[[Registry, Registry], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        async with make_cluster() as registries:
            if len(registries) < 2:
                raise ValueError(
                    f"make_cluster must yield at least two registries, got {len(registries)}"
                )
            await check(registries[0], registries[1])

    return run


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll broker state (presence has no event to wait on); the check's deadline bounds it."""
    while not await check():  # noqa: ASYNC110 - broker state has no event
        await anyio.sleep(_POLL)


async def _wait_for_frame(frame: str | bytes, *transports: RecordingTransport) -> None:
    for transport in transports:
        while frame not in transport.sent:
            await transport.wait_for(len(transport.sent) + 1)


async def _fenced(
    registry: Registry, key: str | int, *transports: RecordingTransport, fence: str = "fence"
) -> None:
    """Send ``fence`` to ``key`` and wait until every transport has it."""
    await registry.send(key, fence)
    await _wait_for_frame(fence, *transports)


def _expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


async def _send_reaches_every_connection_of_the_key_once(a: Registry, b: Registry) -> None:
    tabs = [RecordingTransport() for _ in range(3)]
    bob = RecordingTransport()
    await a.connect(tabs[0], key="alice")
    await a.connect(tabs[1], key="alice")
    await b.connect(tabs[2], key="alice")
    await b.connect(bob, key="bob")
    _expect(await a.send("alice", {"n": 1}), 2, "a.send('alice') counts a's 2 local connections")
    _expect(await b.send("alice", {"n": 2}), 1, "b.send('alice') counts b's 1 local connection")
    await _fenced(a, "alice", *tabs, fence="fence-a")
    await _fenced(b, "alice", *tabs, fence="fence-b")
    for i, tab in enumerate(tabs):
        for message in ({"n": 1}, {"n": 2}, "fence-a", "fence-b"):
            _expect(tab.messages().count(message), 1, f"copies of {message!r} on alice's tab {i}")
    _expect(bob.sent, [], "frames for bob (sends were to alice)")


async def _sender_node_delivers_locally_without_echo(a: Registry, b: Registry) -> None:
    local, remote = RecordingTransport(), RecordingTransport()
    await a.connect(local, key="k")
    await b.connect(remote, key="k")
    for i in range(50):
        await a.send("k", i)
    await _fenced(a, "k", local, remote)
    expected = [*range(50), "fence"]
    _expect(local.messages(), expected, "frames on the publisher's node (each once, in order)")
    _expect(remote.messages(), expected, "frames on the other node (each once, in order)")


async def _broadcast_reaches_everyone_once_and_honours_exclude(a: Registry, b: Registry) -> None:
    ta, tb1, tb2 = RecordingTransport(), RecordingTransport(), RecordingTransport()
    await a.connect(ta, key="a")
    excluded = await b.connect(tb1, key="b1")
    await b.connect(tb2, key="b2")
    _expect(await a.broadcast("all"), 1, "a.broadcast counts a's 1 local connection")
    await a.broadcast("not-b1", exclude=excluded.id)
    await a.broadcast(b"last")
    await _wait_for_frame(b"last", ta, tb1, tb2)
    _expect(ta.sent, ["all", "not-b1", b"last"], "broadcasts on the publisher's node")
    _expect(tb1.sent, ["all", b"last"], "broadcasts on the excluded connection")
    _expect(tb2.sent, ["all", "not-b1", b"last"], "broadcasts on the other node")


async def _group_broadcast_reaches_members_on_every_node(a: Registry, b: Registry) -> None:
    ma, mb, sender_b, outsider = (RecordingTransport() for _ in range(4))
    await a.connect(ma, key="ma", groups={"room"})
    await b.connect(mb, key="mb", groups={"room"})
    me = await b.connect(sender_b, key="sender", groups={"room"})
    conn_out = await a.connect(outsider, key="out")
    await b.broadcast("hi room", group="room", exclude=me)
    await b.broadcast("end", group="room")
    await _wait_for_frame("end", ma, mb, sender_b)
    _expect(ma.sent, ["hi room", "end"], "group frames on a member on the other node")
    _expect(mb.sent, ["hi room", "end"], "group frames on a member on the publisher's node")
    _expect(sender_b.sent, ["end"], "group frames on the excluded member")
    # join/leave at run time change who receives
    await a.join(conn_out, "room")
    await b.leave(b.lookup("mb")[0], "room")
    await b.broadcast("second", group="room")
    await b.broadcast("end2", group="room")
    await _wait_for_frame("end2", ma, outsider)
    _expect(outsider.sent, ["second", "end2"], "group frames after joining the group")
    _expect(mb.sent, ["hi room", "end"], "group frames after leaving the group")


async def _send_to_connection_on_another_node(a: Registry, b: Registry) -> None:
    target, sibling = RecordingTransport(), RecordingTransport()
    conn = await b.connect(target, key="same")
    await b.connect(sibling, key="same")
    _expect(await a.send_to_connection(conn.id, {"only": "you"}), 0, "local deliveries on a")
    await a.send_to_connection("no-such-connection", "lost")
    await a.send_to_connection(conn.id, "fence")
    await target.wait_for(2)
    _expect(target.messages(), [{"only": "you"}, "fence"], "frames on the target connection")
    _expect(sibling.sent, [], "frames on another connection of the same key")


async def _presence_spans_the_cluster(a: Registry, b: Registry) -> None:
    _expect(await a.is_online("alice"), False, "is_online before any connection")
    _expect(await a.online_count("alice"), 0, "online_count before any connection")
    c1 = await a.connect(RecordingTransport(), key="alice")
    c2 = await b.connect(RecordingTransport(), key="alice")
    await b.connect(RecordingTransport(), key=7)
    _expect(await a.online_count("alice"), 2, "a.online_count('alice'), one on each node")
    _expect(await b.online_count("alice"), 2, "b.online_count('alice'), one on each node")
    _expect(await a.is_online(7), True, "a.is_online(7) for a connection on b")
    _expect(await a.is_online("7"), False, "a.is_online('7') when only the int 7 is online")
    _expect(await a.online_keys(), {"alice", 7}, "a.online_keys()")
    await b.disconnect(c2)
    await _until(lambda: _equals(a.online_count("alice"), 1))
    await a.disconnect(c1)
    await _until(lambda: _equals(b.is_online("alice"), False))
    _expect(await b.online_keys(), {7}, "b.online_keys() after alice left both nodes")


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _require_raises_only_when_offline_everywhere(a: Registry, b: Registry) -> None:
    remote = RecordingTransport()
    await b.connect(remote, key="alice")
    _expect(await a.send("alice", "you are there", require=True), 0, "a.send(require=True) locally")
    await remote.wait_for(1)
    try:
        await a.send("nobody", "x", require=True)
    except NotConnected as exc:
        _expect(exc.key, "nobody", "NotConnected.key")
    else:
        raise AssertionError("send('nobody', require=True) did not raise NotConnected")


def _group_of(key: str | int) -> str:
    return key if isinstance(key, str) and key else "g-empty"


async def _hostile_names_never_cross_deliver(a: Registry, b: Registry) -> None:
    transports = [RecordingTransport() for _ in HOSTILE_KEYS]
    for transport, key in zip(transports, HOSTILE_KEYS, strict=True):
        await b.connect(transport, key=key, groups={_group_of(key)})
    for i, key in enumerate(HOSTILE_KEYS):
        await a.send(key, f"key-{i}")
        await a.broadcast(f"group-{i}", group=_group_of(key))
    await a.broadcast("end")
    await _wait_for_frame("end", *transports)
    for i, key in enumerate(HOSTILE_KEYS):
        expected_groups = [
            f"group-{j}"
            for j, other in enumerate(HOSTILE_KEYS)
            if _group_of(other) == _group_of(key)
        ]
        got = transports[i].sent
        _expect(
            [m for m in got if str(m).startswith("key-")], [f"key-{i}"], f"sends to key {key!r}"
        )
        _expect(
            [m for m in got if str(m).startswith("group-")],
            expected_groups,
            f"broadcasts to group {_group_of(key)!r}",
        )
    _expect(await a.online_keys(), set(HOSTILE_KEYS), "online_keys() with hostile keys")
    for key in HOSTILE_KEYS:
        _expect(await a.online_count(key), 1, f"online_count({key!r})")


async def _interest_survives_quick_leave_and_return(a: Registry, b: Registry) -> None:
    for _ in range(5):
        conn = await b.connect(RecordingTransport(), key="flappy", groups={"fg"})
        await b.disconnect(conn)
    last = RecordingTransport()
    await b.connect(last, key="flappy", groups={"fg"})
    await a.send("flappy", "to key")
    await a.broadcast("to group", group="fg")
    await last.wait_for(2)
    _expect(last.sent, ["to key", "to group"], "frames after leaving and returning 5 times")
    _expect(await a.online_count("flappy"), 1, "online_count('flappy')")


async def _publisher_order_is_kept_across_kinds(a: Registry, b: Registry) -> None:
    remote = RecordingTransport()
    conn = await b.connect(remote, key="ordered", groups={"og"})
    for i in range(300):
        if i % 3 == 0:
            await a.send("ordered", i)
        elif i % 3 == 1:
            await a.broadcast(i, group="og")
        else:
            await a.broadcast(i)
    await a.send_to_connection(conn.id, 300)
    await remote.wait_for(301)
    _expect(remote.messages(), list(range(301)), "order of a publisher's sends/broadcasts on b")


def _wait_local(condition: Callable[[], bool]) -> Awaitable[None]:
    async def check() -> bool:
        return condition()

    return _until(check)


def _is_member(conn: Connection, group: str) -> bool:
    return group in conn.groups


def _is_local(registry: Registry, key: str) -> bool:
    return bool(registry.lookup(key))


async def _connect(registry: Registry, transport: RecordingTransport, key: str) -> None:
    await registry.connect(transport, key=key)


async def _racing_connects_of_one_key_are_reachable(a: Registry, b: Registry) -> None:
    for round_ in range(5):
        key = f"racy-{round_}"
        first, second = RecordingTransport(), RecordingTransport()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_connect, b, first, key)
            await _wait_local(partial(_is_local, b, key))
            await b.connect(second, key=key)  # the second connect of the key
            await a.send(key, "right after the second connect")
        await _fenced(a, key, first, second, fence=f"fence-{round_}")
        for name, transport in (("first", first), ("second", second)):
            _expect(
                transport.sent.count("right after the second connect"),
                1,
                f"copies on the {name} of two racing connects of {key!r}, sent from the other "
                "node right after the second returned",
            )


async def _racing_joins_of_one_group_are_reachable(a: Registry, b: Registry) -> None:
    for round_ in range(5):
        group = f"racy-room-{round_}"
        one, two = RecordingTransport(), RecordingTransport()
        conn_one = await b.connect(one, key=f"one-{round_}")
        conn_two = await b.connect(two, key=f"two-{round_}")
        async with anyio.create_task_group() as tg:
            tg.start_soon(b.join, conn_one, group)
            await _wait_local(partial(_is_member, conn_one, group))
            await b.join(conn_two, group)  # the second join of the group
            await a.broadcast("right after the second join", group=group)
        await _fenced(a, f"one-{round_}", one, fence=f"fence-one-{round_}")
        await _fenced(a, f"two-{round_}", two, fence=f"fence-two-{round_}")
        for name, transport in (("first", one), ("second", two)):
            _expect(
                transport.sent.count("right after the second join"),
                1,
                f"copies on the {name} of two racing joins of {group!r}, broadcast from the "
                "other node right after the second returned",
            )


async def _cancelled_connect_leaves_no_half_state(a: Registry, b: Registry) -> None:
    stays = RecordingTransport()
    member = await b.connect(stays, key="stays")
    scope = anyio.CancelScope()
    made: list[Connection] = []

    async def connect_then_maybe_cancelled() -> None:
        with scope:
            made.append(await b.connect(RecordingTransport(), key="half", groups={"hg"}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(connect_then_maybe_cancelled)
        await _wait_local(lambda: bool(b.members("hg")) or bool(made))
        tg.start_soon(b.join, member, "hg")
        await _wait_local(lambda: "hg" in member.groups)
        scope.cancel()  # the first member's connect, if still running, is cancelled
    for conn in made:  # it finished before the cancellation: leave like a client would
        await b.disconnect(conn)
    _expect(b.lookup("half"), (), "local connections of the key whose connect was cancelled")
    _expect([conn.key for conn in b.members("hg")], ["stays"], "local members of 'hg'")
    for i in range(3):
        await a.broadcast(f"hg-{i}", group="hg")
    await _fenced(a, "stays", stays)
    _expect(
        [m for m in stays.sent if str(m).startswith("hg-")],
        ["hg-0", "hg-1", "hg-2"],
        "group broadcasts on the member that stayed after a racing connect was cancelled",
    )
    await _until(lambda: _equals(a.online_count("half"), 0))
    _expect(await a.online_keys(), {"stays"}, "a.online_keys() after the cancelled connect")


_CHECKS: tuple[Callable[[Registry, Registry], Awaitable[None]], ...] = (
    _send_reaches_every_connection_of_the_key_once,
    _sender_node_delivers_locally_without_echo,
    _broadcast_reaches_everyone_once_and_honours_exclude,
    _group_broadcast_reaches_members_on_every_node,
    _send_to_connection_on_another_node,
    _presence_spans_the_cluster,
    _require_raises_only_when_offline_everywhere,
    _hostile_names_never_cross_deliver,
    _interest_survives_quick_leave_and_return,
    _publisher_order_is_kept_across_kinds,
    _racing_connects_of_one_key_are_reachable,
    _racing_joins_of_one_group_are_reachable,
    _cancelled_connect_leaves_no_half_state,
)
