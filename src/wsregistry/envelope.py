"""Envelope: one encoded message on its way between registries.

The registry builds an envelope only when another node may hold a target
(:attr:`Backend.reaches_other_nodes`); backends carry it to the other nodes,
which hand it to :meth:`LocalNode.deliver`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Key, Payload

__all__ = ["Envelope", "EnvelopeKind"]


class EnvelopeKind(str, enum.Enum):
    """Who an :class:`Envelope` is for."""

    KEY = "key"
    """Every connection of ``target`` (a key)."""
    BROADCAST = "broadcast"
    """Every connection."""
    GROUP = "group"
    """Every member of ``target`` (a group name)."""
    CONNECTION = "connection"
    """The one connection whose id is ``target``."""


@dataclass(frozen=True)
class Envelope:
    """One encoded message on its way to other nodes.

    Attributes:
        kind: who the message is for.
        payload: the encoded frame (text for ``str``, binary for ``bytes``).
        target: the key, group name or connection id (``None`` for broadcast).
        exclude: a connection id that must not receive it.
        origin: the node id of the publisher.
    """

    kind: EnvelopeKind
    payload: Payload
    target: Key | None = None
    exclude: str | None = None
    origin: str = ""
