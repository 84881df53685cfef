"""What the NATS backend puts on the wire: subject tokens, subjects, envelopes.

Pure code, no I/O and no NATS client.

Tokens. A NATS subject is a list of ``.``-separated tokens where ``*`` and
``>`` are wildcards and whitespace ends the subject, so a key, group, node or
connection id never goes into a subject as it is. It becomes a *token*: its
name (``_wire.name_of``: ``s`` + unpadded base64url of its UTF-8, or ``i`` +
its decimal digits), whose alphabet has no ``.``, ``*``, ``>`` or whitespace,
so a token is always exactly one literal token, and two names never share one.
Tokens longer than :data:`MAX_TOKEN` are replaced by ``h`` + the SHA-256 hex of
the token (bounded subject size); envelopes (``_wire``, the format every
backend uses) carry the full target and receivers match it exactly, so even a
hash collision could not cross-deliver.

Subjects under a namespace ``ns`` (``[A-Za-z0-9_-]``, one token)::

    ns.b                    broadcasts (every node subscribes)
    ns.c                    sends to one connection id (every node subscribes;
                            the registry delivers only where the id lives)
    ns.s                    subscription barriers (every node answers; see _nats_interest)
    ns.r.<node token>       answers to one node's barriers
    ns.k.<key token>        sends to a key (nodes with a local connection subscribe)
    ns.g.<group token>      group broadcasts (likewise)

Presence streams (JetStream, see ``_nats_presence``)::

    stream WSR_<ns>_P       ns.p.<key token>.<node token>.<connection token>
                            one message per live connection; payload: the key's
                            full token (for hashed key tokens)
                            ns.m.<node token>: the node is a member (for reaping)
    stream WSR_<ns>_L       ns.l.<node token>: the node's lease (max_age = presence timeout)
"""

from __future__ import annotations

import re

from .._types import Key
from ..envelope import Envelope, EnvelopeKind
from ._wire import WireError, key_of, name_of, pack, peek, short, unpack

__all__ = [
    "MAX_TOKEN",
    "Layout",
    "WireError",
    "check_namespace",
    "key_of",
    "name_of",
    "pack",
    "peek",
    "subject_token",
    "unpack",
]

MAX_TOKEN = 64
"""Longest token used verbatim in a subject."""

_NAMESPACE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if valid, else raise ``TypeError``/``ValueError``."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, got {type(namespace).__name__}")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace must be 1-64 characters of A-Z a-z 0-9 _ -, got {namespace!r}")
    return namespace


def subject_token(value: Key) -> str:
    """The token of ``value`` as it appears in a subject."""
    return short(name_of(value), MAX_TOKEN)


class Layout:
    """Subject and stream names under one namespace."""

    __slots__ = (
        "all",
        "conn",
        "entries",
        "lease_stream",
        "leases",
        "members",
        "ns",
        "presence_stream",
        "sync",
    )

    def __init__(self, namespace: str) -> None:
        self.ns = ns = check_namespace(namespace)
        self.all = ns + ".b"
        self.conn = ns + ".c"
        self.sync = ns + ".s"
        self.presence_stream = f"WSR_{ns}_P"
        self.lease_stream = f"WSR_{ns}_L"
        self.entries = ns + ".p.>"
        self.members = ns + ".m.*"
        self.leases = ns + ".l.*"

    def key_subject(self, key: Key) -> str:
        """Subject of sends to ``key``."""
        return f"{self.ns}.k.{subject_token(key)}"

    def group_subject(self, group: str) -> str:
        """Subject of broadcasts to ``group``."""
        return f"{self.ns}.g.{subject_token(group)}"

    def replies(self, node: str) -> str:
        """Where a node gets the answers to its subscription barriers."""
        return f"{self.ns}.r.{node}"

    def subject_of(self, envelope: Envelope) -> str:
        """Where ``envelope`` is published."""
        kind = envelope.kind
        if kind is EnvelopeKind.KEY:
            return self.key_subject(envelope.target)  # type: ignore[arg-type]
        if kind is EnvelopeKind.GROUP:
            return self.group_subject(envelope.target)  # type: ignore[arg-type]
        if kind is EnvelopeKind.BROADCAST:
            return self.all
        return self.conn

    def entry(self, key: Key, node: str, connection_id: str) -> str:
        """Presence entry of one connection (``node`` is the node's token)."""
        return f"{self.ns}.p.{subject_token(key)}.{node}.{subject_token(connection_id)}"

    def key_entries(self, key: Key) -> str:
        """Filter matching every presence entry of ``key``."""
        return f"{self.ns}.p.{subject_token(key)}.*.*"

    def node_entries(self, node: str) -> str:
        """Filter matching every presence entry of one node."""
        return f"{self.ns}.p.*.{node}.*"

    def member(self, node: str) -> str:
        """Member record of one node."""
        return f"{self.ns}.m.{node}"

    def lease(self, node: str) -> str:
        """Lease of one node."""
        return f"{self.ns}.l.{node}"

    @staticmethod
    def last_token(subject: str) -> str:
        """The last token of a member or lease subject: a node token."""
        return subject.rsplit(".", 1)[-1]

    @staticmethod
    def split_entry(subject: str) -> tuple[str, str]:
        """``(key token, node token)`` of a presence entry subject.

        Raises:
            WireError: not an entry subject.
        """
        parts = subject.split(".")
        if len(parts) != 5 or parts[1] != "p":
            raise WireError(f"not a presence entry: {subject[:80]!r}")
        return parts[2], parts[3]
