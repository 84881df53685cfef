"""The load client: one process holding N real WebSocket connections, reading cheaply.

Run by the harness as ``python -m benchmarks.client`` and driven over its
stdin/stdout (see ``benchmarks._proc``). It speaks WebSocket (RFC 6455) itself on
plain asyncio protocols: the opening handshake, then a frame loop that only
parses headers and counts messages. No task, no queue, no UTF-8 decoding per
message, so it stays cheaper than any server it measures (the harness prints
both CPU times to prove it). For python-socketio it speaks the Engine.IO v4 /
Socket.IO v5 packets over the same frames (``0`` open, ``40`` connect, ``2``/``3``
ping/pong, ``42`` events), so every server is read by the same code.

Connections have a role by index: *healthy*, *stalled* (a tiny ``SO_RCVBUF`` and
never reads after the handshake) or *churner* (resets with TCP RST once it has
received a given number of messages). Only healthy connections count towards
"everyone got it". A sample of healthy connections parses the send timestamp of
each message for latency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time
from typing import Any, cast
from urllib.parse import urlsplit

from benchmarks._proc import serve_commands
from benchmarks.wire import raise_nofile, read_int_field

HEALTHY, STALLED, CHURNER = 0, 1, 2
STALL_RCVBUF = 4096
_T_FIELD = b'"t":'
_S_FIELD = b'"s":'
_RST = struct.pack("ii", 1, 0)


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (zero mask key: the payload goes as is)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


_SIO_PONG = _client_frame(1, b"3")


class Conn(asyncio.Protocol):
    """One client connection: handshake, then count frames."""

    __slots__ = (
        "buf",
        "client",
        "closed",
        "count",
        "index",
        "is_sio",
        "last_seq",
        "ready",
        "request",
        "role",
        "sampled",
        "sock",
        "transport",
        "upgraded",
    )

    def __init__(
        self,
        client: Client,
        index: int,
        sock: socket.socket,
        request: bytes,
        *,
        role: int,
        sampled: bool,
        is_sio: bool,
    ) -> None:
        self.client = client
        self.index = index
        self.sock = sock
        self.request = request
        self.role = role
        self.sampled = sampled
        self.is_sio = is_sio
        self.buf = b""
        self.count = 0
        self.last_seq = -1
        self.upgraded = False
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's are not subclasses
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost before ready: {exc!r}"))
        elif self.role == HEALTHY:
            self.client.healthy_lost += 1

    def _opened(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        if self.role == STALLED and self.transport is not None:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                line = buf[: buf.find(b"\r\n")].decode(errors="replace")
                self.ready.set_exception(ConnectionError(f"handshake refused: {line}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            buf = buf[head_end + 4 :]
            if not self.is_sio:
                self._opened()
        client = self.client
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            b0 = buf[pos]
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            pos = end
            opcode = b0 & 0x0F
            if opcode > 2:
                self._control(opcode, buf[start:end])
                continue
            if not b0 & 0x80:
                continue  # a non-final fragment: count the message at its last frame
            if self.is_sio:
                if buf.startswith(b"42", start):
                    pass  # an event: count it below
                elif buf.startswith(b"2", start):
                    assert self.transport is not None
                    self.transport.write(_SIO_PONG)
                    continue
                elif buf.startswith(b"0", start):
                    assert self.transport is not None
                    self.transport.write(_client_frame(1, b"40"))
                    continue
                elif buf.startswith(b"40", start):
                    self._opened()
                    continue
                else:
                    continue
            self.count += 1
            if self.role == HEALTHY:
                client.received += 1
                if self.sampled:
                    sent = read_int_field(buf, _T_FIELD, start, end)
                    if sent >= 0:
                        client.samples.append(time.monotonic_ns() - sent)
                    seq = read_int_field(buf, _S_FIELD, start, end)
                    if seq <= self.last_seq:
                        client.order_errors += 1
                    self.last_seq = seq
                if self.count == client.target:
                    client.reached += 1
                    if client.reached >= client.need:
                        client.finish()
            else:
                client.others_received += 1
                if self.role == CHURNER and self.count == client.churn_at:
                    self.reset()
                    return
        self.buf = buf[pos:] if pos < size else b""

    def _control(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if opcode == 9:  # ping
            transport.write(_client_frame(10, payload))
        elif opcode == 8:  # close: answer, then let the server close TCP
            self.client.closed_by_server += 1
            if not transport.is_closing():
                transport.write(_client_frame(8, payload[:2]))

    def reset(self) -> None:
        """Drop the connection with a TCP RST, mid-stream."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
        if self.transport is not None:
            self.transport.abort()
        self.client.resets += 1


