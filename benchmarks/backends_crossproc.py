"""Cross-process targeted sends and fan-out: the Redis and NATS backends in the same run.

Each backend gets a private broker started for the run (``redis-server`` and
``nats-server -js`` on free loopback ports, so the broker CPU measured is ours
alone). A child process runs a registry holding ``--clients`` connections
(counting transports: no sockets, the cost measured is the backend's), each with
a key of its own and all in one group; the parent runs a second registry on the
same broker and publishes.

Scenarios (every delivery crosses the broker):

* ``targeted``: ``--sends`` sends, each to one random key held by the child.
* ``fanout``: ``--broadcasts`` group broadcasts, each to all ``--clients`` connections.

Reported per backend and scenario: deliveries per second (first publish to last
receipt in the child) and the broker's CPU time per published message
(``psutil``, user + system of the broker process).

Run: ``python benchmarks/backends_crossproc.py [--clients 1000 --sends 20000 --broadcasts 200]``
(needs ``redis-server`` and ``nats-server`` binaries and the ``bench`` and ``nats`` extras).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psutil

from wsregistry import Backend, Registry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_backend(kind: str, url: str, namespace: str) -> Backend:
    if kind == "nats":
        from wsregistry.backends.nats import NatsBackend

        return NatsBackend(url, namespace=namespace)
    from wsregistry.backends.redis import RedisBackend

    return RedisBackend(url, namespace=namespace)


class Counting:
    """A transport that counts frames (the child's connections)."""

    count = 0
    first = 0.0
    last = 0.0

    async def send(self, data: str | bytes) -> None:
        now = time.time()
        if not Counting.count:
            Counting.first = now
        Counting.count += 1
        Counting.last = now

    async def close(self, code: int, reason: str) -> None:
        return None


async def child(kind: str, url: str, namespace: str, clients: int) -> None:
    async with Registry(backend=make_backend(kind, url, namespace)) as registry:
        for i in range(clients):
            await registry.connect(Counting(), key=f"u{i}", groups={"all"})
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command, *args = line.split()
            if command == "RESET":
                Counting.count = 0
                print("OK", flush=True)
            elif command == "WAIT":
                want = int(args[0])
                deadline = time.monotonic() + 120
                while Counting.count < want and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                print(json.dumps([Counting.count, Counting.first, Counting.last]), flush=True)


class Broker:
    def __init__(self, kind: str, directory: str) -> None:
        self.kind = kind
        port = free_port()
        if kind == "nats":
            binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
            args = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", directory]
            self.url = f"nats://127.0.0.1:{port}"
        else:
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
            args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
            args += ["--appendonly", "no", "--dir", directory]
            self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} broker did not start")
            time.sleep(0.02)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix=f"wsr-bench-{kind}-")
    broker = Broker(kind, directory)
    namespace = "bench" + uuid.uuid4().hex[:8]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        kind,
        broker.url,
        namespace,
        str(args.clients),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None

    async def ask(command: str) -> str:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(command.encode() + b"\n")
        await proc.stdin.drain()
        return (await proc.stdout.readline()).decode()

    results: dict[str, Any] = {}
    try:
        ready = (await proc.stdout.readline()).decode()
        if not ready.startswith("READY"):
            raise RuntimeError(f"child failed: {ready!r}")
        async with Registry(backend=make_backend(kind, broker.url, namespace)) as registry:
            rng = random.Random(7)
            scenarios: list[tuple[str, int, int, Callable[[], Awaitable[int]]]] = [
                (
                    "targeted",
                    args.sends,
                    args.sends,
                    lambda: registry.send(f"u{rng.randrange(args.clients)}", "x" * 64),
                ),
                (
                    "fanout",
                    args.broadcasts,
                    args.broadcasts * args.clients,
                    lambda: registry.broadcast("x" * 64, group="all"),
                ),
            ]
            for name, count, deliveries, publish in scenarios:
                await ask("RESET")
                cpu = broker.cpu()
                start = time.time()
                for _ in range(count):
                    await publish()
                await registry.backend.flush()
                got, _first, last = json.loads(await ask(f"WAIT {deliveries}"))
                used = broker.cpu() - cpu
                elapsed = max(last - start, 1e-9)
                results[name] = {
                    "published": count,
                    "deliveries": got,
                    "expected": deliveries,
                    "deliveries_per_s": round(got / elapsed),
                    "broker_cpu_us_per_publish": round(used / count * 1e6, 1),
                }
    finally:
        proc.stdin.close()
        await proc.wait()
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--broadcasts", type=int, default=200)
    parser.add_argument("--backends", default="redis,nats")
    args = parser.parse_args()
    report = {kind: await run_backend(kind, args) for kind in args.backends.split(",")}
    print(json.dumps({"clients": args.clients, **report}, indent=2))
    print(f"\n{'backend':8} {'scenario':9} {'deliveries/s':>13} {'broker CPU us/publish':>22}")
    for kind, scenarios in report.items():
        for name, row in scenarios.items():
            print(
                f"{kind:8} {name:9} {row['deliveries_per_s']:>13} "
                f"{row['broker_cpu_us_per_publish']:>22}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, url, namespace, clients = sys.argv[2:6]
        asyncio.run(child(kind, url, namespace, int(clients)))
    else:
        asyncio.run(main())
