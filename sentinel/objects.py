"""Typed objects: how a version is turned into bytes and an address.

Pure: no I/O.  Normative description: ``objects_spec/README.md``
("Objects" and "Version objects").

An object has a *type* and a *payload* (canonical JSON).  Its address is
the BLAKE3-256 hash of the *typed content*::

    b"version 123\\x00" + payload        # type, space, length, NUL

so the address does not depend on how the payload is compressed.  The
stored form is a 12-byte header followed by the body::

    offset size field
    0      4    magic b"SNTO"
    4      1    type        1 = version
    5      1    encoding    0 = identity, 1 = zstd, 2 = sealed
    6      1    flags       0; bit 0 = signature trailer (sealed only)
    7      1    reserved    0
    8      4    payload length, unsigned big-endian (sealed: the
                body's length)
    12     -    body: the payload, or one zstd frame holding it

Example: the payload ``{"a":1}`` of type version has the typed content
``b'version 7\\x00{"a":1}'``.

Runtime: encoding a 300-byte document costs a few microseconds (BLAKE3
about 1 us, zstd level 3 about 3 us); decoding about the same.

How objects are turned into stored bytes is an `ObjectCodec`: `PLAIN`
(this module: unkeyed BLAKE3 addresses, encodings 0 and 1) for a store
without a passphrase, `sentinel.sealed.SealedCodec` (keyed addresses,
encoding 2, signed) for an encrypted one.  The engine holds one codec
and never asks which.
"""

from __future__ import annotations

import re
import struct
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, NewType, Protocol

import blake3
import zstandard

from sentinel import codec
from sentinel.errors import CorruptObjectError

if TYPE_CHECKING:
    from sentinel.signing import VerificationOptions

Address = NewType("Address", bytes)

MAGIC = b"SNTO"
HEADER = struct.Struct(">4sBBBBI")
HEADER_SIZE = HEADER.size
TYPE_VERSION = 1
TYPE_NAMES = {TYPE_VERSION: b"version"}
ENCODING_IDENTITY = 0
ENCODING_ZSTD = 1
ENCODING_SEALED = 2
FLAG_SIGNED = 1
ZSTD_LEVEL = 3
ADDRESS_SIZE = 32

# The version envelope adds a few hundred bytes to the document itself.
MAX_PAYLOAD = codec.MAX_DOCUMENT + 4096


