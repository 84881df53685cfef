"""Core benchmark: fan-out, churn and memory of the registry vs. the naive pattern.

Run: ``python benchmarks/core.py`` (about half a minute). Everything runs in memory
on one event loop, so the numbers are the registry's own cost, not the network's.

* broadcast: one message to 10k connections. "enqueue" is the time the
  ``broadcast()`` call takes (serialise once, hand to every target); "delivered"
  adds the time until every transport got the frame (writer tasks, or the
  ``send_nowait`` fast path inside the call). The naive pattern is
  ``for ws in sockets.values(): await ws.send(json.dumps(msg))``.
* one stalled peer: the same broadcast when one of the 10k peers stopped reading.
* churn: ``connect`` + ``disconnect`` pairs against ``dict`` insert/delete.
* memory: traced heap per idle connection, the transport itself excluded.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any

import anyio
import anyio.lowlevel

from wsregistry import Connection, Registry

N = 10_000
REPEATS = 15
MESSAGE: dict[str, Any] = {"type": "notice", "text": "deploy finished", "n": 42, "ok": True}


class Tally:
    """Frames written by every transport together (cheap to wait on)."""

    frames = 0


class CheapTransport:
    """A socket whose buffer always has room: ``send`` completes without waiting."""

    __slots__ = ()

    async def send(self, data: str | bytes) -> None:
        Tally.frames += 1

    async def close(self, code: int, reason: str) -> None:
        pass


class CheapNowaitTransport(CheapTransport):
    """The same socket offering the non-blocking fast path."""

    __slots__ = ()

    def send_nowait(self, data: str | bytes) -> bool:
        Tally.frames += 1
        return True


class StalledTransport(CheapTransport):
    """A peer that stopped reading: ``send`` never returns."""

    __slots__ = ()

    async def send(self, data: str | bytes) -> None:
        await anyio.sleep_forever()

    def abort(self) -> None:
        pass


def _best_ns(samples: list[int]) -> float:
    """Median of the faster half: robust against a noisy shared machine."""
    samples = sorted(samples)
    return statistics.median(samples[: max(1, len(samples) // 2)])


async def _wait_delivered(frames: int) -> None:
    while Tally.frames < frames:
        await anyio.lowlevel.checkpoint()


async def bench_registry_broadcast(
    transport_type: type[CheapTransport],
) -> tuple[float, float]:
    """(enqueue ns per target, delivered ns per target)."""
    enqueue: list[int] = []
    delivered: list[int] = []
    async with Registry() as registry:
        transports = [transport_type() for _ in range(N)]
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        for _ in range(REPEATS):
            gc.collect()
            expected = Tally.frames + N
            start = time.perf_counter_ns()
            await registry.broadcast(MESSAGE)
            middle = time.perf_counter_ns()
            await _wait_delivered(expected)
            end = time.perf_counter_ns()
            enqueue.append(middle - start)
            delivered.append(end - start)
    return _best_ns(enqueue) / N, _best_ns(delivered) / N


async def bench_naive_broadcast() -> float:
    """ns per target of the naive loop."""
    sockets: dict[int, CheapTransport] = {i: CheapTransport() for i in range(N)}
    samples: list[int] = []
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter_ns()
        for ws in sockets.values():
            await ws.send(json.dumps(MESSAGE))
        samples.append(time.perf_counter_ns() - start)
    return _best_ns(samples) / N


async def bench_stalled_peer(transport_type: type[CheapTransport]) -> float:
    """ns per target of a broadcast (until delivered) when one peer is stalled."""
    async with Registry(drain_timeout=0, close_timeout=0) as registry:
        transports = [transport_type() for _ in range(N - 1)]
        await registry.connect(StalledTransport(), key="stalled")
        for i, transport in enumerate(transports):
            await registry.connect(transport, key=i)
        samples = []
        for _ in range(REPEATS):
            expected = Tally.frames + N - 1
            start = time.perf_counter_ns()
            await registry.broadcast(MESSAGE)
            await _wait_delivered(expected)
            samples.append(time.perf_counter_ns() - start)
    return _best_ns(samples) / N


async def naive_stalled_peer() -> str:
    """What the naive loop does when one peer is stalled."""
    sockets: dict[Any, CheapTransport] = {"stalled": StalledTransport()}
    sockets.update((i, CheapTransport()) for i in range(N - 1))
    reached = 0
    with anyio.move_on_after(1.0):
        for ws in sockets.values():
            await ws.send(json.dumps(MESSAGE))
            reached += 1
    return f"blocked: {reached} of {N} reached after 1 s"


async def bench_checkpoint() -> float:
    """ns of one checkpoint (a pass of the event loop): every public call makes one."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for _ in range(1000):
            await anyio.lowlevel.checkpoint()
        samples.append(time.perf_counter_ns() - start)
    return _best_ns(samples) / 1000


