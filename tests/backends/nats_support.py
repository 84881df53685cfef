"""NATS for backend tests: the shared server, private servers and clusters (killed by PID)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import free_port

SHARED_NATS = "nats://127.0.0.1:4222"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def new_namespace() -> str:
    return "wsrtest-" + uuid.uuid4().hex[:12]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateNats:
    """One nats-server (JetStream on) of our own on a free port; may be in a cluster."""

    def __init__(self, directory: Path, *, name: str = "n0") -> None:
        self.name = name
        self.port = free_port()
        self.cluster_port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._dir = directory / name
        self._dir.mkdir(parents=True, exist_ok=True)
        self._routes: list[int] = []
        self._cluster = False
        self.proc: subprocess.Popen[bytes] | None = None

    def cluster_with(self, peers: list[PrivateNats]) -> None:
        self._cluster = True
        self._routes = [peer.cluster_port for peer in peers if peer is not self]

    def start(self) -> None:
        args = [
            NATS_SERVER,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self._dir),
            "-n",
            self.name,
        ]
        if self._cluster:
            args += [
                "--cluster_name",
                "wsrtest",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--routes",
                ",".join(f"nats://127.0.0.1:{port}" for port in self._routes),
            ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} did not start")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the server (an outage)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()


@contextmanager
def running_cluster(directory: Path, size: int = 3) -> Iterator[list[PrivateNats]]:
    """A private NATS cluster (routes between every pair, JetStream on), killed on exit."""
    servers = [PrivateNats(directory, name=f"n{i}") for i in range(size)]
    for server in servers:
        server.cluster_with(servers)
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


async def wait_jetstream(url: str, *, within: float = 20.0) -> None:
    """Wait until JetStream answers on ``url`` (a cluster elects its meta leader first)."""
    import nats

    deadline = time.monotonic() + within
    while True:
        try:
            client = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
            try:
                reply = await client.request("$JS.API.INFO", b"", timeout=1)
                if "error" not in json.loads(reply.data):
                    return
            finally:
                await client.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def delete_streams(url: str, namespace: str) -> None:
    """Remove the presence streams a test namespace left on a shared server."""
    import nats

    client = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        for suffix in ("P", "L"):
            try:
                await client.request(f"$JS.API.STREAM.DELETE.WSR_{namespace}_{suffix}", b"", 2)
            except Exception:  # best-effort cleanup
                continue
    finally:
        await client.close()
