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
    u32 number of live collections, then each collection (by name)
    u32 number of dropped collections, then each collection (by name)
    u64 number of objects, then per object (sorted by address):
        32-byte address, u32 pack, u64 offset, u32 length
    (format 2 only) the index definitions, see below
    32-byte BLAKE3 of every byte before it

In a store opened with a passphrase everything after the 20-byte header
(collections, objects and, in format 2, the index definitions, as
above) is one box sealed with the store's sealing key, the header as
associated data (see ``objects_spec/encryption.md``); the BLAKE3
checksum then covers header and box.  Names and field paths are plain
inside the box and in memory.  The header is the same as a plain
table's (format 1, or 2 with index definitions): the config, not the
table, says whether the store is encrypted, so the sealed form follows
any change of the plain layout without a format number of its own.  A
reader with keys opens the box and ignores a table that fails (one
planted in plain form by someone without the key included).

where a collection is::

    u8 name length, name
    u32 number of heads, then per head (sorted by id):
        u8 id length, id
        32-byte address, u64 version, u64 time, u8 flags  (the head)
        u32 number of past versions, then per past version, oldest
        first: 32-byte address, u64 time, u8 flags

Format 2 is format 1 plus a section of index definitions (the
``CollectionRefs.indexes`` that create-index and drop-index records
build) after the objects::

    u32 number of definitions, then per definition (sorted):
        u8 group: 0 a live collection, 1 a dropped one
        u8 name length, name
        u16 field path length, field path (UTF-8)

A state without index definitions is written as format 1, byte for byte
as before indexes existed, so older readers keep reading such tables.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import blake3
from sortedcontainers import SortedDict

from sentinel import crypto, refs
from sentinel.errors import IntegrityError

MAGIC = b"SNTT"
FORMAT = 1
FORMAT_INDEXES = 2
_HEADER = struct.Struct(">4sB3xIQ")
_HEAD = struct.Struct(">32sQQB")
_PAST = struct.Struct(">32sQB")
_OBJECT = struct.Struct(">32sIQI")
_COUNT32 = struct.Struct(">I")
_COUNT64 = struct.Struct(">Q")
_COUNT16 = struct.Struct(">H")


# One struct per id length for an id's whole entry up to its past: the
# id with its length byte, the head and the count of older versions.  A
# checkpoint packs one entry per id while writers wait, so one call
# replaces the three it would take field by field.
_ENTRIES: dict[int, struct.Struct] = {}


def _entry(size: int) -> struct.Struct:
    layout = _ENTRIES.get(size)
    if layout is None:
        layout = _ENTRIES[size] = struct.Struct(
            f">B{size}s{_HEAD.format[1:]}{_COUNT32.format[1:]}"
        )
    return layout


def _encode_collection(
    parts: list[bytes], name: str, refs_of: refs.CollectionRefs
) -> None:
    encoded = name.encode()
    parts.append(bytes((len(encoded),)) + encoded)
    heads = refs_of.heads
    parts.append(_COUNT32.pack(len(heads)))
    past_of = refs_of.past.get
    pack_past = _PAST.pack
    for doc_id in heads:
        address, version, deleted, time = heads[doc_id]
        ident = doc_id.encode()
        size = len(ident)
        past = past_of(doc_id)
        count = len(past) if past is not None else 0
        parts.append(
            _entry(size).pack(
                size, ident, address, version, time, deleted, count
            )
        )
        if past is not None:
            addresses, times, flags = past.addresses, past.times, past.flags
            parts.extend(
                pack_past(addresses[i * 32 : i * 32 + 32], times[i], flags[i])
                for i in range(count)
            )


def _index_definitions(state: refs.State) -> list[tuple[int, str, str]]:
    return sorted(
        (group, name, path)
        for group, collections in enumerate((state.collections, state.dropped))
        for name, refs_of in collections.items()
        for path in refs_of.indexes
    )


def encode(state: refs.State, key: crypto.AeadKey | None = None) -> bytes:
    """Serialise `state`, sealed under `key` when one is given.

    Runtime: linear in versions plus objects; sealing adds about 2.8 us
    per KiB.
    """
    return _encode(state, key, None)


def _encode(
    state: refs.State, key: crypto.AeadKey | None, nonce: bytes | None
) -> bytes:
    """`encode` with a fixed `nonce` (test vectors) or a fresh one."""
    definitions = _index_definitions(state)
    layout = FORMAT_INDEXES if definitions else FORMAT
    parts: list[bytes] = []
    for collections in (state.collections, state.dropped):
        parts.append(_COUNT32.pack(len(collections)))
        for name in sorted(collections):
            _encode_collection(parts, name, collections[name])
    parts.append(_COUNT64.pack(len(state.objects)))
    rows = refs.object_rows(state.objects)
    parts.extend(itertools.starmap(_OBJECT.pack, rows))
    if definitions:
        parts.append(_COUNT32.pack(len(definitions)))
        for group, name, path in definitions:
            encoded, text = name.encode(), path.encode()
            parts.append(bytes((group, len(encoded))) + encoded)
            parts.append(_COUNT16.pack(len(text)) + text)
    inner = b"".join(parts)
    head = _HEADER.pack(MAGIC, layout, *state.position)
    if key is None:
        body = head + inner
    elif nonce is None:
        body = head + crypto.seal(key, inner, head)
    else:
        body = head + crypto._seal_with_nonce(key, nonce, inner, head)
    return body + blake3.blake3(body).digest()


