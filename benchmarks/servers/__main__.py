"""``python -m benchmarks.servers KIND [--backend redis ...]``: one server under test.

Listens on a free loopback port and answers the harness on stdin/stdout
(see ``benchmarks._proc``): ``stats``, ``broadcast``, ``targeted``, ``exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import time
import tracemalloc
from typing import Any

from benchmarks._proc import serve_commands
from benchmarks.servers import SERVERS
from benchmarks.servers.base import BenchApp, Options
from benchmarks.wire import make_message, raise_nofile


class Control:
    """The harness's requests, run against one server."""

    def __init__(self, app: BenchApp) -> None:
        self.app = app
        self._heap: tracemalloc.Snapshot | None = None

    async def trace_start(self, _: dict[str, Any]) -> dict[str, Any]:
        """Start tracing Python allocations (for the heap-per-connection measurement)."""
        gc.collect()
        tracemalloc.start()
        self._heap = tracemalloc.take_snapshot()
        return {}

    async def trace_stop(self, request: dict[str, Any]) -> dict[str, Any]:
        """Python heap grown since ``trace_start``, in total and by source line; stops tracing."""
        assert self._heap is not None
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        diff = snapshot.compare_to(self._heap, "lineno")
        by_file = snapshot.compare_to(self._heap, "filename")
        tracemalloc.stop()
        self._heap = None
        return {
            "bytes": sum(stat.size_diff for stat in diff),
            "top": [
                {"line": str(stat.traceback[0]), "bytes": stat.size_diff, "count": stat.count_diff}
                for stat in diff[: request.get("top", 12)]
            ],
            "files": [
                {"file": stat.traceback[0].filename, "bytes": stat.size_diff}
                for stat in by_file[: request.get("top", 12)]
            ],
            "ours": [  # every line of wsregistry's own that grew
                {"line": str(stat.traceback[0]), "bytes": stat.size_diff, "count": stat.count_diff}
                for stat in diff
                if "/wsregistry/" in stat.traceback[0].filename and stat.size_diff > 0
            ],
        }

    async def stats(self, request: dict[str, Any]) -> dict[str, Any]:
        import psutil

        if request.get("gc"):
            gc.collect()
        return {
            "connections": self.app.count(),
            "rss": psutil.Process().memory_info().rss,
            "extra": self.app.stats(),
        }

    async def broadcast(self, request: dict[str, Any]) -> dict[str, Any]:
        """Broadcast ``count`` messages back to back; each is stamped at its send call."""
        app, size, seq = self.app, request["size"], request["seq"]
        errors = 0
        t0 = time.monotonic_ns()
        for i in range(request["count"]):
            try:
                await app.broadcast(make_message(seq + i, size))
            except Exception:
                errors += 1
        return {"t0": t0, "t1": time.monotonic_ns(), "errors": errors}

    async def metrics(self, request: dict[str, Any]) -> dict[str, Any]:
        """Turn the registry's Prometheus observer on or off (wsregistry servers started
        with ``WSREGISTRY_BENCH_METRICS=1``; ``benchmarks.metrics_overhead``)."""
        switch = getattr(self.app, "metrics", None)
        if switch is None:
            return {"error": "this server has no metrics switch"}
        return {"on": switch(bool(request["on"]))}

    async def targeted(self, request: dict[str, Any]) -> dict[str, Any]:
        """``rounds`` times, send every connected user a message of its own."""
        app, size, seq = self.app, request["size"], request["seq"]
        users = sorted(app.users())
        errors = 0
        t0 = time.monotonic_ns()
        for i in range(request["rounds"]):
            for user in users:
                try:
                    await app.send(user, make_message(seq + i, size, user))
                except Exception:
                    errors += 1
        return {"t0": t0, "t1": time.monotonic_ns(), "errors": errors, "users": len(users)}


async def _serve(kind: str, options: Options) -> None:
    module = importlib.import_module(f"benchmarks.servers.{SERVERS[kind].module}")
    async with module.running(options) as app:
        control = Control(app)
        await serve_commands(
            {"port": app.port, "pid": os.getpid()},
            {
                "stats": control.stats,
                "broadcast": control.broadcast,
                "targeted": control.targeted,
                "metrics": control.metrics,
                "trace_start": control.trace_start,
                "trace_stop": control.trace_stop,
            },
        )


def main() -> None:
    """Parse the command line and serve until the harness says ``exit``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("--backend", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--channel", default="wsregistry-bench")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    raise_nofile()
    options = Options(backend=args.backend, redis_url=args.redis_url, channel=args.channel)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(_serve(args.kind, options))
    else:
        asyncio.run(_serve(args.kind, options))


if __name__ == "__main__":
    main()
