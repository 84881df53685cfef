"""What the NATS backend puts on the wire: subject tokens, subjects, envelopes.

Pure code, no I/O and no NATS client.

Tokens. A NATS subject is a list of ``.``-separated tokens where ``*`` and
``>`` are wildcards and whitespace ends the subject, so a key, group, node or
connection id never goes into a subject as it is. It becomes a *token*:
``s`` + unpadded base64url of its UTF-8 (``str``) or ``i`` + its decimal
digits (``int``, with ``-`` for negatives). The base64url alphabet is
``A-Z a-z 0-9 - _``: no ``.``, ``*``, ``>`` or whitespace, so a token is always
exactly one literal token. The type tag keeps ``"42"`` apart from ``42`` and
the encoding is injective, so two names never share a token. Tokens longer
than :data:`MAX_TOKEN` are replaced by ``h`` + the SHA-256 hex of the token
(bounded subject size); envelopes carry the full, typed target and receivers
match it exactly, so even a hash collision could not cross-deliver.

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

Envelope: a ``>BBBHIH`` header (version, kind, flags, origin, target and
exclude lengths), then origin, typed target (``s`` + UTF-8 or ``i`` + digits),
exclude id and the payload bytes; flag bit 0 marks a binary payload, so text
and bytes come back exactly as sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

from .._types import Key, Payload
from ..envelope import Envelope, EnvelopeKind

MAX_TOKEN = 64
"""Longest token used verbatim in a subject."""

_VERSION = 1
_HEADER = struct.Struct(">BBBHIH")
_BINARY = 1
_KIND_CODES = {
    EnvelopeKind.KEY: ord("k"),
    EnvelopeKind.BROADCAST: ord("b"),
    EnvelopeKind.GROUP: ord("g"),
    EnvelopeKind.CONNECTION: ord("c"),
}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_NAMESPACE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class WireError(ValueError):
    """A message or token is not what this backend writes."""


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if valid, else raise ``TypeError``/``ValueError``."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be str, got {type(namespace).__name__}")
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"namespace must be 1-64 characters of A-Z a-z 0-9 _ -, got {namespace!r}")
    return namespace


def token_of(value: Key) -> str:
    """The full (never hashed) injective token of a key, group or id."""
    if isinstance(value, str):
        raw = base64.urlsafe_b64encode(value.encode("utf-8", "surrogatepass"))
        return "s" + raw.rstrip(b"=").decode("ascii")
    return "i" + str(int(value))


def key_of(token: str) -> Key:
    """Invert :func:`token_of`.

    Raises:
        WireError: ``token`` is not a full token.
    """
    try:
        if token[:1] == "i":
            return int(token[1:])
        if token[:1] == "s":
            raw = token[1:]
            data = base64.urlsafe_b64decode((raw + "=" * (-len(raw) % 4)).encode("ascii"))
            return data.decode("utf-8", "surrogatepass")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise WireError(f"bad token {token[:40]!r}") from exc
    raise WireError(f"bad token {token[:40]!r}")


def short(token: str) -> str:
    """``token`` itself if short, else ``h`` + its SHA-256 (bounded subject size)."""
    if len(token) <= MAX_TOKEN:
        return token
    return "h" + hashlib.sha256(token.encode("ascii")).hexdigest()


def subject_token(value: Key) -> str:
    """The token of ``value`` as it appears in a subject."""
    return short(token_of(value))


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


def _target(value: Key | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    return b"i" + str(int(value)).encode("ascii")


def _target_of(data: bytes) -> Key:
    tag, rest = data[:1], data[1:]
    if tag == b"s":
        return rest.decode("utf-8", "surrogatepass")
    if tag == b"i":
        try:
            return int(rest.decode("ascii"))
        except ValueError as exc:
            raise WireError("bad int target") from exc
    raise WireError("bad target tag")


def pack(envelope: Envelope, origin: bytes) -> bytes:
    """Encode ``envelope`` (from node ``origin``)."""
    target = _target(envelope.target)
    exclude = b"" if envelope.exclude is None else envelope.exclude.encode("utf-8")
    payload = envelope.payload
    if isinstance(payload, str):
        flags, data = 0, payload.encode("utf-8", "surrogatepass")
    else:
        flags, data = _BINARY, payload
    header = _HEADER.pack(
        _VERSION, _KIND_CODES[envelope.kind], flags, len(origin), len(target), len(exclude)
    )
    return b"".join((header, origin, target, exclude, data))


def origin_of(data: bytes) -> bytes:
    """The origin of an encoded envelope, without decoding the rest.

    Raises:
        WireError: not an envelope of this version.
    """
    if len(data) < _HEADER.size:
        raise WireError("message too short")
    version, _kind, _flags, origin_len, _target_len, _exclude_len = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise WireError(f"unknown envelope version {version}")
    return data[_HEADER.size : _HEADER.size + origin_len]


def unpack(data: bytes) -> Envelope:
    """Decode an envelope.

    Raises:
        WireError: the message is malformed.
    """
    if len(data) < _HEADER.size:
        raise WireError("message too short")
    version, code, flags, origin_len, target_len, exclude_len = _HEADER.unpack_from(data)
    kind = _KINDS.get(code)
    if version != _VERSION or kind is None:
        raise WireError(f"unknown envelope version {version} / kind {code}")
    pos = _HEADER.size
    end = pos + origin_len + target_len + exclude_len
    if end > len(data):
        raise WireError("truncated envelope")
    try:
        origin = data[pos : pos + origin_len].decode("utf-8")
        pos += origin_len
        target: Key | None = _target_of(data[pos : pos + target_len]) if target_len else None
        pos += target_len
        exclude = data[pos : pos + exclude_len].decode("utf-8") if exclude_len else None
        raw = data[end:]
        payload: Payload = raw if flags & _BINARY else raw.decode("utf-8", "surrogatepass")
    except UnicodeError as exc:
        raise WireError("bad encoding in envelope") from exc
    if kind is EnvelopeKind.CONNECTION and not isinstance(target, str):
        raise WireError("a connection envelope needs a str target")
    return Envelope(kind, payload, target, exclude, origin)
