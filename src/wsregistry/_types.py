"""Type aliases shared by the core modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

Key: TypeAlias = str | int
"""A registry key: usually a user id. One key may hold many connections."""

Payload: TypeAlias = str | bytes
"""An encoded frame: ``str`` becomes a text frame, ``bytes`` a binary frame."""

Serializer: TypeAlias = Callable[[Any], Payload]
"""Turns a structured message (``dict``/``list``) into a frame payload."""


def check_key(key: object) -> Key:
    """Return ``key`` if it is a valid registry key, else raise ``TypeError``."""
    if isinstance(key, (str, int)) and not isinstance(key, bool):
        return key
    raise TypeError(f"a key must be str or int, got {type(key).__name__}: {key!r}")


def check_group(group: object) -> str:
    """Return ``group`` if it is a valid group name, else raise ``TypeError``/``ValueError``."""
    if not isinstance(group, str):
        raise TypeError(f"a group name must be str, got {type(group).__name__}: {group!r}")
    if not group:
        raise ValueError("a group name must not be empty")
    return group
