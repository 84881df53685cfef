"""Fixtures for backend tests: the shared Redis, private redis-servers, namespaces."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

SHARED_REDIS = "redis://127.0.0.1:6379/0"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def namespace() -> str:
    """A namespace no other test (or engineer) uses on the shared Redis."""
    return "wsrtest-" + uuid.uuid4().hex[:12]


@pytest.fixture
def redis_url() -> str:
    """The shared Redis on 127.0.0.1:6379 (the suite needs it running)."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {SHARED_REDIS} is not running (make services): {exc}")
    finally:
        client.close()
    return SHARED_REDIS


class PrivateRedis:
    """A redis-server of our own on a free port, which a test may stop and restart."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.port = free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._dir = directory
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    if time.monotonic() > deadline or self._proc.poll() is not None:
                        raise
                    time.sleep(0.01)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (an outage; its data is gone)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGCONT)  # a paused server dies too
            proc.kill()
            proc.wait()

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open, nothing is answered."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server, killed at the end of the test."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def private_redis_with_password(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A private redis-server that requires a password."""
    server = PrivateRedis(tmp_path, password="s3cret-pass")
    server.start()
    try:
        yield server
    finally:
        server.kill()
