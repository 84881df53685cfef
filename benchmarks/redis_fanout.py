"""Cross-process fan-out through Redis: wsregistry vs python-socketio's AsyncRedisManager.

Both systems run the same workload in the same run, on the same machine and Redis:
two uvicorn server processes, ``--clients`` real WebSocket clients (the
``websockets`` library) split evenly between them, every client in one group and
in a room/key of its own. Process 0 publishes; half the targets sit on process 1,
so half the traffic crosses Redis.

Scenarios:

* ``broadcast``: ``--broadcasts`` broadcasts to everyone (clients x broadcasts deliveries).
* ``targeted``: ``--sends`` sends to one random user each (one delivery each).
* ``bcast/20ms``, ``send/20ms``: 50 broadcasts / 100 sends paced 20 ms apart: latency
  without a backlog (the unpaced runs measure throughput; their latency is mostly queueing).

Reported per system and scenario: deliveries per second (first publish to last
receipt), latency p50/p99 (publish call to client receipt, one clock), and the
messages each server process handed to its application logic (``processed``;
wsregistry's interest routing versus socketio's every-node fan-out).

Run: ``python benchmarks/redis_fanout.py`` (needs Redis on 127.0.0.1:6379 and the
``bench`` extra). Socket.IO clients speak Engine.IO v4 over plain websockets, so
both systems are driven by the same client code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PUMPS: set[asyncio.Future[None]] = set()  # client reader tasks (strong references)


# -- servers (run in child processes) ------------------------------------------------


def serve_wsregistry(namespace: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    from wsregistry import Connection, Registry
    from wsregistry.adapters.starlette import Identity, RegistryEndpoint
    from wsregistry.backends.redis import RedisBackend

    registry = Registry(backend=RedisBackend(REDIS_URL, namespace=namespace))

    async def authenticate(websocket: WebSocket) -> Identity:
        return Identity(key=websocket.query_params["user"], groups=frozenset({"all"}))

    async def hello(conn: Connection) -> None:
        await conn.send({"hello": conn.id})

    async def blast(request: Request) -> JSONResponse:
        body = await request.json()
        users: list[str] = body.get("users", [])
        for i in range(body["count"]):
            message = {"t": time.time(), "i": i}
            if body["kind"] == "broadcast":
                await registry.broadcast(message, group="all")
            else:
                await registry.send(users[i], message)
            if body["interval"]:
                await asyncio.sleep(body["interval"])
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"processed": registry.stats().backend.detail["processed"]})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with registry:
            yield

    endpoint = RegistryEndpoint(registry, authenticate=authenticate, on_connect=hello)
    return Starlette(
        routes=[
            WebSocketRoute("/ws", endpoint),
            Route("/blast", blast, methods=["POST"]),
            Route("/stats", stats),
        ],
        lifespan=lifespan,
    )


def serve_socketio(namespace: str) -> Any:
    import socketio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    manager = socketio.AsyncRedisManager(REDIS_URL, channel=namespace)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    processed = 0
    handle = manager._handle_emit

    async def counting_handle(message: Any) -> Any:
        nonlocal processed
        processed += 1
        return await handle(message)

    manager._handle_emit = counting_handle

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: Any, auth: dict[str, str]) -> None:
        await sio.enter_room(sid, auth["user"])
        await sio.enter_room(sid, "all")

    async def blast(request: Request) -> JSONResponse:
        body = await request.json()
        users: list[str] = body.get("users", [])
        for i in range(body["count"]):
            message = {"t": time.time(), "i": i}
            room = "all" if body["kind"] == "broadcast" else users[i]
            await sio.emit("m", message, to=room)
            if body["interval"]:
                await asyncio.sleep(body["interval"])
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"processed": processed})

    http = Starlette(routes=[Route("/blast", blast, methods=["POST"]), Route("/stats", stats)])
    return socketio.ASGIApp(sio, other_asgi_app=http)


def serve(system: str, namespace: str) -> None:
    import uvicorn

    app = serve_wsregistry(namespace) if system == "wsregistry" else serve_socketio(namespace)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print("PORT", sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio", lifespan="auto")
    asyncio.run(uvicorn.Server(config).serve([sock]))


# -- clients ---------------------------------------------------------------------------


@dataclass
class Inbox:
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    last: float = 0.0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, sent_at: float) -> None:
        now = time.time()
        self.latencies.append(now - sent_at)
        self.received += 1
        self.last = now
        self.changed.set()


async def wsregistry_client(port: int, user: str, inbox: Inbox) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws?user={user}", max_queue=None)
    json.loads(await ws.recv())  # hello: registered cluster-wide

    async def pump() -> None:
        async for frame in ws:
            inbox.record(json.loads(frame)["t"])

    PUMPS.add(asyncio.ensure_future(pump()))
    return ws


async def socketio_client(port: int, user: str, inbox: Inbox) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket", max_queue=None
    )
    opening = await ws.recv()
    if not (isinstance(opening, str) and opening.startswith("0")):
        raise RuntimeError(f"not an Engine.IO open packet: {opening!r}")
    await ws.send("40" + json.dumps({"user": user}))
    while True:  # wait for the namespace connect ack
        frame = await ws.recv()
        if isinstance(frame, str) and frame.startswith("40"):
            break

    async def pump() -> None:
        async for frame in ws:
            if frame == "2":
                await ws.send("3")  # Engine.IO pong
            elif isinstance(frame, str) and frame.startswith("42"):
                inbox.record(json.loads(frame[2:])[1]["t"])

    PUMPS.add(asyncio.ensure_future(pump()))
    return ws


# -- driver ----------------------------------------------------------------------------


@dataclass
class Result:
    system: str
    scenario: str
    deliveries: int
    seconds: float
    p50_ms: float
    p99_ms: float
    processed: list[int]

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds else float("nan")


def start_servers(
    system: str, namespace: str, count: int
) -> list[tuple[subprocess.Popen[bytes], int]]:
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", system, "--namespace", namespace],
            stdout=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    servers = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT"):
            raise RuntimeError(f"{system} server did not start: {line!r}")
        servers.append((proc, int(line.split()[1])))
    return servers


async def wait_received(inbox: Inbox, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while inbox.received < expected:
        inbox.changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"received {inbox.received} of {expected}")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(inbox.changed.wait(), remaining)


async def run_system(system: str, args: argparse.Namespace) -> list[Result]:
    namespace = f"bench-{system}-{uuid.uuid4().hex[:8]}"
    servers = start_servers(system, namespace, 2)
    ports = [port for _, port in servers]
    factory: Callable[[int, str, Inbox], Awaitable[ClientConnection]] = (
        wsregistry_client if system == "wsregistry" else socketio_client
    )
    inbox = Inbox()
    users = [f"u{i}" for i in range(args.clients)]
    results = []
    try:
        sockets = []
        for i, user in enumerate(users):
            sockets.append(await factory(ports[i % 2], user, inbox))
        await asyncio.sleep(0.5)  # let subscriptions settle (socketio confirms nothing)
        rng = random.Random(7)
        targets: dict[str, Any] = {"users": [rng.choice(users) for _ in range(args.sends)]}
        paced: dict[str, Any] = {"interval": 0.02}
        scenarios: list[tuple[str, str, int, int, dict[str, Any]]] = [
            ("broadcast", "broadcast", args.broadcasts, args.broadcasts * args.clients, {}),
            ("targeted", "targeted", args.sends, args.sends, targets),
            ("bcast/20ms", "broadcast", 50, 50 * args.clients, paced),
            ("send/20ms", "targeted", 100, 100, {**targets, **paced}),
        ]
        async with httpx.AsyncClient(timeout=120) as http:
            for scenario, kind, count, deliveries, extra in scenarios:
                before = [(await http.get(f"http://127.0.0.1:{p}/stats")).json() for p in ports]
                inbox.latencies.clear()
                inbox.received = 0
                started = time.time()
                response = await http.post(
                    f"http://127.0.0.1:{ports[0]}/blast",
                    json={"kind": kind, "count": count, "interval": 0, **extra},
                )
                response.raise_for_status()
                await wait_received(inbox, deliveries, timeout=120)
                after = [(await http.get(f"http://127.0.0.1:{p}/stats")).json() for p in ports]
                latencies = sorted(inbox.latencies)
                results.append(
                    Result(
                        system,
                        scenario,
                        inbox.received,
                        inbox.last - started,
                        statistics.median(latencies) * 1000,
                        latencies[int(len(latencies) * 0.99) - 1] * 1000,
                        [
                            a["processed"] - b["processed"]
                            for a, b in zip(after, before, strict=True)
                        ],
                    )
                )
                await asyncio.sleep(0.2)
                if inbox.received != deliveries:
                    raise RuntimeError(f"{system} {scenario}: {inbox.received} != {deliveries}")
        for ws in sockets:
            await ws.close()
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()
    return results


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\n{args.clients} clients on 2 processes; {args.broadcasts} broadcasts, "
        f"{args.sends} targeted sends from process 0"
    )
    header = (
        f"{'system':<22}{'scenario':<11}{'deliveries':>11}{'deliv/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}  processed per node"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        name = "wsregistry (redis)" if r.system == "wsregistry" else "socketio RedisManager"
        print(
            f"{name:<22}{r.scenario:<11}{r.deliveries:>11}{r.rate:>10.0f}"
            f"{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}  {r.processed}"
        )


async def main(args: argparse.Namespace) -> None:
    results = []
    for system in ("wsregistry", "socketio"):
        results.extend(await run_system(system, args))
    print_table(results, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--broadcasts", type=int, default=100)
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--serve", choices=["wsregistry", "socketio"])
    parser.add_argument("--namespace", default="bench")
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve, arguments.namespace)
    else:
        asyncio.run(main(arguments))
