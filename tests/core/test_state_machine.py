"""A stateful property test of the registry against a plain Python model.

Each hypothesis step runs one registry call on a real event loop (asyncio or
trio, through an anyio blocking portal), then lets every writer finish, so the
model can say exactly what each connection must have received by then.
"""

from __future__ import annotations

import itertools
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from wsregistry import CloseCode, Connection, Registry
from wsregistry.testing import FailingTransport, RecordingTransport

from ..helpers import TIMEOUT

KEYS = st.sampled_from(["alice", "bob", 7, 8])
GROUPS = st.sampled_from(["red", "blue", "green"])


@dataclass(eq=False)
class ModelConn:
    """What the model knows about one connection."""

    conn: Connection
    transport: RecordingTransport
    key: str | int
    fail_after: int | None  # frames accepted before the transport breaks
    nowait: bool
    alive: bool = True
    broke: bool = False
    expected: list[str] = field(default_factory=list)

    def aim(self, frame: str) -> bool:
        """The registry targets this connection with ``frame``; returns whether it counts."""
        if self.fail_after is not None and len(self.expected) >= self.fail_after:
            self.alive = False  # this frame breaks the transport
            self.broke = True
            return not self.nowait  # queued before the writer found out, or failed inline
        self.expected.append(frame)
        return True


class RegistryMachine(RuleBasedStateMachine):
    backend = "asyncio"

    conns = Bundle("conns")

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        self.portal = self._stack.enter_context(
            anyio.from_thread.start_blocking_portal(self.backend)
        )
        self.registry = Registry(drain_timeout=TIMEOUT, close_timeout=TIMEOUT)
        self._stack.enter_context(self.portal.wrap_async_context_manager(self.registry))
        self.order: list[ModelConn] = []  # connection order
        self.groups: dict[str, list[ModelConn]] = {}  # join order
        self.frames = itertools.count()

    # -- helpers ------------------------------------------------------------------------

    def run(self, func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` on the loop, then wait until every queue is written out."""

        async def step() -> Any:
            result = await func(*args)
            with anyio.fail_after(TIMEOUT):
                while self.registry.stats().queued or any(
                    not c.idle for c in self.registry.connections()
                ):
                    await anyio.lowlevel.checkpoint()
            return result

        return self.portal.call(step)

    def live(self) -> list[ModelConn]:
        return [m for m in self.order if m.alive]

    def forget(self, model: ModelConn) -> None:
        model.alive = False
        for members in self.groups.values():
            if model in members:
                members.remove(model)

    def deliver(self, targets: list[ModelConn], frame: str) -> int:
        counted = 0
        for model in targets:
            if model.alive:
                counted += model.aim(frame)
                if not model.alive:
                    self.forget(model)
        return counted

    def frame(self) -> str:
        return f"m{next(self.frames)}"

    # -- rules --------------------------------------------------------------------------

    @rule(
        target=conns,
        key=KEYS,
        groups=st.sets(GROUPS, max_size=2),
        nowait=st.booleans(),
        fail_after=st.one_of(st.none(), st.none(), st.integers(0, 3)),
    )
    def connect(
        self, key: str | int, groups: set[str], nowait: bool, fail_after: int | None
    ) -> ModelConn:
        transport = (
            RecordingTransport(nowait=nowait)
            if fail_after is None
            else FailingTransport(fail_after=fail_after, nowait=nowait)
        )
        conn = self.run(lambda: self.registry.connect(transport, key=key, groups=sorted(groups)))
        model = ModelConn(conn, transport, key, fail_after, nowait)
        self.order.append(model)
        for group in sorted(groups):
            self.groups.setdefault(group, []).append(model)
        return model

    @rule(model=consumes(conns))
    def disconnect(self, model: ModelConn) -> None:
        self.run(self.registry.disconnect, model.conn)
        self.forget(model)

    @rule(model=conns)
    def disconnect_again(self, model: ModelConn) -> None:
        if not model.alive:  # idempotent on a gone connection
            self.run(self.registry.disconnect, model.conn)

    @rule(model=conns, group=GROUPS)
    def join(self, model: ModelConn, group: str) -> None:
        if not model.alive:
            return  # joining a closed connection raises; covered by unit tests
        self.run(self.registry.join, model.conn, group)
        members = self.groups.setdefault(group, [])
        if model not in members:
            members.append(model)

    @rule(model=conns, group=GROUPS)
    def leave(self, model: ModelConn, group: str) -> None:
        self.run(self.registry.leave, model.conn, group)
        members = self.groups.get(group, [])
        if model in members:
            members.remove(model)

    @rule(key=KEYS)
    def send(self, key: str | int) -> None:
        frame = self.frame()
        count = self.run(self.registry.send, key, frame)
        assert count == self.deliver([m for m in self.live() if m.key == key], frame)

    @rule(
        group=st.one_of(st.none(), GROUPS),
        exclude=st.one_of(st.none(), conns),
    )
    def broadcast(self, group: str | None, exclude: ModelConn | None) -> None:
        frame = self.frame()
        exclude_conn = exclude.conn if exclude is not None else None
        count = self.run(lambda: self.registry.broadcast(frame, group=group, exclude=exclude_conn))
        targets = self.live() if group is None else list(self.groups.get(group, []))
        assert count == self.deliver([m for m in targets if m is not exclude], frame)

    @rule(model=conns)
    def conn_send(self, model: ModelConn) -> None:
        if not model.alive:
            return
        frame = self.frame()
        self.run(model.conn.send, frame)
        self.deliver([model], frame)

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def frames_match(self) -> None:
        for model in self.order:
            assert model.transport.sent == model.expected
            assert model.conn.closed is not model.alive

    @invariant()
    def lookups_match(self) -> None:
        registry = self.registry
        live = self.live()
        assert registry.connections() == tuple(m.conn for m in live)
        keys = {m.key for m in live}
        for key in ("alice", "bob", 7, 8):
            assert registry.lookup(key) == tuple(m.conn for m in live if m.key == key)
        for group in ("red", "blue", "green"):
            members = self.groups.get(group, [])
            assert registry.members(group) == tuple(m.conn for m in members)
            for model in members:
                assert group in model.conn.groups
        stats = registry.stats()
        assert stats.connections == len(live)
        assert stats.keys == len(keys)
        assert stats.groups == sum(1 for members in self.groups.values() if members)
        assert stats.queued == 0
        assert stats.send_errors == sum(1 for m in self.order if m.broke)

    def teardown(self) -> None:
        self._stack.close()  # leaves `async with registry` (in its own task), then the loop
        stats = self.registry.stats()
        assert (stats.connections, stats.keys, stats.groups) == (0, 0, 0)
        assert (stats.queued, stats.queued_bytes) == (0, 0)
        assert self.registry.stats().connections == 0
        assert self.registry.connections() == ()
        for model in self.order:
            assert model.conn.closed
            if model.alive:  # still registered at shutdown: closed with 1001
                assert model.transport.close_code == CloseCode.GOING_AWAY
                assert model.transport.sent == model.expected


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_registry_matches_model(backend: str) -> None:
    machine = type(f"RegistryMachine_{backend}", (RegistryMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