class Client:
    """The connections and the counters the harness reads."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.urls: list[str] = config["urls"]
        self.n: int = config["n"]
        self.is_sio: bool = config.get("protocol") == "socketio"
        self.stall_every: int = config.get("stall_every", 0)
        self.churn_every: int = config.get("churn_every", 0)
        self.samples_wanted: int = config.get("sampled", 200)
        self.concurrency: int = config.get("concurrency", 200)
        self.conns: list[Conn] = []
        self.target = 0
        self.reached = 0
        self.need = 0
        self.received = 0
        self.others_received = 0
        self.churn_at = -1
        self.resets = 0
        self.closed_by_server = 0
        self.healthy_lost = 0
        self.order_errors = 0
        self.samples: list[int] = []
        self.round_start = 0
        self.done = asyncio.Event()
        self.done_ns = 0

    def role_of(self, index: int) -> int:
        if self.stall_every and index % self.stall_every == self.stall_every // 2:
            return STALLED
        if self.churn_every and index % self.churn_every == self.churn_every // 2:
            return CHURNER
        return HEALTHY

    def finish(self) -> None:
        self.done_ns = time.monotonic_ns()
        self.done.set()

    async def open_one(self, index: int, stride: int) -> None:
        url = urlsplit(self.urls[index % len(self.urls)])
        host, port = url.hostname or "127.0.0.1", url.port or 80
        user = f"u{index}"
        if self.is_sio:
            target = f"/socket.io/?EIO=4&transport=websocket&user={user}"
        else:
            target = f"{url.path or '/'}?user={user}"
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        role = self.role_of(index)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if role == STALLED:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALL_RCVBUF)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, (host, port))
            sampled = role == HEALTHY and index % stride == 0
            _, conn = await loop.create_connection(
                lambda: Conn(
                    self, index, sock, request, role=role, sampled=sampled, is_sio=self.is_sio
                ),
                sock=sock,
            )
            await asyncio.wait_for(conn.ready, 30)
        except BaseException:
            sock.close()
            raise
        self.conns.append(conn)

    async def connect(self, _: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        stride = max(1, self.n // max(1, self.samples_wanted))
        gate = asyncio.Semaphore(self.concurrency)
        errors: list[str] = []

        async def one(index: int) -> None:
            async with gate:
                try:
                    await self.open_one(index, stride)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(self.n)))
        roles = [c.role for c in self.conns]
        return {
            "ok": len(self.conns),
            "failed": len(errors),
            "errors": errors[:5],
            "seconds": time.monotonic() - started,
            "healthy": roles.count(HEALTHY),
            "stalled": roles.count(STALLED),
            "churners": roles.count(CHURNER),
            "sampled": sum(c.sampled for c in self.conns),
        }

    async def expect(self, request: dict[str, Any]) -> dict[str, Any]:
        """Arm the next phase: done when every open healthy connection has ``per_conn``."""
        self.target = request["per_conn"]
        healthy = [c for c in self.conns if c.role == HEALTHY and not c.closed]
        self.reached = sum(c.count >= self.target for c in healthy)
        self.need = len(healthy)
        self.received = 0
        self.others_received = 0
        if not request.get("keep_samples"):
            self.samples = []
        self.round_start = len(self.samples)
        self.done = asyncio.Event()
        self.done_ns = 0
        if "churn_at" in request:
            self.churn_at = request["churn_at"]
        if self.reached >= self.need:
            self.finish()
        return {"need": self.need}

    async def wait(self, request: dict[str, Any]) -> dict[str, Any]:
        """Wait for the armed phase to finish (or the timeout); report what arrived."""
        complete = True
        try:
            await asyncio.wait_for(self.done.wait(), request["timeout"])
        except asyncio.TimeoutError:
            complete = False
        samples = sorted(self.samples)
        this_round = sorted(self.samples[self.round_start :])
        return {
            "round_p99_ms": _percentile(this_round, 99) / 1e6,
            "complete": complete,
            "done_ns": self.done_ns if complete else time.monotonic_ns(),
            "received": self.received,
            "others_received": self.others_received,
            "reached": self.reached,
            "need": self.need,
            "samples": len(samples),
            "p50_ms": _percentile(samples, 50) / 1e6,
            "p99_ms": _percentile(samples, 99) / 1e6,
            "max_ms": (samples[-1] if samples else 0) / 1e6,
        }

    async def status(self, _: dict[str, Any]) -> dict[str, Any]:
        return {
            "open": sum(not c.closed for c in self.conns),
            "resets": self.resets,
            "closed_by_server": self.closed_by_server,
            "healthy_lost": self.healthy_lost,
            "order_errors": self.order_errors,
            "stalled_received_max": max(
                (c.count for c in self.conns if c.role == STALLED), default=0
            ),
        }


def _percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return float(ordered[index])


async def _main() -> None:
    raise_nofile()
    client = Client(json.loads(sys.argv[1]))
    await serve_commands(
        {"pid": os.getpid()},
        {
            "connect": client.connect,
            "expect": client.expect,
            "wait": client.wait,
            "status": client.status,
        },
    )
    for conn in client.conns:
        if conn.transport is not None:
            conn.transport.abort()


def main() -> None:
    """Run the client on uvloop when it is installed (cheaper), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main())
    else:
        uvloop.run(_main())


if __name__ == "__main__":
    main()
