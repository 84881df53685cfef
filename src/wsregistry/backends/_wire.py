"""What every broker backend puts on the wire: names and envelopes.

Pure code, no I/O and no broker client; the Redis and NATS wire modules build
their channel and subject layouts on it, so both speak one envelope format.

Names. A key, group or node id becomes a *name*: ``s`` + unpadded base64url of
its UTF-8 (``str``) or ``i`` + its decimal digits (``int``). The alphabet
(``A-Z a-z 0-9 - _``) has no ``.``, ``:``, ``*``, ``>``, ``?``, ``[`` or
whitespace, the type tag keeps ``"1"`` apart from ``1``, and the encoding is
injective, so no two keys share a name and no name acts as a pattern or a
wildcard in a channel or subject. :func:`short` bounds a name's size with a
digest; envelopes carry the full name and receivers match targets exactly, so
even a digest collision could not cross-deliver.

Envelope: a ``>BBBHIH`` header (version, kind, flags, origin, target and
exclude lengths), then origin, target name, exclude id and the payload bytes;
flag bit 0 marks a binary payload, so text and bytes come back exactly as sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from .._types import Key, Payload
from ..envelope import Envelope, EnvelopeKind

VERSION = 1
HEADER = struct.Struct(">BBBHIH")
BINARY = 1
"""Flag bit of a binary payload (or a probe's raw data)."""
KIND_CODES = {
    EnvelopeKind.KEY: ord("k"),
    EnvelopeKind.BROADCAST: ord("b"),
    EnvelopeKind.GROUP: ord("g"),
    EnvelopeKind.CONNECTION: ord("c"),
}
_KINDS = {code: kind for kind, code in KIND_CODES.items()}


class WireError(ValueError):
    """A message, name or token is not what a wsregistry backend writes."""


def name_of(value: Key) -> str:
    """The injective, pattern-free name of a key, group or node id."""
    if isinstance(value, str):
        raw = base64.urlsafe_b64encode(value.encode("utf-8", "surrogatepass"))
        return "s" + raw.rstrip(b"=").decode("ascii")
    return "i" + str(int(value))


def key_of(name: str) -> Key:
    """Invert :func:`name_of`.

    Raises:
        WireError: ``name`` is not a name.
    """
    try:
        if name[:1] == "i":
            return int(name[1:])
        if name[:1] == "s":
            raw = name[1:]
            data = base64.urlsafe_b64decode((raw + "=" * (-len(raw) % 4)).encode("ascii"))
            return data.decode("utf-8", "surrogatepass")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise WireError(f"bad name {name[:40]!r}") from exc
    raise WireError(f"bad name {name[:40]!r}")


def short(name: str, limit: int) -> str:
    """``name`` itself if at most ``limit`` characters, else ``h`` + its SHA-256."""
    if len(name) <= limit:
        return name
    return "h" + hashlib.sha256(name.encode("ascii")).hexdigest()


def pack(envelope: Envelope, origin: bytes) -> bytes:
    """Encode ``envelope`` (from node ``origin``)."""
    target = b"" if envelope.target is None else name_of(envelope.target).encode("ascii")
    exclude = b"" if envelope.exclude is None else envelope.exclude.encode("utf-8")
    payload = envelope.payload
    if isinstance(payload, str):
        flags, data = 0, payload.encode("utf-8", "surrogatepass")
    else:
        flags, data = BINARY, payload
    header = HEADER.pack(
        VERSION, KIND_CODES[envelope.kind], flags, len(origin), len(target), len(exclude)
    )
    return b"".join((header, origin, target, exclude, data))


def peek(data: bytes) -> tuple[int, bytes]:
    """Kind code and origin of an encoded message, without decoding the rest.

    Raises:
        WireError: not a message of this version.
    """
    if len(data) < HEADER.size:
        raise WireError("message too short")
    version, kind, _flags, origin_len, _target_len, _exclude_len = HEADER.unpack_from(data)
    if version != VERSION:
        raise WireError(f"unknown envelope version {version}")
    return kind, data[HEADER.size : HEADER.size + origin_len]


def unpack(data: bytes) -> Envelope:
    """Decode an envelope.

    Raises:
        WireError: the message is malformed.
    """
    if len(data) < HEADER.size:
        raise WireError("message too short")
    version, code, flags, origin_len, target_len, exclude_len = HEADER.unpack_from(data)
    kind = _KINDS.get(code)
    if version != VERSION or kind is None:
        raise WireError(f"unknown envelope version {version} / kind {code}")
    pos = HEADER.size
    end = pos + origin_len + target_len + exclude_len
    if end > len(data):
        raise WireError("truncated envelope")
    try:
        origin = data[pos : pos + origin_len].decode("utf-8")
        pos += origin_len
        target: Key | None = None
        if target_len:
            target = key_of(data[pos : pos + target_len].decode("ascii"))
        pos += target_len
        exclude = data[pos : pos + exclude_len].decode("utf-8") if exclude_len else None
        raw = data[end:]
        payload: Payload = raw if flags & BINARY else raw.decode("utf-8", "surrogatepass")
    except UnicodeError as exc:
        raise WireError("bad encoding in envelope") from exc
    return Envelope(kind, payload, target, exclude, origin)
