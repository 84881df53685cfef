"""Server WebSocket frames, built once per payload and shared by every target.

A server's data frame is unmasked; without an extension (no permessage-deflate)
its bytes depend on the payload only, so a broadcast can frame a payload once
and write the same bytes to every connection. Used by the ``websockets``
adapter and by the direct path into uvicorn; pure, no dependency.
"""

from __future__ import annotations

import struct

_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack

_last: tuple[str | bytes, bytes] | None = None


def frame(data: str | bytes) -> bytes:
    """One final, unmasked, uncompressed frame of ``data`` (RFC 6455 section 5.2).

    Byte for byte what websockets' ``Frame(opcode, payload).serialize(mask=False)``
    builds, for a third of its cost.
    """
    if isinstance(data, str):
        payload, first = data.encode(), _TEXT
    else:
        payload, first = data, _BINARY
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return _HEADER_16(first, 126, length) + payload
    return _HEADER_64(first, 127, length) + payload


def shared_frame(data: str | bytes) -> bytes:
    """:func:`frame`, built once per payload *object*: a broadcast frames its payload once.

    The (payload, frame) pair is swapped as a whole, so a registry in another
    thread can only miss the cache, never read another payload's frame.
    """
    global _last
    last = _last
    if last is not None and last[0] is data:
        return last[1]
    built = frame(data)
    _last = (data, built)
    return built
