"""The ref log: every ref move and collection change, in commit order.

Read straight from the packs, which keep every frame ever committed, so
the log is complete back to the store's creation (until garbage
collection, which does not exist yet).  Only frames before the state's
position are read: those are committed and never change, so no lock is
needed.  Runtime: reads every pack once; memory: one pack window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sentinel import journal, refs
from sentinel.errors import CorruptJournalError

if TYPE_CHECKING:
    from sentinel.engine import Engine

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of the ref log.

    `action` is ``write`` (a new version), ``delete`` (a tombstone),
    ``create``, ``drop`` or ``restore`` (of a collection; then `id`,
    `version`, `hash` and `previous` are None, and `time` is the time of
    the next write, as collection records carry none), or
    ``create_index`` or ``drop_index`` (likewise, with the indexed path
    in `field`).
    """

    action: str
    collection: str
    id: str | None
    version: int | None
    hash: str | None
    previous: str | None
    time: str | None
    pack: int
    offset: int
    field: str | None = None


def from_micros(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds")


_OPERATIONS = {
    refs.OP_CREATE: "create",
    refs.OP_DROP: "drop",
    refs.OP_RESTORE: "restore",
}


def entries(engine: Engine, collection: str | None) -> Iterator[LogEntry]:
    """Yield the log, oldest first, optionally for one collection."""
    end_pack, end_offset = engine.state.position
    names = engine.state.names
    pack = 1
    packs = engine.journal
    while True:
        path = packs.path(pack)
        following = None
        at = journal.PACK_HEADER_SIZE
        for frame in packs.frames(pack, at):
            if (pack, frame.offset) >= (end_pack, end_offset):
                return
            at = frame.end
            try:
                for item in journal.records(frame.body, frame.body_offset):
                    if item.kind == journal.RECORD_SEAL:
                        following = pack + 1
                    entry = _entry(item, pack, frame.offset, names)
                    if entry is not None and collection in (
                        None,
                        entry.collection,
                    ):
                        yield entry
            except ValueError as exc:
                raise CorruptJournalError(
                    f"{path} at offset {frame.offset}: {exc}",
                    path=path,
                    offset=frame.offset,
                ) from exc
        if following is None:
            if (pack, at) < (end_pack, end_offset):
                # The frames stop before what the store has applied: a
                # damaged frame, which a complete log cannot skip.
                raise CorruptJournalError(
                    f"{path} is damaged at offset {at}; the log cannot "
                    "be read past it",
                    path=path,
                    offset=at,
                )
            return
        pack = following


def _entry(
    item: journal.Record, pack: int, offset: int, names: refs.NameCodec
) -> LogEntry | None:
    if item.kind == journal.RECORD_REF:
        move = refs.decode_move(item.content, names)
        return LogEntry(
            "delete" if move.deleted else "write",
            move.collection,
            move.id,
            move.version,
            move.new.hex(),
            move.old.hex() if move.old else None,
            from_micros(move.time),
            pack,
            offset,
        )
    if item.kind == journal.RECORD_COLLECTION and refs.is_index_record(
        item.content
    ):
        change = refs.decode_index(item.content, names)
        return LogEntry(
            "create_index"
            if change.operation == refs.OP_CREATE_INDEX
            else "drop_index",
            change.collection,
            None,
            None,
            None,
            None,
            None,
            pack,
            offset,
            change.field,
        )
    if item.kind == journal.RECORD_COLLECTION:
        operation, name = refs.decode_collection(item.content, names)
        return LogEntry(
            _OPERATIONS[operation],
            name,
            None,
            None,
            None,
            None,
            None,
            pack,
            offset,
        )
    return None
