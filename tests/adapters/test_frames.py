"""The shared server frame is byte for byte what websockets builds."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from wsregistry.adapters._frames import frame, shared_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
@pytest.mark.parametrize("text", [True, False])
def test_the_shared_frame_is_what_websockets_would_build(size: int, text: bool) -> None:
    data: str | bytes = "é" * size if text else bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    opcode = Opcode.TEXT if text else Opcode.BINARY
    payload = data.encode() if isinstance(data, str) else data
    assert frame(data) == Frame(opcode, payload).serialize(mask=False)


def test_a_payload_object_is_framed_once() -> None:
    payload = "x" * 10
    assert shared_frame(payload) is shared_frame(payload)
    assert shared_frame("y") == frame("y")
