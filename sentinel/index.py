"""Secondary indexes: ordered, in-memory caches of one field's values.

An index is never the source of truth.  Its definition (the field path)
is persisted with the collection's refs, as a create-index record in the
journal (see `sentinel.refs`), so every process learns of it by replay
and it survives a restart.  Its contents live only in memory: they are
built from the collection's heads, by reading each live document, the
first time a process uses the collection's indexes, and are kept current
from then on.  After a crash or a restart there is simply no index in
memory yet, and the first query builds it.

Structure, per indexed path::

    keys   dict   doc id -> order key of the value (`sentinel.query`)
    order  SortedList of (order key, doc id)

Documents missing the field are in the index too, under
`sentinel.query.MISSING`, which sorts last: so every index holds exactly
the live documents, which gives a cheap consistency check, and a sort on
the field can be read from the index whatever the documents hold.

Maintenance: an `IndexSet` (all indexes of one collection in one
process) registers an observer on the collection's `CollectionRefs`.
The observer runs under the engine's state lock on every head change,
whichever process wrote it (our own commits and other processes' frames
are both applied through `refs.State.apply`), and only adds the id to a
"dirty" set: writers pay O(1) and never read documents or raise.  Before
each use, `IndexSet.refresh` takes the dirty set and re-reads those ids'
heads, so an index is exactly current as of that moment.  Then the
number of entries is compared with the collection's live count; a
mismatch means the index is stale (it should not happen) and it is
rebuilt from scratch.

Runtime: building reads every live document once (the same cost as a
scan) and sorts; keeping current costs O(log n) per changed document at
the next query, plus one read of it.  Memory: roughly 250 bytes per
document per index, plus the value itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import NamedTuple

from sortedcontainers import SortedList

from sentinel import refs
from sentinel.document import Document
from sentinel.query import (
    MISSING,
    RANK_ARRAY,
    RANK_MISSING,
    RANK_STRING,
    FieldPath,
    Filter,
    InvalidQueryError,
    Key,
    key_at,
    order_key,
    parse_path,
)

log = logging.getLogger(__name__)

# Sorts after every document id, which are ASCII letters, digits, "_" and
# "-" (see `sentinel.names`): (key, HIGH_ID) comes after every entry of
# that key.
HIGH_ID = "\x7f"
# Ids read per step of a build, so the state lock is held briefly.
_WINDOW = 1024

# Loads documents for (id, head) pairs in one batch, a failure in the
# place of its document (see `Collection._load_many`).
LoadMany = Callable[[list[tuple[str, refs.Head]]], list[Document | Exception]]


class Interval(NamedTuple):
    """A half-open range of index entries: ``low <= entry < high``,
    where the bounds are tuples compared with ``(key, doc id)`` entries.
    ``(key,)`` is before every entry of `key`, ``(key, HIGH_ID)`` after
    them."""

    low: tuple[object, ...]
    high: tuple[object, ...]


# Every entry with a value; the entries of documents missing the field;
# every entry.
EVERYTHING = Interval((), (MISSING,))
_MISSING_SPAN = Interval((MISSING,), (MISSING, HIGH_ID))
EVERY_ENTRY = Interval((), ((RANK_MISSING + 1,),))


def _prefix_end(prefix: str) -> str | None:
    """The least string greater than every string starting with
    `prefix`, or None if there is none (code point order)."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def intervals_of(condition: Filter) -> list[Interval] | None:
    """The entries satisfying `condition`, exactly, as disjoint intervals
    in ascending order; None for an operator an index cannot answer.

    ``equals``, ``in``, the four comparisons and ``starts_with`` can be;
    a comparison covers only values of its operand's kind, as the
    operator itself does.
    """
    op, value = condition.op, condition.value
    if op == "equals":
        key = order_key(value)
        return [Interval((key,), (key, HIGH_ID))]
    if op == "in":
        keys = sorted({order_key(item) for item in value})
        return [Interval((key,), (key, HIGH_ID)) for key in keys]
    if op == "starts_with":
        end = _prefix_end(value)
        high: tuple[object, ...] = (
            (RANK_ARRAY,) if end is None else (RANK_STRING, end)
        )
        return [Interval(((RANK_STRING, value),), (high,))]
    if op in ("greater_than", "greater_or_equal"):
        key = order_key(value)
        low = (key, HIGH_ID) if op == "greater_than" else (key,)
        return [Interval(low, ((key[0] + 1,),))]
    if op in ("less_than", "less_or_equal"):
        key = order_key(value)
        high = (key,) if op == "less_than" else (key, HIGH_ID)
        return [Interval(((key[0],),), high)]
    return None


def intersect(first: Interval, second: Interval) -> Interval | None:
    """The overlap of two intervals, or None if they do not meet."""
    low = max(first.low, second.low)
    high = min(first.high, second.high)
    return Interval(low, high) if low < high else None


