"""Broadcast throughput with Prometheus metrics on vs. off, in the same run.

Run: ``python -m benchmarks.metrics_overhead`` (about a minute; ``--quick`` for
a few seconds). One registry holds N connections; rounds alternate between the
observer detached (metrics off) and a :class:`~wsregistry.prometheus.RegistryCollector`'s
observer attached (metrics on), so both see the same connections, heap and
machine load. A round is B broadcasts to everyone, timed until every transport
got every frame. Two transports: one with the ``send_nowait`` fast path (real
adapters offer it; frames are written inside the call) and one without (every
frame goes through a writer task; the collector's default does not time queued
frames), and the latter again with ``time_queued_frames=True`` (each queued
frame timed).

A second table does the same through real servers (``--servers``): the
benchmark suite's uvicorn/Starlette server (``wsr-starlette``) and its load
client in separate processes, N real WebSocket connections, metrics switched
off and on between bursts of the same session (``--server-metrics direct``: the
collector with ``time_queued_frames=False``); deliveries per second measured at
the client, and deliveries per server CPU-second (steadier on a shared machine).

Printed: deliveries per second (median and spread over rounds) for each mode,
and the on/off ratio: of the medians, and the spread of the paired per-round
ratios. The target is a median ratio of at least 0.95. Scrapes are not part of
the rounds (a scrape reads counters; run ``--scrape`` to time one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.harness import Session, SessionConfig
from benchmarks.servers._wsr import METRICS_ENV
from wsregistry import Registry
from wsregistry.prometheus import RegistryCollector

MESSAGE: dict[str, Any] = {"type": "notice", "text": "deploy finished", "n": 42, "ok": True}


class Tally:
    frames = 0


class WriterTransport:
    """A socket whose ``send`` completes without waiting (every frame via a writer task)."""

    __slots__ = ()

    async def send(self, data: str | bytes) -> None:
        Tally.frames += 1

    async def close(self, code: int, reason: str) -> None:
        pass


class NowaitTransport(WriterTransport):
    """The same socket with the non-blocking fast path."""

    __slots__ = ()

    def send_nowait(self, data: str | bytes) -> bool:
        Tally.frames += 1
        return True


async def _round(registry: Registry, broadcasts: int, n: int) -> float:
    """Deliveries per second of ``broadcasts`` broadcasts to ``n`` connections."""
    gc.collect()
    expected = Tally.frames + broadcasts * n
    start = time.perf_counter()
    for _ in range(broadcasts):
        await registry.broadcast(MESSAGE)
    while Tally.frames < expected:
        await anyio.lowlevel.checkpoint()
    return broadcasts * n / (time.perf_counter() - start)


async def measure(
    transport: type[WriterTransport],
    *,
    n: int,
    rounds: int,
    broadcasts: int,
    time_queued_frames: bool = True,
) -> dict[str, Any]:
    registry = Registry()
    collector = RegistryCollector(
        registry, prometheus_registry=None, time_queued_frames=time_queued_frames
    )
    observer = registry.observer
    registry.observer = None
    off: list[float] = []
    on: list[float] = []
    async with registry:
        for _ in range(n):
            await registry.connect(transport(), key="k", groups=())
        await _round(registry, broadcasts, n)  # warm up both paths
        registry.observer = observer
        await _round(registry, broadcasts, n)
        for i in range(rounds):
            # alternate which mode goes first, so drift within a pair cancels out
            order = (None, observer) if i % 2 == 0 else (observer, None)
            for mode in order:
                registry.observer = mode
                rate = await _round(registry, broadcasts, n)
                (off if mode is None else on).append(rate)
    collector.detach()
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    return {"off": off, "on": on, "ratios": ratios}


def _spread(values: list[float]) -> str:
    quartiles = statistics.quantiles(values, n=4)
    return f"{quartiles[0]:,.0f}-{quartiles[2]:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="connections (default 10000)")
    parser.add_argument("--rounds", type=int, default=21, help="rounds per mode (default 21)")
    parser.add_argument("--broadcasts", type=int, default=10, help="broadcasts per round")
    parser.add_argument("--quick", action="store_true", help="n=1000, 7 rounds")
    parser.add_argument("--scrape", action="store_true", help="also time one scrape")
    parser.add_argument("--servers", action="store_true", help="also through real servers")
    parser.add_argument("--server-n", type=int, default=1000, help="connections (servers)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions per mode (servers)")
    parser.add_argument("--burst", type=int, default=100, help="broadcasts per burst (servers)")
    parser.add_argument("--servers-only", action="store_true", help="skip the in-process table")
    parser.add_argument(
        "--server-metrics", choices=["1", "direct"], default="1",
        help="1: every frame timed; direct: time_queued_frames=False",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 1000, 7
    if args.servers_only:
        asyncio.run(
            _servers(args.server_n, args.sessions, count=args.burst, mode=args.server_metrics)
        )
        return
    print(
        f"broadcast to {args.n} connections, {args.broadcasts} per round, "
        f"{args.rounds} rounds per mode, interleaved (deliveries/s; spread = IQR)"
    )
    print()
    print(
        "| transport | metrics off: median | spread | metrics on: median | spread "
        "| on/off (medians) | paired ratios: median | spread (min-max) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 1.0
    for label, transport, per_frame in (
        ("send_nowait", NowaitTransport, False),
        ("writer task (default: queued frames not timed)", WriterTransport, False),
        ("writer task, time_queued_frames=True", WriterTransport, True),
    ):
        run = partial(
            measure,
            transport,
            n=args.n,
            rounds=args.rounds,
            broadcasts=args.broadcasts,
            time_queued_frames=per_frame,
        )
        result = anyio.run(run)
        off, on, ratios = result["off"], result["on"], result["ratios"]
        ratio = statistics.median(on) / statistics.median(off)
        worst = min(worst, ratio)
        print(
            f"| {label} | {statistics.median(off):,.0f} | {_spread(off)} "
            f"| {statistics.median(on):,.0f} | {_spread(on)} | {ratio:.3f} "
            f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |"
        )
    print()
    print(
        f"target: on/off >= 0.95 -> {'met' if worst >= 0.95 else 'NOT met'} (worst {worst:.3f}; "
        "rows under it show what timing every queued frame costs when a send costs nothing)"
    )
    if args.scrape:
        anyio.run(_time_scrape, args.n)
    if args.servers:
        asyncio.run(
            _servers(args.server_n, args.sessions, count=args.burst, mode=args.server_metrics)
        )


async def _servers(
    n: int, sessions: int, bursts: int = 6, count: int = 100, mode: str = "1"
) -> None:
    """Real servers, metrics switched off and on between bursts of the same session."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    per_cpu: dict[bool, list[float]] = {False: [], True: []}
    os.environ[METRICS_ENV] = mode  # the server attaches a collector; "metrics" switches it
    try:
        with tempfile.TemporaryDirectory() as logdir:
            for _ in range(sessions):
                config = SessionConfig(server="wsr-starlette", n=n)
                async with Session(config, Path(logdir)) as session:
                    await session.burst(64, count, timeout=60)  # warm-up
                    for i in range(bursts * 2):
                        on = (i % 2 == 1) if (i // 2) % 2 == 0 else (i % 2 == 0)
                        switched = await session.servers[0].call("metrics", on=on)
                        if switched.get("on") is not on:
                            raise RuntimeError(f"could not switch metrics: {switched}")
                        result = await session.burst(64, count, timeout=60)
                        if not result["complete"]:
                            raise RuntimeError(f"incomplete burst: {result}")
                        rates[on].append(result["deliveries_per_s"])
                        per_cpu[on].append(result["received"] / result["server_cpu_s"])
    finally:
        os.environ.pop(METRICS_ENV, None)
    print()
    print(
        f"real servers: wsr-starlette (uvicorn), {n} WebSocket clients, "
        f"{count} broadcasts of 64 bytes per burst, {sessions} sessions x {bursts} bursts "
        "per mode, metrics switched between bursts of a session, "
        f"time_queued_frames={mode == '1'} (spread = IQR)"
    )
    print()
    print("| measure | metrics off: median | spread | metrics on: median | spread | on/off |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, values in (
        ("deliveries/s (client)", rates),
        ("deliveries per server CPU-s", per_cpu),
    ):
        without, with_ = values[False], values[True]
        ratio = statistics.median(with_) / statistics.median(without)
        print(
            f"| {label} | {statistics.median(without):,.0f} | {_spread(without)} "
            f"| {statistics.median(with_):,.0f} | {_spread(with_)} | {ratio:.3f} |"
        )


async def _time_scrape(n: int) -> None:
    prom = CollectorRegistry()
    registry = Registry()
    RegistryCollector(registry, prometheus_registry=prom)
    async with registry:
        for _ in range(n):
            await registry.connect(NowaitTransport(), key="k")
        await registry.broadcast(MESSAGE)
        start = time.perf_counter()
        size = len(generate_latest(prom))
        print(f"one scrape: {(time.perf_counter() - start) * 1e3:.2f} ms, {size} bytes")


if __name__ == "__main__":
    main()
