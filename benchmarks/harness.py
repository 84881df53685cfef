"""Run server and client processes and measure one phase at a time.

A :class:`Session` is one server stack (one process, or two over Redis) and one
load client process holding N connections to it. Phases run one after another
on the same connections:

* ``latency``: single broadcasts, each sent only when every healthy client got
  the previous one, so the latency is the fan-out time of one message to N
  clients on an otherwise idle server (p50/p99 over sampled clients, and the
  median over rounds of each round's p99, which a stray scheduling hiccup on a
  shared machine does not move).
* ``burst``: ``count`` broadcasts back to back; deliveries/s is the number of
  messages healthy clients received divided by the time from the first send
  call to the moment the last healthy client had them all.
* ``targeted``: every connected user gets a message of its own, ``rounds`` times.

Server and client CPU seconds are read from the OS (psutil) before and after
each phase, so the report can show that the client is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.servers import SERVERS

__all__ = ["ChildFailed", "Session", "SessionConfig"]

ROOT = Path(__file__).resolve().parent.parent


class ChildFailed(RuntimeError):
    """A server or client process died or answered with an error."""


class Child:
    """A child process answering JSON requests on its stdin/stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ready: dict[str, Any] = {}
        self.ps = psutil.Process(proc.pid)
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def spawn(cls, name: str, args: list[str], log: Path) -> Child:
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        with log.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
                cwd=ROOT,
                env=env,
                limit=1 << 22,
            )
        child = cls(name, proc, log)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
        except asyncio.TimeoutError:
            line = b""
        if not line:
            await child.kill()
            raise ChildFailed(f"{name} did not start:\n{child.log_tail()}")
        child.ready = json.loads(line)
        child._reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            future = self._pending.pop(reply.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(reply)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ChildFailed(f"{self.name} exited:\n{self.log_tail()}"))
        self._pending.clear()

    async def call(self, cmd: str, *, wait_s: float = 120, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        self._ids += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._ids] = future
        assert self.proc.stdin is not None
        if self.proc.returncode is not None:
            raise ChildFailed(f"{self.name} exited:\n{self.log_tail()}")
        self.proc.stdin.write((json.dumps({"id": self._ids, "cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(future, wait_s)
        if "error" in reply:
            raise ChildFailed(f"{self.name} {cmd}: {reply['error']}")
        return reply

    def cpu(self) -> float:
        """CPU seconds (user + system) the process used so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def close(self, timeout: float = 15) -> None:
        """Ask the process to exit; kill it if it does not in time."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("exit", wait_s=5)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), timeout)
        await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


@dataclass(frozen=True)
class SessionConfig:
    """One server stack and the client's connections to it.

    Attributes:
        server: a key of :data:`benchmarks.servers.SERVERS`.
        n: connections the client opens.
        processes: server processes (2 with ``backend="redis"`` for cross-process).
        backend: ``memory`` or ``redis``.
        stall_every: every k-th connection stalls (0: none).
        churn_every: every k-th connection resets mid-burst (0: none).
        loop: the servers' event loop, ``asyncio`` or ``uvloop``.
        redis_url: the Redis for ``backend="redis"``.
        trace_heap: trace the servers' Python allocations while the clients
            connect (slows the handshakes; RSS is not measured then).
    """

    server: str
    n: int
    processes: int = 1
    backend: str = "memory"
    stall_every: int = 0
    churn_every: int = 0
    loop: str = "asyncio"
    redis_url: str = "redis://127.0.0.1:6379/0"
    trace_heap: bool = False


@dataclass
class Session:
    """A running server stack with a connected client; see the module docstring."""

    config: SessionConfig
    logdir: Path
    servers: list[Child] = field(default_factory=list)
    client: Child | None = None
    per_conn: int = 0
    seq: int = 0
    connected: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    heap: dict[str, Any] = field(default_factory=dict)
    broken: bool = False

    async def __aenter__(self) -> Session:
        try:
            await self._open()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> None:
        config = self.config
        kind = SERVERS[config.server]
        channel = f"wsrbench-{uuid.uuid4().hex[:12]}"
        stem = f"{config.server}-{config.backend}-n{config.n}-{uuid.uuid4().hex[:6]}"
        for index in range(config.processes):
            args = ["-m", "benchmarks.servers", config.server, "--loop", config.loop]
            args += ["--backend", config.backend, "--redis-url", config.redis_url]
            args += ["--channel", channel]
            log = self.logdir / f"{stem}-server{index}.log"
            self.servers.append(await Child.spawn(f"{config.server} server", args, log))
        base = [await server.call("stats", gc=True) for server in self.servers]
        if config.trace_heap:
            for server in self.servers:
                await server.call("trace_start")
        client_config = {
            "urls": [f"ws://127.0.0.1:{s.ready['port']}/" for s in self.servers],
            "n": config.n,
            "protocol": kind.protocol,
            "stall_every": config.stall_every,
            "churn_every": config.churn_every,
        }
        self.client = await Child.spawn(
            "load client",
            ["-m", "benchmarks.client", json.dumps(client_config)],
            self.logdir / f"{stem}-client.log",
        )
        self.connected = await self.client.call("connect", wait_s=300)
        if self.connected["failed"]:
            raise ChildFailed(
                f"{config.server}: {self.connected['failed']} connections failed: "
                f"{self.connected['errors']}"
            )
        counts = await self._wait_registered(config.n)
        if config.trace_heap:
            heaps = [await server.call("trace_stop", wait_s=300) for server in self.servers]
            self.heap = {
                "heap_per_conn_bytes": sum(h["bytes"] for h in heaps) / max(1, counts),
                "top": heaps[0]["top"],
                "files": heaps[0]["files"],
                "ours": heaps[0]["ours"],
            }
            return
        after = [await server.call("stats", gc=True) for server in self.servers]
        grown = sum(a["rss"] - b["rss"] for a, b in zip(after, base, strict=True))
        self.memory = {
            "rss_base_mib": sum(b["rss"] for b in base) / 2**20,
            "rss_connected_mib": sum(a["rss"] for a in after) / 2**20,
            "rss_per_conn_kib": grown / max(1, counts) / 1024,
        }

    async def _wait_registered(self, expected: int, timeout: float = 120) -> int:
        """Wait until the servers hold ``expected`` connections; returns the count."""
        deadline = time.monotonic() + timeout
        while True:
            count = await self.server_connections()
            if count >= expected:
                return count
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"{self.config.server}: {count}/{expected} connections registered"
                )
            await asyncio.sleep(0.05)  # polling another process's count; nothing to wait on

    async def server_connections(self) -> int:
        replies = [await server.call("stats") for server in self.servers]
        return sum(int(reply["connections"]) for reply in replies)

    async def server_extra(self) -> list[dict[str, Any]]:
        return [(await server.call("stats"))["extra"] for server in self.servers]

    def _cpu(self) -> tuple[float, float]:
        assert self.client is not None
        return sum(s.cpu() for s in self.servers), self.client.cpu()

    async def latency(self, size: int, rounds: int, *, timeout: float = 30) -> dict[str, Any]:
        """``rounds`` single broadcasts, each after the previous one reached everyone."""
        assert self.client is not None
        result: dict[str, Any] = {}
        round_p99: list[float] = []
        for index in range(rounds):
            self.per_conn += 1
            await self.client.call("expect", per_conn=self.per_conn, keep_samples=index > 0)
            await self.servers[0].call("broadcast", count=1, size=size, seq=self.seq)
            self.seq += 1
            result = await self.client.call("wait", wait_s=timeout + 5, timeout=timeout)
            round_p99.append(float(result["round_p99_ms"]))
            if not result["complete"]:
                self.broken = True
                break
        return {
            "p50_ms": result.get("p50_ms", 0.0),
            "p99_ms": result.get("p99_ms", 0.0),
            "p99_median_round_ms": statistics.median(round_p99) if round_p99 else 0.0,
            "max_ms": result.get("max_ms", 0.0),
            "samples": result.get("samples", 0),
            "complete": bool(result.get("complete")),
        }

    async def burst(
        self, size: int, count: int, *, timeout: float, churn_at: int | None = None
    ) -> dict[str, Any]:
        """``count`` broadcasts back to back; measured at the client."""
        fields: dict[str, Any] = {"count": count, "size": size, "seq": self.seq}
        extra = {} if churn_at is None else {"churn_at": self.per_conn + churn_at}
        return await self._phase("broadcast", fields, count, timeout=timeout, extra=extra)

    async def targeted(self, size: int, rounds: int, *, timeout: float) -> dict[str, Any]:
        """Every user gets its own message, ``rounds`` times."""
        fields: dict[str, Any] = {"rounds": rounds, "size": size, "seq": self.seq}
        return await self._phase("targeted", fields, rounds, timeout=timeout, extra={})

    async def _phase(
        self,
        cmd: str,
        fields: dict[str, Any],
        per_conn: int,
        *,
        timeout: float,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        client = self.client
        assert client is not None
        self.per_conn += per_conn
        self.seq += per_conn
        armed = await client.call("expect", per_conn=self.per_conn, **extra)
        server_cpu0, client_cpu0 = self._cpu()
        started = time.monotonic_ns()
        sending = asyncio.create_task(self.servers[0].call(cmd, wait_s=timeout + 60, **fields))
        waited = await client.call("wait", wait_s=timeout + 10, timeout=timeout)
        sent: dict[str, Any] = {}
        if waited["complete"]:
            sent = await sending
        else:
            self.broken = True  # the sender may be stuck on a stalled peer: drop the stack after
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChildFailed, asyncio.TimeoutError):
                await sending
        server_cpu1, client_cpu1 = self._cpu()
        t0 = int(sent.get("t0", started))
        seconds = max(1e-9, (int(waited["done_ns"]) - t0) / 1e9)
        return {
            "complete": bool(waited["complete"]),
            "received": waited["received"],
            "expected": per_conn * armed["need"],
            "healthy": armed["need"],
            "others_received": waited["others_received"],
            "seconds": seconds,
            "deliveries_per_s": waited["received"] / seconds,
            "send_seconds": (int(sent["t1"]) - t0) / 1e9 if sent else None,
            "send_errors": sent.get("errors"),
            "burst_p50_ms": waited["p50_ms"],
            "burst_p99_ms": waited["p99_ms"],
            "server_cpu_s": server_cpu1 - server_cpu0,
            "client_cpu_s": client_cpu1 - client_cpu0,
        }

    async def aclose(self) -> None:
        """Stop the client first (its connections close), then the servers."""
        if self.client is not None:
            await self.client.close()
        for server in self.servers:
            if self.broken:
                await server.kill()
            else:
                await server.close()