class FieldIndex:
    """The ordered index of one field path over the live documents."""

    __slots__ = ("path", "keys", "order")

    def __init__(self, path: FieldPath) -> None:
        self.path = path
        self.keys: dict[str, Key] = {}
        self.order: SortedList = SortedList()

    def load(self, entries: list[tuple[Key, str]]) -> None:
        """Replace the contents at once (faster than `put` one by one)."""
        self.keys = {doc_id: key for key, doc_id in entries}
        self.order = SortedList(entries)

    def put(self, doc_id: str, key: Key) -> None:
        """Set the key of `doc_id`.  Runtime: O(log n)."""
        old = self.keys.get(doc_id)
        if old is not None:
            self.order.remove((old, doc_id))
        self.keys[doc_id] = key
        self.order.add((key, doc_id))

    def remove(self, doc_id: str) -> None:
        old = self.keys.pop(doc_id, None)
        if old is not None:
            self.order.remove((old, doc_id))

    def __len__(self) -> int:
        return len(self.keys)

    def spans(self, intervals: list[Interval]) -> list[tuple[int, int]]:
        """Positions ``(start, stop)`` of each interval in `order`.
        Runtime: two binary searches per interval."""
        order = self.order
        found: list[tuple[int, int]] = []
        for low, high in intervals:
            start: int = order.bisect_left(low)
            stop: int = order.bisect_left(high)
            found.append((start, max(start, stop)))
        return found

    def ids_in(self, spans: list[tuple[int, int]]) -> list[str]:
        """The ids within `spans`, in key order."""
        order = self.order
        return [
            doc_id
            for start, stop in spans
            for _, doc_id in order.islice(start, stop)
        ]

    def count(self, intervals: list[Interval]) -> int:
        """Entries within `intervals`."""
        return sum(stop - start for start, stop in self.spans(intervals))

    def scan(
        self, intervals: list[Interval], descending: bool = False
    ) -> Iterator[str]:
        """Ids within `intervals` in key order (see `scan_spans`)."""
        return self.scan_spans(self.spans(intervals), descending)

    def scan_spans(
        self, spans: list[tuple[int, int]], descending: bool = False
    ) -> Iterator[str]:
        """Ids within `spans` in key order, equal keys in id order (also
        when descending, which is what a stable sort over id order
        gives).  Runtime: O(log n) to start, O(1) per id."""
        key: Key
        doc_id: str
        if not descending:
            for start, stop in spans:
                for _, doc_id in self.order.islice(start, stop):
                    yield doc_id
            return
        for start, stop in reversed(spans):
            run: list[str] = []
            run_key: Key = ()
            for key, doc_id in self.order.islice(start, stop, reverse=True):
                if run and key != run_key:
                    yield from reversed(run)
                    run = []
                if not run:
                    run_key = key
                run.append(doc_id)
            yield from reversed(run)

    def in_order(self, descending: bool) -> Iterator[str]:
        """Every id in the order of a sort on this field: by key, equal
        keys in id order, documents missing the field last."""
        yield from self.scan([EVERYTHING], descending)
        yield from self.scan([_MISSING_SPAN])


