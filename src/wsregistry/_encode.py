"""Serialise a message once per call, before any target is touched."""

from __future__ import annotations

import json
from typing import Any

from ._types import Payload, Serializer
from .errors import SerializationError

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_serializer(message: Any) -> str:
    """The default serializer: compact JSON text, no NaN/Infinity."""
    return _json_encoder.encode(message)


def encode(message: Any, serializer: Serializer) -> Payload:
    """Turn ``message`` into a frame payload.

    ``str`` passes through (text frame), ``bytes``-like becomes ``bytes``
    (binary frame); anything else goes through ``serializer``.

    Raises:
        SerializationError: the serializer failed or returned neither str nor bytes.
    """
    if type(message) is str or type(message) is bytes:
        return message
    if isinstance(message, str):
        return str(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    try:
        payload = serializer(message)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise SerializationError(message, exc) from exc
    if isinstance(payload, (str, bytes)):
        return payload
    raise SerializationError(
        message, TypeError(f"serializer returned {type(payload).__name__}, not str or bytes")
    )
