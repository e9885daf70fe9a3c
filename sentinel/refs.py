"""Refs: which version is the head of each document, per collection.

Normative description: ``objects_spec/README.md`` ("Ref moves" and "The
ref table").  The journal is the source of truth: every change of a head
is a ref-move record in a frame.  `State` is what replaying those records
gives; `sentinel.table` saves a `State` as a checkpoint so opening a store
replays only the frames written since.

A ref-move record's content is binary, big-endian::

    u8  collection length, collection name (ASCII)
    u8  id length, document id (ASCII)
    32  new head address
    32  previous head address (32 zero bytes: none)
    u64 version number of the new head
    u64 time of the new head: its updated_at, in microseconds since
        1970-01-01T00:00:00Z
    u8  flags: bit 0 set when the new head is a tombstone

Recording the previous head lets replay check every move against the
state it started from, so a lost or reordered record is detected rather
than silently applied.  Recording the time lets the state keep, for each
document, the address and time of every version, so reading version n or
the version current at a given time is one lookup and one read.

A collection record's content is one operation byte and the name: 1
creates the collection, 2 drops it (its refs are set aside, its objects
stay), 3 restores the refs last set aside under that name.

Operations 4 and 5 declare and remove a secondary index (see
`sentinel.index`); their content is::

    u8  operation: 4 create index, 5 drop index
    u8  collection length, collection name (ASCII)
    field path (UTF-8, 1 to `MAX_INDEX_PATH` bytes, the rest)

The definitions live in `CollectionRefs.indexes`, so they move with the
refs when a collection is dropped and restored, and every process learns
of them by replay.  Applying them is idempotent (creating an index that
exists or dropping one that does not changes nothing), because two
writers of one commit group may both decide to add the same definition.

How a name is written in these records is a `NameCodec`: `PLAIN_NAMES`
(ASCII, as above) in a store without a passphrase, `SealedNames` in an
encrypted one, where each field holds ``crypto.seal_name`` of the name
(ids sealed in the context of their collection; see
``objects_spec/encryption.md``), and the field path of an index record
holds ``crypto.seal_field`` of the path (sealed in the context of its
collection).  `State` carries its codec, so replay, the writer and the
log decode names the same way.

Runtime: `count()` is O(1); a head lookup is a dict lookup; applying a
move is O(log n) in the collection's size (a `SortedDict` insert).
Memory: about 40 bytes per past version, beyond the heads.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sortedcontainers import SortedDict

from sentinel import crypto, journal, names
from sentinel.errors import (
    CorruptJournalError,
    IntegrityError,
    InvalidInputError,
)

NO_ADDRESS = bytes(32)
_MOVE_TAIL = struct.Struct(">32s32sQQB")
FLAG_TOMBSTONE = 1
# Times are kept in signed 64-bit arrays; larger u64 values are invalid.
MAX_TIME = 2**63
OP_CREATE = 1
OP_DROP = 2
OP_RESTORE = 3
OP_CREATE_INDEX = 4
OP_DROP_INDEX = 5
MAX_INDEX_PATH = 1024


# Where an object's stored bytes live: its pack number, the offset of
# the bytes in the pack and their length, packed into one int
# (``pack << 72 | offset << 32 | length``) by `location`; `place`
# unpacks it.  The state holds one per stored object, and one int of
# about 40 bytes replaces a tuple of three that held about 120.
Location = int
_OFFSET_BITS = 40
_LENGTH_BITS = 32
_PACK_SHIFT = _OFFSET_BITS + _LENGTH_BITS
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1


def location(pack: int, offset: int, length: int) -> Location:
    """Pack a place into a `Location`; `ValueError` for an offset or a
    length it cannot hold (only a damaged ref table declares one)."""
    if not (0 <= offset <= _OFFSET_MASK and 0 <= length <= _LENGTH_MASK):
        raise ValueError(f"no object lies at offset {offset:,}")
    return pack << _PACK_SHIFT | offset << _LENGTH_BITS | length


def locations(
    rows: Iterable[tuple[bytes, int, int, int]],
) -> dict[bytes, Location]:
    """`location` of each (address, pack, offset, length) row, by
    address.  The ref table's decoder calls it for every stored object
    of the store, so the check and the packing are written out here
    rather than called."""
    found: dict[bytes, Location] = {}
    for address, pack, offset, length in rows:
        if not (0 <= offset <= _OFFSET_MASK and 0 <= length <= _LENGTH_MASK):
            raise ValueError(f"no object lies at offset {offset:,}")
        found[address] = pack << _PACK_SHIFT | offset << _LENGTH_BITS | length
    return found


def object_rows(
    objects: dict[bytes, Location],
) -> list[tuple[bytes, int, int, int]]:
    """(address, pack, offset, length) of every object, sorted by
    address: `locations` the other way round, for the ref table's
    encoder, with `place` written out for the same reason."""
    return [
        (
            address,
            found >> _PACK_SHIFT,
            found >> _LENGTH_BITS & _OFFSET_MASK,
            found & _LENGTH_MASK,
        )
        for address, found in sorted(objects.items())
    ]


def place(found: Location) -> tuple[int, int, int]:
    """The (pack, offset, length) a `Location` packs."""
    return (
        found >> _PACK_SHIFT,
        found >> _LENGTH_BITS & _OFFSET_MASK,
        found & _LENGTH_MASK,
    )


# The head of one document id: (address, version, deleted, time), with
# `time` in microseconds since the epoch.  A plain tuple, not a
# NamedTuple: CPython's cyclic collector stops tracking an exact tuple
# of atoms, but tracks a NamedTuple instance for its whole life, and the
# state holds one head per id.  Code unpacks it, or reads one field
# with the indexes below.
Head = tuple[bytes, int, bool, int]
HEAD_ADDRESS: Final = 0
HEAD_VERSION: Final = 1
HEAD_DELETED: Final = 2
HEAD_TIME: Final = 3


class Past:
    """The versions of one document before its head, oldest first."""

    __slots__ = ("addresses", "times", "flags")

    def __init__(self) -> None:
        self.addresses = bytearray()
        self.times = array("q")
        self.flags = bytearray()

    def push(self, head: Head) -> None:
        address, _, deleted, time = head
        self.addresses += address
        self.times.append(time)
        self.flags.append(FLAG_TOMBSTONE * deleted)

    def __len__(self) -> int:
        return len(self.flags)

    def head(self, index: int) -> Head:
        """Version ``index + 1`` as a `Head`."""
        start = index * 32
        return (
            bytes(self.addresses[start : start + 32]),
            index + 1,
            bool(self.flags[index] & FLAG_TOMBSTONE),
            self.times[index],
        )


# Called as observer(doc_id, previous head or None, new head) after a
# head changed; see `CollectionRefs.observers`.
Observer = Callable[[str, Head | None, Head], None]


@dataclass(slots=True)
class CollectionRefs:
    """The heads of one collection, its count of live documents, the
    past versions of each document, and its index definitions.

    `observers` are process-local callbacks run after every head change,
    holding the engine's state lock (so they see every move, whether this
    process or another wrote it).  They must be quick and must not raise:
    an exception would leave a frame half applied.  The secondary indexes
    use one to mark changed ids.
    """

    heads: SortedDict = field(default_factory=SortedDict)
    live: int = 0
    past: dict[str, Past] = field(default_factory=dict)
    indexes: set[str] = field(default_factory=set)
    observers: list[Observer] = field(
        default_factory=list, repr=False, compare=False
    )

    def set(self, doc_id: str, head: Head) -> None:
        previous: Head | None = self.heads.get(doc_id)
        self.heads[doc_id] = head
        self.live += (not head[HEAD_DELETED]) - (
            previous is not None and not previous[HEAD_DELETED]
        )
        if previous is not None:
            past = self.past.get(doc_id)
            if past is None:
                past = self.past[doc_id] = Past()
            past.push(previous)
        for observer in self.observers:
            observer(doc_id, previous, head)

    def version(self, doc_id: str, number: int) -> Head | None:
        """Version `number` of `doc_id`, or None."""
        head: Head | None = self.heads.get(doc_id)
        if head is None or not 1 <= number <= head[HEAD_VERSION]:
            return None
        if number == head[HEAD_VERSION]:
            return head
        return self.past[doc_id].head(number - 1)

    def at_time(self, doc_id: str, time: int) -> Head | None:
        """The version of `doc_id` current at `time` (microseconds since
        the epoch), or None before its first version."""
        head: Head | None = self.heads.get(doc_id)
        if head is None:
            return None
        if time >= head[HEAD_TIME]:
            return head
        past = self.past.get(doc_id)
        if past is None:
            return None
        index = bisect.bisect_right(past.times, time)
        return past.head(index - 1) if index else None


class NameCodec:
    """Names in ref-move and collection records, as plain ASCII, and
    field paths in index records, as plain UTF-8.

    `read_*` raise `ValueError` naming what is wrong, as the record
    decoders expect.  Stateless, hence thread-safe.
    """

    sealed = False

    def write_collection(self, name: str) -> bytes:
        return name.encode()

    def read_collection(self, raw: bytes) -> str:
        try:
            return names.collection_name(raw.decode("ascii"))
        except (UnicodeDecodeError, InvalidInputError) as exc:
            raise ValueError(str(exc)) from exc

    def write_id(self, collection: str, doc_id: str) -> bytes:
        return doc_id.encode()

    def read_id(self, collection: str, raw: bytes) -> str:
        try:
            return names.document_id(raw.decode("ascii"))
        except (UnicodeDecodeError, InvalidInputError) as exc:
            raise ValueError(str(exc)) from exc

    def write_field(self, collection: str, path: str) -> bytes:
        return path.encode()

    def read_field(self, collection: str, raw: bytes) -> str:
        if not 0 < len(raw) <= MAX_INDEX_PATH:
            raise ValueError("index record has a bad length")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(str(exc)) from exc


PLAIN_NAMES = NameCodec()

# Sealing or opening a name costs about 3 us; every write seals an id and
# then applies its own record, which opens it again, and replay sees the
# same few collection names over and over.  Bounded caches (cleared when
# full, since any entry is as good as another) make those repeats free.
_CACHE_LIMIT = 8192


class SealedNames(NameCodec):
    """Names sealed with `crypto.seal_name` under the store's name key.

    Deterministic: a name always seals to the same bytes, so the journal
    never shows whether two records name the same document except by
    that equality, and the in-memory refs keep plain names.  Ids are
    sealed in the context of their collection, so one id in two
    collections gives unrelated bytes.  A sealed name that fails its tag
    raises `ValueError` (replay reports it as `CorruptJournalError`).
    Thread-safe: the caches are dicts updated by single operations.
    """

    sealed = True

    def __init__(self, name_key: crypto.AeadKey) -> None:
        self._key = name_key
        self._sealed: dict[tuple[str, str | None], bytes] = {}
        self._opened: dict[tuple[str | None, bytes], str] = {}

    def _remember(self, collection: str | None, name: str, raw: bytes) -> None:
        if len(self._opened) >= _CACHE_LIMIT:
            self._sealed.clear()
            self._opened.clear()
        self._sealed[(name, collection)] = raw
        self._opened[(collection, raw)] = name

    def _seal(self, collection: str | None, name: str) -> bytes:
        raw = self._sealed.get((name, collection))
        if raw is None:
            context = (
                crypto.COLLECTION_CONTEXT
                if collection is None
                else crypto.id_context(collection)
            )
            raw = crypto.seal_name(self._key, name, context)
            self._remember(collection, name, raw)
        return raw

    def _open(self, collection: str | None, raw: bytes) -> str:
        name = self._opened.get((collection, raw))
        if name is not None:
            return name
        context = (
            crypto.COLLECTION_CONTEXT
            if collection is None
            else crypto.id_context(collection)
        )
        try:
            name = crypto.open_name(self._key, raw, context)
            checked: str = (
                names.collection_name(name)
                if collection is None
                else names.document_id(name)
            )
        except (IntegrityError, InvalidInputError) as exc:
            raise ValueError(f"sealed name: {exc}") from exc
        self._remember(collection, checked, raw)
        return checked

    def write_collection(self, name: str) -> bytes:
        return self._seal(None, name)

    def read_collection(self, raw: bytes) -> str:
        return self._open(None, raw)

    def write_id(self, collection: str, doc_id: str) -> bytes:
        return self._seal(collection, doc_id)

    def read_id(self, collection: str, raw: bytes) -> str:
        return self._open(collection, raw)

    # Index field paths are rare (one record per create or drop), so
    # they are sealed and opened without a cache.

    def write_field(self, collection: str, path: str) -> bytes:
        return crypto.seal_field(
            self._key, path, crypto.field_context(collection)
        )

    def read_field(self, collection: str, raw: bytes) -> str:
        try:
            path = crypto.open_field(
                self._key, raw, crypto.field_context(collection)
            )
        except IntegrityError as exc:
            raise ValueError(f"sealed field path: {exc}") from exc
        if not 0 < len(path.encode("utf-8")) <= MAX_INDEX_PATH:
            raise ValueError("sealed field path has a bad length")
        return path


def encode_move(
    collection: str,
    doc_id: str,
    new: bytes,
    old: bytes | None,
    version: int,
    time: int,
    deleted: bool,
    codec: NameCodec = PLAIN_NAMES,
) -> bytes:
    """Return the content of a ref-move record."""
    name = codec.write_collection(collection)
    ident = codec.write_id(collection, doc_id)
    return b"".join(
        (
            bytes((len(name),)),
            name,
            bytes((len(ident),)),
            ident,
            _MOVE_TAIL.pack(
                new,
                old or NO_ADDRESS,
                version,
                time,
                FLAG_TOMBSTONE * deleted,
            ),
        )
    )


class Move(NamedTuple):
    collection: str
    id: str
    new: bytes
    old: bytes | None
    version: int
    time: int
    deleted: bool


def decode_move(content: bytes, codec: NameCodec = PLAIN_NAMES) -> Move:
    """Parse a ref-move record; `ValueError` names what is wrong."""
    at = 0
    parts = []
    for _ in range(2):
        if at >= len(content):
            raise ValueError("ref move is truncated")
        size = content[at]
        parts.append(content[at + 1 : at + 1 + size])
        at += 1 + size
    if len(content) - at != _MOVE_TAIL.size:
        raise ValueError("ref move has the wrong length")
    new, old, version, time, flags = _MOVE_TAIL.unpack_from(content, at)
    if flags & ~FLAG_TOMBSTONE or version < 1:
        raise ValueError("ref move has bad flags or version")
    if time >= MAX_TIME:
        raise ValueError("ref move has a time beyond the year 294,000")
    collection = codec.read_collection(parts[0])
    doc_id = codec.read_id(collection, parts[1])
    return Move(
        collection,
        doc_id,
        new,
        None if old == NO_ADDRESS else old,
        version,
        time,
        bool(flags),
    )


def encode_collection(
    operation: int, name: str, codec: NameCodec = PLAIN_NAMES
) -> bytes:
    """Content of a collection record: the operation, then the name."""
    return bytes((operation,)) + codec.write_collection(name)


class IndexOp(NamedTuple):
    """A create-index or drop-index collection record."""

    operation: int
    collection: str
    field: str


# What one ref, index or collection record does, once decoded.
Step = Move | IndexOp | tuple[int, str]


def encode_index(
    operation: int,
    collection: str,
    path: str,
    codec: NameCodec = PLAIN_NAMES,
) -> bytes:
    """Content of a create-index (4) or drop-index (5) record."""
    name = codec.write_collection(collection)
    return (
        bytes((operation, len(name)))
        + name
        + codec.write_field(collection, path)
    )


def is_index_record(content: bytes) -> bool:
    """Whether a collection record's content is an index operation."""
    return content[:1] in (b"\x04", b"\x05")