class IndexSet:
    """The indexes of one collection in this process, kept current.

    `lock` serialises refreshing and reading: hold it from `refresh` to
    the end of the query that uses `heads` and `indexes`, which then are
    a consistent snapshot of the collection.  The engine's `state_lock`
    is only ever taken inside `lock`, never the other way round, and the
    observer takes neither, so there is no lock-order cycle.
    """

    def __init__(
        self, state_lock: threading.Lock, load_many: LoadMany
    ) -> None:
        self.lock = threading.Lock()
        self._state_lock = state_lock
        self._load_many = load_many
        self._refs: refs.CollectionRefs | None = None
        self._observing = False
        self._dirty: set[str] = set()
        # Definition text -> whether this version can parse it.
        self._valid: dict[str, bool] = {}
        # The definitions as of the last refresh.
        self._defined: set[str] = set()
        self.heads: dict[str, refs.Head] = {}
        self.indexes: dict[str, FieldIndex] = {}
        # Counters for tests and explain: full builds, and rebuilds
        # forced by the consistency check.
        self.builds = 0
        self.repairs = 0

    # -- keeping current -----------------------------------------------------

    def _note(
        self, doc_id: str, previous: refs.Head | None, head: refs.Head
    ) -> None:
        """The observer: runs under the state lock; must not raise."""
        self._dirty.add(doc_id)

    def _detach(self) -> None:
        """Stop observing (caller holds the state lock)."""
        if self._observing and self._refs is not None:
            self._refs.observers.remove(self._note)
        self._observing = False
        self._dirty = set()
        self.heads = {}
        self.indexes = {}

    def _wanted(self, refs_of: refs.CollectionRefs) -> set[str]:
        """The persisted definitions that are valid paths.  A definition
        this version cannot parse is ignored (with one warning) rather
        than failing every query."""
        wanted = set()
        for text in refs_of.indexes:
            valid = self._valid.get(text)
            if valid is None:
                try:
                    parse_path(text)
                    valid = True
                except InvalidQueryError:
                    log.warning("ignoring index on bad path %r", text)
                    valid = False
                self._valid[text] = valid
            if valid:
                wanted.add(text)
        return wanted

    def refresh(self, refs_of: refs.CollectionRefs) -> None:
        """Bring the indexes up to the collection's current heads.

        Call with `lock` held.  Builds what is missing (reading every live
        document), drops what was undefined, applies the changes noted
        since the last call, and rebuilds if the result is inconsistent.
        Raises what reading a document raises (`CorruptionError`); the
        changes not yet applied stay noted for the next call.
        """
        with self._state_lock:
            if (
                refs_of is self._refs
                and self._observing
                and not self._dirty
                and refs_of.indexes == self._defined
                and self._consistent(refs_of.live)
            ):
                # Nothing changed since the last call: the common case.
                return
            if refs_of is not self._refs:
                self._detach()
                self._refs = refs_of
            self._defined = set(refs_of.indexes)
            wanted = self._wanted(refs_of)
            if not wanted:
                self._detach()
                return
            rebuild = not self._observing or not wanted <= set(self.indexes)
            if not self._observing:
                # Observe before reading any head, so a change made while
                # the build runs is noted and applied afterwards.
                refs_of.observers.append(self._note)
                self._observing = True
        for text in set(self.indexes) - wanted:
            del self.indexes[text]
        if rebuild:
            self._build(refs_of, wanted)
        if not self._catch_up(refs_of):
            self.repairs += 1
            log.warning(
                "an index was inconsistent with the refs; rebuilding it"
            )
            self._build(refs_of, wanted)
            self._catch_up(refs_of)

    def _build(self, refs_of: refs.CollectionRefs, wanted: set[str]) -> None:
        """Build every wanted index from the live heads, in windows."""
        self.builds += 1
        paths = [parse_path(text) for text in sorted(wanted)]
        entries: list[list[tuple[Key, str]]] = [[] for _ in paths]
        heads: dict[str, refs.Head] = {}
        start: str | None = None
        while True:
            with self._state_lock:
                window: list[tuple[str, refs.Head]] = []
                for doc_id in refs_of.heads.irange(
                    start, inclusive=(False, True)
                ):
                    window.append((doc_id, refs_of.heads[doc_id]))
                    if len(window) >= _WINDOW:
                        break
            live = [
                (doc_id, head)
                for doc_id, head in window
                if not head[refs.HEAD_DELETED]
            ]
            for (doc_id, head), doc in zip(
                live, self._load_many(live), strict=True
            ):
                if isinstance(doc, Exception):
                    raise doc
                data = doc.data
                heads[doc_id] = head
                for found, path in zip(entries, paths, strict=True):
                    found.append((key_at(data, path), doc_id))
            if len(window) < _WINDOW:
                break
            start = window[-1][0]
        self.heads = heads
        self.indexes = {}
        for found, path in zip(entries, paths, strict=True):
            index = FieldIndex(path)
            index.load(found)
            self.indexes[path.text] = index

    def _catch_up(self, refs_of: refs.CollectionRefs) -> bool:
        """Apply the noted changes; False if the result is inconsistent."""
        with self._state_lock:
            dirty, self._dirty = self._dirty, set()
            changed: list[tuple[str, refs.Head | None]] = [
                (doc_id, refs_of.heads.get(doc_id)) for doc_id in dirty
            ]
            live = refs_of.live
        try:
            self._apply(changed)
        except BaseException:
            # Whatever was not applied is noted again, so the next use
            # retries it rather than trusting a stale entry.
            with self._state_lock:
                self._dirty.update(doc_id for doc_id, _ in changed)
            raise
        return self._consistent(live)

    def _consistent(self, live: int) -> bool:
        """Whether every index holds exactly `live` documents."""
        return len(self.heads) == live and all(
            len(index) == live for index in self.indexes.values()
        )

    def _apply(self, changed: list[tuple[str, refs.Head | None]]) -> None:
        """Remove dead ids, and re-read changed ones a window at a time."""
        wanted: list[tuple[str, refs.Head]] = []
        for doc_id, head in changed:
            if head is None or head[refs.HEAD_DELETED]:
                self.heads.pop(doc_id, None)
                for index in self.indexes.values():
                    index.remove(doc_id)
            elif self.heads.get(doc_id) != head:
                wanted.append((doc_id, head))
        for start in range(0, len(wanted), _WINDOW):
            window = wanted[start : start + _WINDOW]
            for (doc_id, head), doc in zip(
                window, self._load_many(window), strict=True
            ):
                if isinstance(doc, Exception):
                    raise doc
                data = doc.data
                for index in self.indexes.values():
                    index.put(doc_id, key_at(data, index.path))
                self.heads[doc_id] = head