async def bench_churn() -> tuple[float, float]:
    """(registry ns per connect+disconnect, dict ns per insert+delete)."""
    transports = [CheapTransport() for _ in range(N)]
    samples: list[int] = []
    async with Registry() as registry:
        for _ in range(REPEATS):
            conns: list[Connection] = []
            gc.collect()
            start = time.perf_counter_ns()
            for i, transport in enumerate(transports):
                conns.append(await registry.connect(transport, key=i, groups=("lobby",)))
            for conn in conns:
                await registry.disconnect(conn)
            samples.append(time.perf_counter_ns() - start)
    naive_samples: list[int] = []
    for _ in range(REPEATS):
        sockets: dict[int, CheapTransport] = {}
        gc.collect()
        start = time.perf_counter_ns()
        for i, transport in enumerate(transports):
            sockets[i] = transport
        for i in range(N):
            del sockets[i]
        naive_samples.append(time.perf_counter_ns() - start)
    return _best_ns(samples) / N, _best_ns(naive_samples) / N


async def bench_memory() -> tuple[float, float]:
    """Traced bytes per idle connection: (one key each, shared keys + 2 groups)."""
    results = []
    for shared in (False, True):
        async with Registry() as registry:
            transports = [CheapTransport() for _ in range(N)]
            keys = [f"user-{i}" for i in range(N)]
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            conns = []
            for i, transport in enumerate(transports):
                if shared:
                    conns.append(
                        await registry.connect(transport, key=keys[i // 4], groups=("a", "b"))
                    )
                else:
                    conns.append(await registry.connect(transport, key=keys[i]))
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            list_overhead = sys.getsizeof(conns)
            results.append((after - before - list_overhead) / N)
    return results[0], results[1]


def _row(name: str, ns: float, naive_ns: float | None, note: str = "") -> str:
    ops = 1e9 / ns if ns else float("inf")
    ratio = f"{naive_ns / ns:6.2f}x" if naive_ns else "      -"
    return f"  {name:<44} {ns:10.0f} {ops:14,.0f} {ratio}  {note}"


async def main(backend: str) -> list[str]:
    rows = [f"[{backend}]"]
    naive = await bench_naive_broadcast()
    enq, deliv = await bench_registry_broadcast(CheapTransport)
    enq_nw, deliv_nw = await bench_registry_broadcast(CheapNowaitTransport)
    rows.append(_row("naive: await ws.send(json.dumps(msg)) each", naive, naive))
    rows.append(_row("broadcast, queue+writer: enqueue (call returns)", enq, naive))
    rows.append(_row("broadcast, queue+writer: delivered", deliv, naive))
    rows.append(_row("broadcast, send_nowait fast path: enqueue", enq_nw, naive))
    rows.append(_row("broadcast, send_nowait fast path: delivered", deliv_nw, naive))
    stalled_q = await bench_stalled_peer(CheapTransport)
    stalled_nw = await bench_stalled_peer(CheapNowaitTransport)
    rows.append(_row("1 stalled peer, queue+writer: delivered", stalled_q, naive))
    rows.append(_row("1 stalled peer, fast path: delivered", stalled_nw, naive))
    rows.append(f"  {'naive loop with the same stalled peer':<44} {await naive_stalled_peer()}")
    churn, dict_churn = await bench_churn()
    rows.append(_row("connect + disconnect (1 group)", churn, dict_churn))
    rows.append(_row("naive: dict insert + delete", dict_churn, dict_churn))
    rows.append(_row("(one checkpoint; connect+disconnect make 2)", await bench_checkpoint(), None))
    return rows


def run() -> None:
    started = time.perf_counter()
    print(
        f"wsregistry core benchmark: {N:,} in-memory connections, Python {sys.version.split()[0]}"
    )
    print(f"  {'scenario (per target / per op)':<44} {'ns':>10} {'ops/s':>14} {'vs naive':>7}")
    for backend in ("asyncio", "trio"):
        try:
            rows = anyio.run(main, backend, backend=backend)
        except ModuleNotFoundError:
            print(f"[{backend}] not installed, skipped")
            continue
        print("\n".join(rows))
    one_key, shared = anyio.run(bench_memory)
    print("memory per idle connection (tracemalloc, transport excluded):")
    print(f"  one key each, no group:        {one_key:8.0f} bytes")
    print(f"  4 per key, 2 groups each:      {shared:8.0f} bytes")
    print("'vs naive' = naive time / this time (above 1: faster than naive); the naive")
    print("churn is a bare dict, so its ratio only shows what registration costs.")
    print(f"total run time: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    run()