def decode_index(content: bytes, codec: NameCodec = PLAIN_NAMES) -> IndexOp:
    """Parse an index record; `ValueError` names what is wrong."""
    if len(content) < 2 or not is_index_record(content):
        raise ValueError("malformed index record")
    size = content[1]
    raw_path = content[2 + size :]
    if len(content) < 2 + size or not raw_path:
        raise ValueError("index record has a bad length")
    name = codec.read_collection(content[2 : 2 + size])
    return IndexOp(content[0], name, codec.read_field(name, raw_path))


def decode_collection(
    content: bytes, codec: NameCodec = PLAIN_NAMES
) -> tuple[int, str]:
    """Parse a collection record; `ValueError` names what is wrong."""
    if content[:1] not in (b"\x01", b"\x02", b"\x03"):
        raise ValueError("unknown collection operation")
    return content[0], codec.read_collection(content[1:])


class State:
    """Everything replay knows: collections, heads, and object places.

    `position` is the end of the last applied frame, as (pack, offset).
    `dropped` holds the refs of dropped collections, by name, until a
    restore brings them back or a later drop of the same name replaces
    them.  `names` decodes the names in records (plain or sealed).
    """

    def __init__(self, names: NameCodec = PLAIN_NAMES) -> None:
        self.names = names
        self.collections: dict[str, CollectionRefs] = {}
        self.dropped: dict[str, CollectionRefs] = {}
        self.objects: dict[bytes, Location] = {}
        self.position: tuple[int, int] = (1, journal.PACK_HEADER_SIZE)

    def apply(
        self, frame: journal.Frame, path: str, *, salvage: bool = False
    ) -> int | None:
        """Apply one frame; return the next pack number if it is a seal.

        Every record is checked first, so a frame is applied whole or not
        at all.  With `salvage` (a frame whose CRC failed but that valid
        frames follow), damaged object records are still indexed: a read
        of one then fails its hash check and names the object.  A record
        that does not fit the state raises `CorruptJournalError` naming
        the pack and offset.
        """
        try:
            objects, steps, sealed_to = self._decode(frame, salvage)
            self._check(steps, objects)
        except ValueError as exc:
            raise CorruptJournalError(
                f"{path} at offset {frame.offset}: {exc}",
                path=path,
                offset=frame.offset,
            ) from exc
        self._install(objects, steps, (frame.pack, frame.end))
        return sealed_to

    def apply_written(
        self,
        objects: list[tuple[bytes, Location]],
        steps: list[Step],
        end: tuple[int, int],
        path: str,
        offset: int,
    ) -> None:
        """Apply a frame this process just wrote, from what its writer
        recorded while building it instead of from its bytes.

        The writer records exactly what `_decode` would return for the
        frame (``tests/test_replay.py`` holds it to that), so the state
        changes as replay would change it.  The same checks run, so a
        writer that broke a rule fails loudly rather than diverging.
        """
        try:
            self._check(steps, objects)
        except ValueError as exc:
            raise CorruptJournalError(
                f"{path} at offset {offset}: {exc}", path=path, offset=offset
            ) from exc
        self._install(objects, steps, end)

    def _decode(
        self, frame: journal.Frame, salvage: bool
    ) -> tuple[list[tuple[bytes, Location]], list[Step], int | None]:
        """The object places, steps and seal of a frame; `ValueError`
        names a malformed record."""
        objects: list[tuple[bytes, Location]] = []
        steps: list[Step] = []
        sealed_to = None
        for item in journal.records(
            frame.body, frame.body_offset, salvage=salvage
        ):
            if item.kind == journal.RECORD_OBJECT:
                if len(item.content) < 32:
                    raise ValueError("object record is too short")
                objects.append(
                    (
                        item.content[:32],
                        location(
                            frame.pack,
                            item.offset + 32,
                            len(item.content) - 32,
                        ),
                    )
                )
            elif item.kind == journal.RECORD_REF:
                steps.append(decode_move(item.content, self.names))
            elif item.kind == journal.RECORD_COLLECTION:
                if is_index_record(item.content):
                    steps.append(decode_index(item.content, self.names))
                else:
                    steps.append(decode_collection(item.content, self.names))
            else:
                if len(item.content) != 4:
                    raise ValueError("seal record has the wrong length")
                sealed_to = struct.unpack(">I", item.content)[0]
                if sealed_to != frame.pack + 1:
                    raise ValueError("seal names the wrong pack")
        return objects, steps, sealed_to

    def _install(
        self,
        objects: list[tuple[bytes, Location]],
        steps: list[Step],
        end: tuple[int, int],
    ) -> None:
        """Make the checked effects of one frame part of the state."""
        self.objects.update(objects)
        for step in steps:
            if isinstance(step, Move):
                self.collections[step.collection].set(
                    step.id,
                    (step.new, step.version, step.deleted, step.time),
                )
            elif isinstance(step, IndexOp):
                self._index_op(step)
            else:
                self._collection_op(*step)
        self.position = end

    def _collection_op(self, operation: int, name: str) -> None:
        if operation == OP_CREATE:
            self.collections.setdefault(name, CollectionRefs())
        elif operation == OP_DROP:
            self.dropped[name] = self.collections.pop(name)
        else:
            self.collections[name] = self.dropped.pop(name)

    def _index_op(self, step: IndexOp) -> None:
        indexes = self.collections[step.collection].indexes
        if step.operation == OP_CREATE_INDEX:
            indexes.add(step.field)
        else:
            indexes.discard(step.field)

    def _check(
        self,
        steps: list[Step],
        objects: list[tuple[bytes, Location]],
    ) -> None:
        """Check the steps of a frame in order against the state.

        A move must be in a live collection, start from the head it
        names, carry the next version number and point to a stored
        object; a drop must name a live collection, a restore a dropped
        one that is not live.
        """
        fresh = {address for address, _ in objects}
        # Only what this frame changes; the rest is read from the state,
        # so the check costs nothing per collection the store holds.
        live: dict[str, bool] = {}
        dropped: dict[str, bool] = {}

        def is_live(name: str) -> bool:
            return live.get(name, name in self.collections)

        def is_dropped(name: str) -> bool:
            return dropped.get(name, name in self.dropped)

        # A frame never moves refs of a collection it dropped or
        # restored: the writer puts such operations in frames of their
        # own, which keeps this check simple and exact.
        settled: set[str] = set()
        pending: dict[tuple[str, str], Head] = {}
        for step in steps:
            if isinstance(step, IndexOp):
                if not is_live(step.collection):
                    raise ValueError(
                        f"index change in unknown collection {step.collection}"
                    )
                continue
            if not isinstance(step, Move):
                operation, name = step
                if operation == OP_CREATE:
                    if not is_live(name):
                        live[name] = True
                        if is_dropped(name):
                            settled.add(name)
                elif operation == OP_DROP:
                    if not is_live(name):
                        raise ValueError(f"drop of unknown collection {name}")
                    live[name] = False
                    dropped[name] = True
                    settled.add(name)
                else:
                    if is_live(name) or not is_dropped(name):
                        raise ValueError(f"cannot restore collection {name}")
                    live[name] = True
                    dropped[name] = False
                    settled.add(name)
                continue
            move = step
            if not is_live(move.collection):
                raise ValueError(
                    f"move in unknown collection {move.collection!r}"
                )
            if move.collection in settled:
                raise ValueError(
                    f"move in {move.collection!r} after it was dropped, "
                    "created or restored in the same frame"
                )
            key = (move.collection, move.id)
            current: Head | None
            if key in pending:
                current = pending[key]
            else:
                refs = self.collections.get(move.collection)
                current = refs.heads.get(move.id) if refs else None
            if move.old != (current[HEAD_ADDRESS] if current else None):
                raise ValueError(
                    f"move of {move.collection}/{move.id} does not start "
                    "from the current head"
                )
            if move.version != (current[HEAD_VERSION] + 1 if current else 1):
                raise ValueError(
                    f"move of {move.collection}/{move.id} skips a version"
                )
            if move.new not in fresh and move.new not in self.objects:
                raise ValueError(
                    f"move of {move.collection}/{move.id} names an object "
                    "the journal does not hold"
                )
            pending[key] = (move.new, move.version, move.deleted, move.time)
