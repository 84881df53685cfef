"""What permessage-deflate costs a fan-out: server CPU per delivery, compression on and off.

Run: ``python -m benchmarks.compression [-n 300] [-m 100] [--repeats 3]``.

Browsers always offer permessage-deflate and uvicorn (like ``websockets``)
accepts it by default. A compressed frame cannot be shared between
connections (each has its own compression context), so a broadcast compresses
the payload once per target, and wsregistry's direct path into uvicorn (one
frame written to every socket) is off for those connections. This measures
both servers with the extension negotiated and not, in the same run:

* ``websockets.broadcast()`` on a ``websockets`` server (``compression="deflate"`` / ``None``);
* wsregistry + Starlette on uvicorn (``ws_per_message_deflate=True`` / ``False``).

The clients (``websockets``, in this process) offer the extension; each server
runs in a process of its own, and its CPU time from the first broadcast until
every client has every message is divided by the deliveries. Clients are
slower than the server here, so compare the CPU column, not wall-clock time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection as Pipe
from typing import Any

MESSAGE = json.dumps({"type": "notice", "text": "deploy finished " * 6, "n": 42})  # ~120 B

SERVERS = {
    "websockets + broadcast(), deflate": ("websockets", True),
    "websockets + broadcast(), no compression": ("websockets", False),
    "wsregistry + Starlette, deflate": ("wsregistry", True),
    "wsregistry + Starlette, no compression": ("wsregistry", False),
}


def _serve(kind: str, deflate: bool, pipe: Pipe) -> None:
    asyncio.run(_serve_async(kind, deflate, pipe))


async def _serve_async(kind: str, deflate: bool, pipe: Pipe) -> None:
    loop = asyncio.get_running_loop()
    if kind == "websockets":
        from websockets.asyncio.server import broadcast, serve

        clients: set[Any] = set()

        async def handler(connection: Any) -> None:
            clients.add(connection)
            try:
                await connection.wait_closed()
            finally:
                clients.discard(connection)

        server = await serve(handler, "127.0.0.1", 0, compression="deflate" if deflate else None)
        port = server.sockets[0].getsockname()[1]

        async def send_all() -> None:
            broadcast(clients, MESSAGE)
            await asyncio.sleep(0)

        await _command_loop(pipe, port, send_all, loop)
        server.close()
        return

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from wsregistry import Registry
    from wsregistry.adapters.starlette import Identity, RegistryEndpoint

    registry = Registry()

    async def authenticate(websocket: WebSocket) -> Identity:
        return Identity(key=websocket.query_params.get("user", "u"))

    app = Starlette(
        routes=[WebSocketRoute("/", RegistryEndpoint(registry, authenticate=authenticate))]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", ws_per_message_deflate=deflate
    )
    uv = uvicorn.Server(config)
    async with registry:
        task = asyncio.create_task(uv.serve())
        while not uv.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await asyncio.sleep(0.01)
        port = uv.servers[0].sockets[0].getsockname()[1]

        async def send_all() -> None:
            await registry.broadcast(MESSAGE)

        await _command_loop(pipe, port, send_all, loop)
        uv.should_exit = True
        await task


async def _command_loop(pipe: Pipe, port: int, send_all: Any, loop: Any) -> None:
    pipe.send(port)
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "stop":
            return
        count = int(command)
        start = time.process_time()
        for _ in range(count):
            await send_all()
        await loop.run_in_executor(None, pipe.recv)  # "done": every client has every message
        pipe.send(time.process_time() - start)


async def _clients(port: int, n: int) -> list[Any]:
    from websockets.asyncio.client import connect

    return [
        await connect(f"ws://127.0.0.1:{port}/?user=u{i}", max_size=None, ping_interval=None)
        for i in range(n)
    ]


async def _receive(clients: list[Any], count: int) -> None:
    async def one(client: Any) -> None:
        for _ in range(count):
            await client.recv()

    await asyncio.gather(*(one(client) for client in clients))


async def _measure(name: str, n: int, m: int, repeats: int) -> tuple[list[float], bool]:
    kind, deflate = SERVERS[name]
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(kind, deflate, theirs), daemon=True
    )
    process.start()
    port = ours.recv()
    clients = await _clients(port, n)
    negotiated = all(client.protocol.extensions for client in clients)
    await asyncio.sleep(0.2)  # the server registers the last connections
    per_delivery = []
    for _ in range(repeats):
        ours.send(str(m))
        await _receive(clients, m)
        ours.send("done")
        cpu = ours.recv()
        per_delivery.append(cpu / (n * m) * 1e6)
    for client in clients:
        await client.close()
    ours.send("stop")
    process.join(10)
    return per_delivery, negotiated


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="clients")
    parser.add_argument("-m", type=int, default=100, help="broadcasts per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name in SERVERS:
        results[name] = await _measure(name, args.n, args.m, args.repeats)
    print(f"\nFan-out of a ~{len(MESSAGE)} B message to {args.n} clients, {args.m} broadcasts")
    print(f"{'server':45s} {'deflate':>8s} {'server µs/delivery':>20s} {'spread':>14s}")
    for name, (samples, negotiated) in results.items():
        median = statistics.median(samples)
        spread = f"{min(samples):.2f}-{max(samples):.2f}"
        print(f"{name:45s} {'yes' if negotiated else 'no':>8s} {median:20.2f} {spread:>14s}")
    for kind in ("websockets + broadcast()", "wsregistry + Starlette"):
        on = statistics.median(results[f"{kind}, deflate"][0])
        off = statistics.median(results[f"{kind}, no compression"][0])
        print(f"{kind}: deflate costs {on / off:.1f}x the server CPU of no compression")


if __name__ == "__main__":
    asyncio.run(main())
