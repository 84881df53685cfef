"""The scenarios, their presets, and the plan that runs them in one go."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import Session, SessionConfig
from benchmarks.servers import SERVERS

__all__ = ["PRESETS", "Preset", "Suite"]

KIB = 1024
STALL_EVERY = 100  # 1% of clients never read
CHURN_EVERY = 10  # 10% of clients reset mid-broadcast
STALL_SIZE = 4 * KIB
# The kernel absorbs about 3 MiB per stalled loopback socket (the server's send buffer
# autotunes to tcp_wmem's max even when the client's SO_RCVBUF is 4 KiB), so the bursts
# must put well beyond that on every connection before back-pressure reaches the app.
STALL_BURSTS = 12
CROSS_SERVERS = ("socketio", "wsr-starlette", "wsr-websockets")
# A burst never puts more than this on one connection, so that it fits the
# registry's default per-connection queue (1024 messages, 1 MiB) even when the
# server outpaces the client for the whole burst; the anchors buffer without limit.
BURST_MAX_MESSAGES = 500
BURST_MAX_BYTES = 512 * KIB


@dataclass(frozen=True)
class Preset:
    """How much of the suite to run, and how hard.

    Attributes:
        name: ``smoke``, ``quick`` or ``full``.
        ns: connection counts of the fan-out and targeted scenarios.
        sizes: message sizes in bytes.
        repeats: measured bursts per cell (the spread is reported).
        latency_rounds: single broadcasts timed per cell.
        burst_deliveries: deliveries aimed at per 100 B burst (fewer for 4 KiB).
        targeted: run the targeted-send scenario.
        stall_n: connections in the slow-consumer scenario (0: skip).
        churn_n: connections in the churn scenario (0: skip).
        cross_n: connections in the cross-process scenario (0: skip).
        heap_n: connections whose Python heap is traced (0: skip).
        timeout: seconds a phase may take before it counts as stalled.
        stall_timeout: the same for bursts with stalled clients.
    """

    name: str
    ns: tuple[int, ...]
    sizes: tuple[int, ...]
    repeats: int
    latency_rounds: int
    burst_deliveries: int
    targeted: bool
    stall_n: int
    churn_n: int
    cross_n: int
    heap_n: int = 1000
    timeout: float = 60.0
    stall_timeout: float = 15.0


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", (20,), (100,), 1, 3, 1_000, False, 0, 0, 0, heap_n=0, timeout=20),
    "quick": Preset("quick", (100, 1000), (100, 4 * KIB), 2, 10, 100_000, True, 100, 200, 200),
    "full": Preset(
        "full",
        (100, 1000, 5000, 10000),
        (100, 4 * KIB),
        3,
        15,
        150_000,
        True,
        500,
        1000,
        1000,
        timeout=120,
        stall_timeout=20,
    ),
}


def burst_count(preset: Preset, n: int, size: int) -> int:
    """Messages in one burst for ``n`` connections and ``size``-byte messages."""
    deliveries = preset.burst_deliveries if size <= KIB else preset.burst_deliveries * 2 // 5
    cap = min(BURST_MAX_MESSAGES, BURST_MAX_BYTES // size)
    return max(5, min(cap, deliveries // n))


Record = dict[str, Any]
Step = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class Suite:
    """Plans the sessions of a preset, runs them in order, and collects records."""

    preset: Preset
    servers: tuple[str, ...]
    logdir: Path
    loop: str = "asyncio"
    redis_url: str = "redis://127.0.0.1:6379/0"
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _steps: list[tuple[str, Step]] = field(default_factory=list)

    def plan(self, scenarios: set[str]) -> int:
        """Lay out the sessions to run; returns how many."""
        preset = self.preset
        # By N, then server: cells compared with each other run close together in time.
        for n in preset.ns:
            for server in self.servers:
                if "fanout" in scenarios or "targeted" in scenarios:
                    self._add(f"{server} N={n}", self._plain, server, n, scenarios)
        if "memory" in scenarios and preset.heap_n:
            for server in self.servers:
                self._add(f"{server} heap, N={preset.heap_n}", self._heap, server)
        if "stall" in scenarios and preset.stall_n:
            for server in self.servers:
                self._add(f"{server} stall baseline", self._stall, server, False)
                self._add(f"{server} 1% stalled", self._stall, server, True)
        if "churn" in scenarios and preset.churn_n:
            for server in self.servers:
                self._add(f"{server} 10% churn", self._churn, server)
        if "cross" in scenarios and preset.cross_n:
            if _redis_backend_available():
                for server in CROSS_SERVERS:
                    if server in self.servers:
                        self._add(f"{server} 2 processes + Redis", self._cross, server)
            else:
                self.notes.append(
                    "cross-process: not measured (wsregistry.backends.redis.RedisBackend "
                    "is not available in this tree)"
                )
        return len(self._steps)

    def _add(self, label: str, func: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        async def step() -> None:
            await func(*args)

        self._steps.append((label, step))

    async def run(self, progress: Callable[[int, int, str], None]) -> None:
        """Run every planned session; a failed session is recorded, not fatal."""
        total = len(self._steps)
        for index, (label, step) in enumerate(self._steps, 1):
            progress(index, total, label)
            started = time.monotonic()
            try:
                await step()
            except Exception as exc:
                message = f"{label}: {type(exc).__name__}: {exc}"
                print(f"\n  ! {message}", file=sys.stderr)
                self.records.append({"scenario": "error", "label": label, "error": message})
            self.records.append(
                {"scenario": "session", "label": label, "seconds": time.monotonic() - started}
            )

    def _config(self, server: str, n: int, **kwargs: Any) -> SessionConfig:
        return SessionConfig(server, n, loop=self.loop, redis_url=self.redis_url, **kwargs)

    def _record(self, session: Session, scenario: str, phase: str, **fields: Any) -> None:
        config = session.config
        self.records.append(
            {
                "scenario": scenario,
                "server": config.server,
                "n": config.n,
                "phase": phase,
                "rss_per_conn_kib": session.memory.get("rss_per_conn_kib"),
                "connect_s": session.connected.get("seconds"),
                **fields,
            }
        )

    async def _plain(self, server: str, n: int, scenarios: set[str]) -> None:
        preset = self.preset
        async with Session(self._config(server, n), self.logdir) as session:
            self._record(session, "memory", "idle", **session.memory)
            for size in preset.sizes:
                if "fanout" in scenarios:
                    latency = await session.latency(size, preset.latency_rounds)
                    self._record(session, "fanout", "latency", size=size, **latency)
                    count = burst_count(preset, n, size)
                    for repeat in range(preset.repeats):
                        result = await session.burst(size, count, timeout=preset.timeout)
                        self._record(
                            session,
                            "fanout",
                            "burst",
                            size=size,
                            repeat=repeat,
                            count=count,
                            **result,
                        )
                if "targeted" in scenarios and preset.targeted:
                    rounds = max(2, min(200, preset.burst_deliveries // 4 // n))
                    for repeat in range(preset.repeats):
                        result = await session.targeted(size, rounds, timeout=preset.timeout)
                        self._record(
                            session,
                            "targeted",
                            "burst",
                            size=size,
                            repeat=repeat,
                            count=rounds,
                            **result,
                        )

    async def _heap(self, server: str) -> None:
        config = self._config(server, self.preset.heap_n, trace_heap=True)
        async with Session(config, self.logdir) as session:
            self._record(session, "memory", "heap", **session.heap)

    async def _stall(self, server: str, stalled: bool) -> None:
        preset = self.preset
        scenario = "stall" if stalled else "stall-baseline"
        config = self._config(server, preset.stall_n, stall_every=STALL_EVERY if stalled else 0)
        count = BURST_MAX_BYTES // STALL_SIZE
        async with Session(config, self.logdir) as session:
            for repeat in range(STALL_BURSTS):
                result = await session.burst(STALL_SIZE, count, timeout=preset.stall_timeout)
                self._record(
                    session,
                    scenario,
                    "burst",
                    size=STALL_SIZE,
                    repeat=repeat,
                    count=count,
                    **result,
                )
                if not result["complete"]:
                    break  # the sender is stuck on a stalled peer; the rest would be too
            if session.broken:
                return  # the server is stuck; it cannot answer
            assert session.client is not None
            self._record(
                session,
                scenario,
                "status",
                size=STALL_SIZE,
                client=await session.client.call("status"),
                server_stats=await session.server_extra(),
                remaining=await session.server_connections(),
                stalled=session.connected.get("stalled", 0),
            )

    async def _churn(self, server: str) -> None:
        preset = self.preset
        n = preset.churn_n
        config = self._config(server, n, churn_every=CHURN_EVERY)
        size = preset.sizes[0]
        count = max(20, burst_count(preset, n, size))
        async with Session(config, self.logdir) as session:
            result = await session.burst(size, count, timeout=preset.timeout, churn_at=count // 2)
            self._record(session, "churn", "burst", size=size, count=count, **result)
            survivors = n - int(session.connected.get("churners", 0))
            started = time.monotonic()
            remaining = await session.server_connections()
            while remaining > survivors and time.monotonic() - started < 30:
                await asyncio.sleep(0.05)  # polling another process's count
                remaining = await session.server_connections()
            assert session.client is not None
            self._record(
                session,
                "churn",
                "cleanup",
                size=size,
                remaining=remaining,
                expected=survivors,
                cleanup_s=time.monotonic() - started,
                client=await session.client.call("status"),
                server_stats=await session.server_extra(),
            )

    async def _cross(self, server: str) -> None:
        preset = self.preset
        n = preset.cross_n
        size = preset.sizes[0]
        config = self._config(server, n, processes=2, backend="redis")
        async with Session(config, self.logdir) as session:
            latency = await session.latency(size, preset.latency_rounds)
            self._record(session, "cross", "latency", size=size, **latency)
            count = burst_count(preset, n, size)
            for repeat in range(preset.repeats):
                result = await session.burst(size, count, timeout=preset.timeout)
                self._record(
                    session, "cross", "burst", size=size, repeat=repeat, count=count, **result
                )


def _redis_backend_available() -> bool:
    try:
        from wsregistry.backends import redis  # noqa: F401
    except ImportError:
        return False
    return True


def server_labels() -> dict[str, str]:
    """The display label of every server."""
    return {name: kind.label for name, kind in SERVERS.items()}
