"""What travels: the benchmark message and the helpers both sides share.

A message is a JSON object ``{"s": seq, "t": send_ns, "p": pad}`` (plus ``"u"``
for targeted sends). ``t`` is ``time.monotonic_ns()`` taken just before the send
call; the clock is system-wide on Linux and macOS, so the client on the same
machine subtracts it from its own receive time. The pad brings the serialised
message to the size under test.
"""

from __future__ import annotations

import json
import resource
import time
from typing import Any

__all__ = ["Message", "dumps", "make_message", "pad_for", "raise_nofile", "read_int_field"]

Message = dict[str, Any]

_encoder = json.JSONEncoder(separators=(",", ":"))
_pads: dict[int, str] = {}

# Room for {"s":..,"t":..,"u":"u12345","p":""} in the compact form.
_OVERHEAD = 64


def dumps(message: Message) -> str:
    """Compact JSON, as the anchors serialise (the same bytes as wsregistry's default)."""
    return _encoder.encode(message)


def pad_for(size: int) -> str:
    """The pad that brings a message to about ``size`` bytes of JSON."""
    pad = _pads.get(size)
    if pad is None:
        pad = _pads[size] = "x" * max(0, size - _OVERHEAD)
    return pad


def make_message(seq: int, size: int, user: str | None = None) -> Message:
    """A fresh message stamped with the current time."""
    if user is None:
        return {"s": seq, "t": time.monotonic_ns(), "p": pad_for(size)}
    return {"s": seq, "t": time.monotonic_ns(), "u": user, "p": pad_for(size)}


def read_int_field(buf: bytes, name: bytes, start: int, end: int) -> int:
    """Read the integer field ``name`` (e.g. ``b'"t":'``) from a JSON payload, cheaply.

    Works for compact and spaced JSON alike; returns -1 when the field is absent.
    """
    i = buf.find(name, start, end)
    if i < 0:
        return -1
    i += len(name)
    j = buf.find(b",", i, end)
    if j < 0:
        return -1
    return int(buf[i:j])


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
