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
    u8  flags: bit 0 set when the new head is a tombstone

Recording the previous head lets replay check every move against the
state it started from, so a lost or reordered record is detected rather
than silently applied.

Runtime: `count()` is O(1); a head lookup is a dict lookup; applying a
move is O(log n) in the collection's size (a `SortedDict` insert).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from sortedcontainers import SortedDict

from sentinel import journal, names
from sentinel.errors import CorruptJournalError, InvalidInputError

NO_ADDRESS = bytes(32)
_MOVE_TAIL = struct.Struct(">32s32sQB")
FLAG_TOMBSTONE = 1


class Head(NamedTuple):
    """The head of one document id."""

    address: bytes
    version: int
    deleted: bool


class Location(NamedTuple):
    """Where an object's stored bytes live."""

    pack: int
    offset: int
    length: int


@dataclass(slots=True)
class CollectionRefs:
    """The heads of one collection and its count of live documents."""

    heads: SortedDict = field(default_factory=SortedDict)
    live: int = 0

    def set(self, doc_id: str, head: Head) -> Head | None:
        previous = self.heads.get(doc_id)
        self.heads[doc_id] = head
        self.live += (not head.deleted) - (
            previous is not None and not previous.deleted
        )
        return previous


def encode_move(
    collection: str,
    doc_id: str,
    new: bytes,
    old: bytes | None,
    version: int,
    deleted: bool,
) -> bytes:
    """Return the content of a ref-move record."""
    name = collection.encode()
    ident = doc_id.encode()
    return b"".join(
        (
            bytes((len(name),)),
            name,
            bytes((len(ident),)),
            ident,
            _MOVE_TAIL.pack(
                new, old or NO_ADDRESS, version, FLAG_TOMBSTONE * deleted
            ),
        )
    )


class Move(NamedTuple):
    collection: str
    id: str
    new: bytes
    old: bytes | None
    version: int
    deleted: bool


def decode_move(content: bytes) -> Move:
    """Parse a ref-move record; `ValueError` names what is wrong."""
    at = 0
    parts = []
    for _ in range(2):
        if at >= len(content):
            raise ValueError("ref move is truncated")
        size = content[at]
        parts.append(content[at + 1 : at + 1 + size].decode("ascii"))
        at += 1 + size
    if len(content) - at != _MOVE_TAIL.size:
        raise ValueError("ref move has the wrong length")
    new, old, version, flags = _MOVE_TAIL.unpack_from(content, at)
    if flags & ~FLAG_TOMBSTONE or version < 1:
        raise ValueError("ref move has bad flags or version")
    try:
        collection = names.collection_name(parts[0])
        doc_id = names.document_id(parts[1])
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from exc
    return Move(
        collection,
        doc_id,
        new,
        None if old == NO_ADDRESS else old,
        version,
        bool(flags),
    )


def encode_collection(name: str) -> bytes:
    """Content of a collection record: op 1 (create), then the name."""
    return b"\x01" + name.encode()


def decode_collection(content: bytes) -> str:
    if content[:1] != b"\x01":
        raise ValueError("unknown collection operation")
    try:
        return names.collection_name(content[1:].decode("ascii"))
    except (UnicodeDecodeError, InvalidInputError) as exc:
        raise ValueError(str(exc)) from exc


class State:
    """Everything replay knows: collections, heads, and object places.

    `position` is the end of the last applied frame, as (pack, offset).
    """

    def __init__(self) -> None:
        self.collections: dict[str, CollectionRefs] = {}
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
        objects: list[tuple[bytes, Location]] = []
        moves: list[Move] = []
        created: list[str] = []
        sealed_to = None
        try:
            for item in journal.records(
                frame.body, frame.body_offset, salvage=salvage
            ):
                if item.kind == journal.RECORD_OBJECT:
                    if len(item.content) < 32:
                        raise ValueError("object record is too short")
                    objects.append(
                        (
                            item.content[:32],
                            Location(
                                frame.pack,
                                item.offset + 32,
                                len(item.content) - 32,
                            ),
                        )
                    )
                elif item.kind == journal.RECORD_REF:
                    moves.append(decode_move(item.content))
                elif item.kind == journal.RECORD_COLLECTION:
                    created.append(decode_collection(item.content))
                else:
                    if len(item.content) != 4:
                        raise ValueError("seal record has the wrong length")
                    sealed_to = struct.unpack(">I", item.content)[0]
                    if sealed_to != frame.pack + 1:
                        raise ValueError("seal names the wrong pack")
            self._check_moves(moves, created, objects)
        except ValueError as exc:
            raise CorruptJournalError(
                f"{path} at offset {frame.offset}: {exc}",
                path=path,
                offset=frame.offset,
            ) from exc

        for name in created:
            self.collections.setdefault(name, CollectionRefs())
        self.objects.update(objects)
        for move in moves:
            self.collections[move.collection].set(
                move.id, Head(move.new, move.version, move.deleted)
            )
        self.position = (frame.pack, frame.end)
        return sealed_to

    def _check_moves(
        self,
        moves: list[Move],
        created: list[str],
        objects: list[tuple[bytes, Location]],
    ) -> None:
        """Each move must start from the head it names and point to an
        object this frame or an earlier one holds."""
        fresh = {address for address, _ in objects}
        pending: dict[tuple[str, str], Head] = {}
        for move in moves:
            if move.collection not in self.collections and (
                move.collection not in created
            ):
                raise ValueError(f"move in unknown collection {move.id!r}")
            key = (move.collection, move.id)
            current = pending.get(key)
            if current is None:
                refs = self.collections.get(move.collection)
                current = refs.heads.get(move.id) if refs else None
            expected_old = current.address if current else None
            if move.old != expected_old:
                raise ValueError(
                    f"move of {move.collection}/{move.id} does not start "
                    "from the current head"
                )
            if move.new not in fresh and move.new not in self.objects:
                raise ValueError(
                    f"move of {move.collection}/{move.id} names an object "
                    "the journal does not hold"
                )
            pending[key] = Head(move.new, move.version, move.deleted)
