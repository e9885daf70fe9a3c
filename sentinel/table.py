"""The ref table: a checkpoint of `refs.State` in ``refs/table``.

Normative description: ``objects_spec/README.md`` ("The ref table").
The table is a cache of what replaying the journal gives up to a
position; it lets `open` replay only the frames written since.  It is
rewritten whole (temp file, fsync, rename, folder fsync) when enough
journal has accumulated, never edited in place.  A table that fails its
checksum is ignored and rebuilt from the journal, which is the truth.

Layout, big-endian::

    magic b"SNTT", format u8 = 1, 3 zero bytes
    position: pack u32, offset u64
    u32 number of collections, then per collection (sorted by name):
        u8 name length, name, u32 number of heads, then per head
        (sorted by id): u8 id length, id, 32-byte address,
        u64 version, u8 flags (bit 0: tombstone)
    u64 number of objects, then per object (sorted by address):
        32-byte address, u32 pack, u64 offset, u32 length
    32-byte BLAKE3 of every byte before it
"""

from __future__ import annotations

import struct

import blake3
from sortedcontainers import SortedDict

from sentinel import refs

MAGIC = b"SNTT"
FORMAT = 1
_HEADER = struct.Struct(">4sB3xIQ")
_HEAD = struct.Struct(">32sQB")
_OBJECT = struct.Struct(">32sIQI")
_COUNT32 = struct.Struct(">I")
_COUNT64 = struct.Struct(">Q")


def encode(state: refs.State) -> bytes:
    """Serialise `state`.  Runtime: linear in heads plus objects."""
    parts = [_HEADER.pack(MAGIC, FORMAT, *state.position)]
    parts.append(_COUNT32.pack(len(state.collections)))
    for name in sorted(state.collections):
        refs_of = state.collections[name]
        encoded = name.encode()
        parts.append(bytes((len(encoded),)) + encoded)
        parts.append(_COUNT32.pack(len(refs_of.heads)))
        for doc_id, head in refs_of.heads.items():
            ident = doc_id.encode()
            parts.append(bytes((len(ident),)) + ident)
            parts.append(_HEAD.pack(head.address, head.version, head.deleted))
    parts.append(_COUNT64.pack(len(state.objects)))
    parts.extend(
        _OBJECT.pack(address, *state.objects[address])
        for address in sorted(state.objects)
    )
    body = b"".join(parts)
    return body + blake3.blake3(body).digest()


def decode(data: bytes) -> refs.State:
    """Parse a table; `ValueError` says why it cannot be used."""
    if len(data) < _HEADER.size + 32:
        raise ValueError("ref table is truncated")
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise ValueError("ref table checksum mismatch")
    magic, version, pack, offset = _HEADER.unpack_from(body)
    if magic != MAGIC or version != FORMAT:
        raise ValueError("ref table has an unknown format")

    state = refs.State()
    state.position = (pack, offset)
    at = _HEADER.size
    try:
        (collections,) = _COUNT32.unpack_from(body, at)
        at += 4
        for _ in range(collections):
            size = body[at]
            name = body[at + 1 : at + 1 + size].decode("ascii")
            at += 1 + size
            (count,) = _COUNT32.unpack_from(body, at)
            at += 4
            heads = {}
            live = 0
            for _ in range(count):
                size = body[at]
                doc_id = body[at + 1 : at + 1 + size].decode("ascii")
                at += 1 + size
                address, version, flags = _HEAD.unpack_from(body, at)
                at += _HEAD.size
                deleted = bool(flags & refs.FLAG_TOMBSTONE)
                heads[doc_id] = refs.Head(address, version, deleted)
                live += not deleted
            state.collections[name] = refs.CollectionRefs(
                SortedDict(heads), live
            )
        (objects,) = _COUNT64.unpack_from(body, at)
        at += 8
        end = at + objects * _OBJECT.size
        if end != len(body):
            raise ValueError("ref table has trailing or missing bytes")
        state.objects = {
            address: refs.Location(pack, offset, length)
            for address, pack, offset, length in _OBJECT.iter_unpack(
                body[at:end]
            )
        }
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"ref table is malformed: {exc}") from exc
    return state
