"""The control channel of a child process (server or load client).

The harness writes one JSON request per line to the child's stdin
(``{"id": 3, "cmd": "broadcast", ...}``) and reads one JSON reply per line from
its stdout (``{"id": 3, ...}`` or ``{"id": 3, "error": "..."}``). The child's
first line is its ``ready`` message. Anything else the child prints goes to
stderr, so third-party logging cannot corrupt the channel. EOF on stdin (the
harness went away) makes the child exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["Handler", "serve_commands"]

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _take_stdout() -> Callable[[dict[str, Any]], None]:
    control = os.dup(1)
    os.dup2(2, 1)  # stray prints and logs now go to stderr
    sys.stdout = sys.stderr

    def write(message: dict[str, Any]) -> None:
        os.write(control, (json.dumps(message) + "\n").encode())

    return write


async def serve_commands(ready: dict[str, Any], handlers: Mapping[str, Handler]) -> None:
    """Answer the harness's requests until ``exit`` or EOF.

    Each request runs in its own task, so a long ``broadcast`` does not stop a
    ``stats`` request from being answered.
    """
    write = _take_stdout()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    write({"event": "ready", **ready})
    running: set[asyncio.Task[None]] = set()

    async def answer(request: dict[str, Any]) -> None:
        try:
            reply = await handlers[request["cmd"]](request)
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        write({"id": request["id"], **reply})

    while True:
        line = await reader.readline()
        if not line:
            break
        request = json.loads(line)
        if request["cmd"] == "exit":
            write({"id": request["id"]})
            break
        task = asyncio.create_task(answer(request))
        running.add(task)
        task.add_done_callback(running.discard)
    for task in running:
        task.cancel()
