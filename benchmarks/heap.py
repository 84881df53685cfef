"""Python heap per idle connection, by server: ``python -m benchmarks.heap [-n 2000]``.

RSS (what the suite reports) includes allocator slack and the kernel's view; this
traces the Python allocations each server makes while N clients connect, so the
registry's own cost can be read line by line (the difference between a
wsregistry server and the anchor on the same transport).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from benchmarks.harness import ROOT, Session, SessionConfig
from benchmarks.servers import SERVERS
from benchmarks.wire import raise_nofile

PAIRS = {
    "wsr-websockets": "websockets",
    "wsr-starlette": "naive",
    "wsr-fastapi": "naive",
    "wsr-fastapi-route": "naive",
    "wsr-starlette-asgi": "naive",
}


async def _measure(servers: list[str], n: int, top: int) -> dict[str, float]:
    logdir = ROOT / "benchmarks" / "results" / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    per_conn: dict[str, float] = {}
    for server in servers:
        config = SessionConfig(server, n, trace_heap=True)
        async with Session(config, logdir) as session:
            per_conn[server] = float(session.heap["heap_per_conn_bytes"])
            print(f"\n{SERVERS[server].label}: {per_conn[server]:.0f} B per connection")
            for line in session.heap["top"][:top]:
                print(f"  {line['bytes'] / n:8.0f} B/conn  {line['line']}")
            print("  wsregistry's own lines:")
            for line in session.heap.get("ours", []):
                print(f"  {line['bytes'] / n:8.0f} B/conn  {line['line']}")
            print("  by file:")
            for entry in session.heap["files"][:top]:
                print(f"  {entry['bytes'] / n:8.0f} B/conn  {entry['file']}")
    return per_conn


def main() -> int:
    """Measure and print the heap per connection and the registry's share."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.heap")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    raise_nofile()
    servers = [s for s in args.servers.split(",") if s]
    per_conn = asyncio.run(_measure(servers, args.n, args.top))
    print()
    for ours, base in PAIRS.items():
        if ours in per_conn and base in per_conn:
            extra = per_conn[ours] - per_conn[base]
            print(
                f"{SERVERS[ours].label}: {extra:.0f} B per connection beyond {SERVERS[base].label}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
