"""Serialise a message once per call, before any target is touched."""

from __future__ import annotations

import json
from typing import Any

from ._types import Payload, Serializer
from .errors import SerializationError

# ``JSONEncoder.encode`` builds a C encoder (and a closure) on every call; build
# it once. Without a markers dict the C encoder does not track cycles: a cyclic
# message ends in RecursionError, which becomes a SerializationError below.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _unserialisable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


if _c_make_encoder is not None:
    _encode_json = _c_make_encoder(
        None,  # markers: no cycle tracking (see above)
        _unserialisable,  # default
        json.encoder.encode_basestring,  # ensure_ascii=False (the C function when present)
        None,  # indent
        ":",  # key separator
        ",",  # item separator
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def json_serializer(message: Any) -> str:
        """The default serializer: compact JSON text (UTF-8, no NaN/Infinity)."""
        return "".join(_encode_json(message, 0))

else:  # pragma: no cover - CPython always has the C encoder

    def json_serializer(message: Any) -> str:
        """The default serializer: compact JSON text (UTF-8, no NaN/Infinity)."""
        return _fallback.encode(message)


def encode(message: Any, serializer: Serializer) -> Payload:
    """Turn ``message`` into a frame payload.

    ``str`` passes through (text frame; a ``str`` subclass such as a
    ``(str, Enum)`` member sends its value), ``bytes``-like becomes ``bytes``
    (binary frame); anything else goes through ``serializer``.

    Raises:
        SerializationError: the serializer failed or returned neither str nor bytes.
    """
    if type(message) is str or type(message) is bytes:
        return message
    if isinstance(message, str):
        return str.__str__(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    try:
        payload = serializer(message)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise SerializationError(message, exc) from exc
    if type(payload) is str or type(payload) is bytes:
        return payload
    if isinstance(payload, str):
        return str.__str__(payload)
    if isinstance(payload, bytes):
        return bytes(payload)
    raise SerializationError(
        message, TypeError(f"serializer returned {type(payload).__name__}, not str or bytes")
    )