class _Codecs(threading.local):
    """zstd contexts are not thread-safe, so each thread keeps its own."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()
_frame_size = zstandard.frame_content_size


def type_prefix(kind: int, size: int) -> bytes:
    """The bytes before the payload in the typed content:
    ``b"version 7\\x00"`` for a 7-byte version payload."""
    return b"%s %d\x00" % (TYPE_NAMES[kind], size)


def typed_content(kind: int, payload: bytes) -> bytes:
    """The typed content of an object: what its address hashes and,
    in an encrypted store, what its signature signs."""
    return type_prefix(kind, len(payload)) + payload


def address_of(kind: int, payload: bytes) -> Address:
    """Return the BLAKE3-256 address of a payload of type `kind`."""
    hasher = blake3.blake3(type_prefix(kind, len(payload)))
    hasher.update(payload)
    return Address(hasher.digest())


def compress(payload: bytes) -> bytes:
    """One zstd frame (level 3, content size declared) holding
    `payload`.  Thread-safe."""
    return _codecs.compressor.compress(payload)


def encode(kind: int, payload: bytes) -> tuple[Address, bytes]:
    """Return the address and the stored bytes of an object."""
    body = compress(payload)
    header = HEADER.pack(MAGIC, kind, ENCODING_ZSTD, 0, 0, len(payload))
    return address_of(kind, payload), header + body


def decode(
    stored: bytes, address: bytes, *, path: str | None = None
) -> tuple[int, bytes]:
    """Check stored object bytes against `address`; return type, payload.

    Every check a reader must make is here: header fields, the declared
    size (so a crafted frame cannot make us allocate gigabytes), the zstd
    frame, and the BLAKE3 address of the result.  This is the read path
    of every document, so the error is only built when one is raised.
    """
    if len(stored) < HEADER_SIZE:
        raise corrupt(address, path, "shorter than its header")
    magic, kind, encoding, flags, reserved, length = HEADER.unpack_from(stored)
    if magic != MAGIC:
        raise corrupt(address, path, "bad magic")
    if kind not in TYPE_NAMES:
        raise corrupt(address, path, f"unknown object type {kind}")
    if flags or reserved:
        raise corrupt(address, path, "reserved header bits are set")
    if length > MAX_PAYLOAD:
        raise corrupt(
            address, path, f"declared size {length:,} exceeds the limit"
        )

    body = memoryview(stored)[HEADER_SIZE:]
    if encoding == ENCODING_ZSTD:
        payload = decompress_frame(body, address, path, expected=length)
    elif encoding == ENCODING_IDENTITY:
        payload = bytes(body)
    else:
        raise corrupt(address, path, f"unsupported encoding {encoding}")
    if len(payload) != length:
        raise corrupt(address, path, "payload length differs from its header")

    hasher = blake3.blake3(b"%s %d\x00" % (TYPE_NAMES[kind], length))
    hasher.update(payload)
    actual = hasher.digest()
    if actual != address:
        error = corrupt(address, path, "content does not match its address")
        error.expected = address.hex()
        error.actual = actual.hex()
        raise error
    return kind, payload


def corrupt(
    address: bytes, path: str | None, reason: str
) -> CorruptObjectError:
    """The error for the damaged object at `address` (in file `path`)."""
    name = address.hex()
    return CorruptObjectError(
        f"object {name} is corrupt: {reason}", path=path, address=name
    )


def decompress_frame(
    frame: bytes | memoryview,
    address: bytes,
    path: str | None,
    expected: int | None = None,
) -> bytes:
    """Decompress the one zstd frame of the object at `address`.

    The frame must declare its content size: `expected` when the
    caller knows it (a plain object's header), else at most
    `MAX_PAYLOAD` (a sealed object, whose header holds the sealed
    length).  So the bound is checked before anything is allocated.
    Bytes after the frame are refused: they would give one object many
    stored forms.  Raises `CorruptObjectError` naming what is wrong.
    """
    try:
        declared = _frame_size(frame)
    except zstandard.ZstdError as exc:
        reason = f"bad zstd frame header ({exc})"
        raise corrupt(address, path, reason) from exc
    if expected is not None:
        if declared != expected:
            reason = "zstd frame size differs from the header"
            raise corrupt(address, path, reason)
    elif not 0 <= declared <= MAX_PAYLOAD:
        reason = f"zstd frame declares {declared:,} bytes"
        raise corrupt(address, path, reason)
    try:
        payload: bytes = _codecs.decompressor.decompress(
            frame, max_output_size=declared, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        reason = f"zstd frame does not decode ({exc})"
        raise corrupt(address, path, reason) from exc
    if expected is None and len(payload) != declared:
        reason = "zstd frame is shorter than it declares"
        raise corrupt(address, path, reason)
    return payload


# -- codecs ------------------------------------------------------------------


class Encoded(NamedTuple):
    """An object ready to be stored.  `signature` is the Ed25519
    signature of its typed content, or ``b""`` when the codec does not
    sign."""

    address: Address
    stored: bytes
    signature: bytes


class Opened(NamedTuple):
    """An object read back and verified: its type, payload and
    signature (``b""`` when it carries none)."""

    kind: int
    payload: bytes
    signature: bytes


class ObjectCodec(Protocol):
    """How a store turns typed payloads into stored bytes and back.

    `encode` is pure.  `decode` makes every check a reader must make
    and raises a `CorruptionError` subclass naming `address` and `path`;
    `verification` says what to do about signatures (a codec that does
    not sign ignores it).
    """

    signed: bool

    def encode(self, kind: int, payload: bytes) -> Encoded: ...

    def decode(
        self,
        stored: bytes,
        address: bytes,
        *,
        path: str | None = None,
        verification: VerificationOptions | None = None,
    ) -> Opened: ...


class PlainCodec:
    """The codec of a store without a passphrase: `encode` and
    `decode` above, unkeyed addresses, no signatures."""

    signed = False

    def encode(self, kind: int, payload: bytes) -> Encoded:
        address, stored = encode(kind, payload)
        return Encoded(address, stored, b"")

    def decode(
        self,
        stored: bytes,
        address: bytes,
        *,
        path: str | None = None,
        verification: VerificationOptions | None = None,
    ) -> Opened:
        kind, payload = decode(stored, address, path=path)
        return Opened(kind, payload, b"")


PLAIN = PlainCodec()


# -- version objects ---------------------------------------------------------


class Version(NamedTuple):
    """A decoded version object: one state of one document."""

    collection: str
    id: str
    version: int
    parent: str | None
    created_at: str
    updated_at: str
    deleted: bool
    data: dict[str, Any]


def version_payload(
    collection: str,
    doc_id: str,
    version: int,
    parent: bytes | None,
    created_at: str,
    updated_at: str,
    deleted: bool,
    data: bytes,
) -> bytes:
    """Return the canonical payload of a version object.

    `data` is the document's canonical JSON.  Collection names, ids,
    timestamps and hex addresses are plain ASCII that JSON never escapes,
    so the canonical form can be assembled directly: the keys below are
    already in code-point order.  The spec's vectors check that this
    equals `codec.canonical` of the same fields.
    """
    parent_json = b'"%s"' % parent.hex().encode() if parent else b"null"
    return b"".join(
        (
            b'{"collection":"',
            collection.encode(),
            b'","created_at":"',
            created_at.encode(),
            b'","data":',
            data,
            b',"deleted":',
            b"true" if deleted else b"false",
            b',"id":"',
            doc_id.encode(),
            b'","parent":',
            parent_json,
            b',"updated_at":"',
            updated_at.encode(),
            b'","version":',
            b"%d" % version,
            b"}",
        )
    )


# The exact forms writers produce: times compare as strings and are
# pasted into payloads, and parents are turned back into addresses.
_HEX = re.compile(r"[0-9a-f]{64}").fullmatch
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00").fullmatch

_VERSION_KEYS = frozenset(
    (
        "collection",
        "created_at",
        "data",
        "deleted",
        "id",
        "parent",
        "updated_at",
        "version",
    )
)


def parse_version(payload: bytes, address: str) -> Version:
    """Decode a version payload, checking every field's type.

    This is the read path of every `get`, so it parses with
    `codec.decode_verified`, which trusts that the bytes already matched
    their address; `Store.verify` additionally checks canonical form.
    """
    fields = codec.decode_verified(payload, address=address)
    try:
        # Eight keys, each of them one of the eight names: exactly the
        # version keys (cheaper than comparing key sets).
        if len(fields) != len(_VERSION_KEYS):
            raise KeyError
        collection = fields["collection"]
        doc_id = fields["id"]
        number = fields["version"]
        parent = fields["parent"]
        created_at = fields["created_at"]
        updated_at = fields["updated_at"]
        deleted = fields["deleted"]
        data = fields["data"]
    except (KeyError, TypeError):
        raise CorruptObjectError(
            f"object {address} is not a version object", address=address
        ) from None
    if not (
        type(collection) is str
        and type(doc_id) is str
        and type(number) is int
        and number >= 1
        and (parent is None or (type(parent) is str and _HEX(parent)))
        and type(created_at) is str
        and _TIME(created_at)
        and type(updated_at) is str
        # A first version's two times are one string: check it once.
        and (updated_at == created_at or _TIME(updated_at))
        and type(deleted) is bool
        and type(data) is dict
    ):
        raise CorruptObjectError(
            f"object {address} has a malformed version field",
            address=address,
        )
    return Version(
        collection,
        doc_id,
        number,
        parent,
        created_at,
        updated_at,
        deleted,
        data,
    )