class _Reader:
    """A cursor over the table's bytes."""

    def __init__(self, body: bytes, at: int) -> None:
        self.body = body
        self.at = at

    def name(self) -> str:
        size = self.body[self.at]
        text = self.body[self.at + 1 : self.at + 1 + size].decode("ascii")
        self.at += 1 + size
        return text

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        values = layout.unpack_from(self.body, self.at)
        self.at += layout.size
        return values

    def collection(self) -> tuple[str, refs.CollectionRefs]:
        """One collection's heads and pasts.

        Opening a store runs this loop once per document id, so it
        keeps the cursor and the struct methods in locals: a store of
        100,000 ids opens about 10% sooner than with a method call per
        field.
        """
        name = self.name()
        (count,) = self.unpack(_COUNT32)
        heads = {}
        live = 0
        past_of: dict[str, refs.Past] = {}
        body = self.body
        at = self.at
        unpack_head = _HEAD.unpack_from
        unpack_count = _COUNT32.unpack_from
        head_size = _HEAD.size
        max_time = refs.MAX_TIME
        tombstone = refs.FLAG_TOMBSTONE
        for _ in range(count):
            size = body[at]
            doc_id = body[at + 1 : at + 1 + size].decode("ascii")
            at += 1 + size
            address, version, time, flags = unpack_head(body, at)
            (older,) = unpack_count(body, at + head_size)
            at += head_size + _COUNT32.size
            if time >= max_time:
                raise ValueError(f"{name}/{doc_id} has a time out of range")
            deleted = bool(flags & tombstone)
            heads[doc_id] = (address, version, deleted, time)
            live += not deleted
            if older != version - 1:
                raise ValueError(f"{name}/{doc_id} has a gap in its past")
            if older:
                past = past_of[doc_id] = refs.Past()
                end = at + older * _PAST.size
                for address, time, flags in _PAST.iter_unpack(body[at:end]):
                    past.addresses += address
                    if time >= max_time:
                        raise ValueError(f"{name}/{doc_id}: time out of range")
                    past.times.append(time)
                    past.flags.append(flags)
                at = end
        self.at = at
        return name, refs.CollectionRefs(SortedDict(heads), live, past_of)

    def index_definitions(self, state: refs.State) -> None:
        """Read the format-2 section into the collections' `indexes`."""
        (count,) = self.unpack(_COUNT32)
        for _ in range(count):
            group = self.body[self.at]
            self.at += 1
            name = self.name()
            (size,) = self.unpack(_COUNT16)
            path = self.body[self.at : self.at + size].decode("utf-8")
            self.at += size
            collections = (state.collections, state.dropped)[group]
            if not 0 < size == len(path.encode()) or name not in collections:
                raise ValueError("ref table has a bad index definition")
            collections[name].indexes.add(path)


def decode(
    data: bytes,
    names: refs.NameCodec = refs.PLAIN_NAMES,
    key: crypto.AeadKey | None = None,
) -> refs.State:
    """Parse a table; `ValueError` says why it cannot be used.

    With `key`, the table must be sealed and open under it; the
    returned state decodes names with `names`.  Runtime: linear in the
    table's size.
    """
    if len(data) < _HEADER.size + 32:
        raise ValueError("ref table is truncated")
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise ValueError("ref table checksum mismatch")
    magic, version, pack, offset = _HEADER.unpack_from(body)
    if magic != MAGIC or version not in (FORMAT, FORMAT_INDEXES):
        raise ValueError("ref table has an unknown format")
    inner = body[_HEADER.size :]
    if key is not None:
        try:
            inner = crypto.open(key, inner, body[: _HEADER.size])
        except IntegrityError as exc:
            raise ValueError(
                f"ref table failed authentication: {exc}"
            ) from exc

    state = refs.State(names)
    state.position = (pack, offset)
    reader = _Reader(inner, 0)
    try:
        for group in (state.collections, state.dropped):
            (count,) = reader.unpack(_COUNT32)
            for _ in range(count):
                name, refs_of = reader.collection()
                group[name] = refs_of
        (objects,) = reader.unpack(_COUNT64)
        end = reader.at + objects * _OBJECT.size
        if end > len(inner) or (version == FORMAT and end != len(inner)):
            raise ValueError("ref table has trailing or missing bytes")
        state.objects = refs.locations(
            _OBJECT.iter_unpack(inner[reader.at : end])
        )
        if version == FORMAT_INDEXES:
            reader.at = end
            reader.index_definitions(state)
            if reader.at != len(inner):
                raise ValueError("ref table has trailing or missing bytes")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"ref table is malformed: {exc}") from exc
    return state
