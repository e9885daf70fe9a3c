"""Running queries: choose an access path, then filter, sort and page.

The planner looks at the conditions that must all hold (the top-level
``and``).  For each indexed field it turns those it can answer
(``equals``, ``in``, the comparisons, ``starts_with``) into key intervals
(`sentinel.index.intervals_of`), intersects them, and counts the entries
inside with two binary searches.  The index with the fewest entries wins
and supplies the candidates; those conditions are then known to hold.
Without one, a sort whose first key is indexed reads that index in
order, so ``sort`` + ``limit`` stops after the page when the total is
known.  Otherwise every live document is a candidate (a scan).

Every other condition is checked per candidate.  A condition on an
indexed field is checked from the index's key, without reading the
document; only conditions on unindexed fields, and the documents
returned, cost a read.  So indexes never change a result, only what it
costs: the result is always "the matching documents, sorted stably by
the sort keys over id order, then paged".

A query without indexes, or ``as_of``, reads the refs in windows, like
`Collection.ids`: each document is seen at a version that was current
during the query.  A query on indexed collections sees the snapshot the
indexes were brought to when it began.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sentinel import refs
from sentinel.aggregate import Aggregation
from sentinel.document import Document
from sentinel.index import (
    EVERY_ENTRY,
    FieldIndex,
    IndexSet,
    Interval,
    intersect,
    intervals_of,
)
from sentinel.query import (
    NULL,
    And,
    Condition,
    FieldPath,
    Filter,
    Key,
    Plan,
    Predicate,
    QueryResult,
    QuerySpec,
    SortKey,
    compile_condition,
    conjuncts,
    key_at,
    paths_of,
    projected,
    projection_tree,
    sort_rows,
)

# Loads documents for (id, head) pairs, reading in pack order; a failure
# is returned in its place (see `Collection._load_many`).
LoadMany = Callable[[list[tuple[str, refs.Head]]], list[Document | Exception]]
# Refs copied, or candidates read, per step: the state lock is held that
# long, and that many documents are fetched by one `read_many`.
_WINDOW = 1024


# -- what a query runs against -----------------------------------------------


class LiveView:
    """The collection as it is now, with its indexes when it has any.

    With an `IndexSet`, its `heads` and `indexes` are the snapshot the
    query sees (hold its lock while the view is in use).
    """

    def __init__(
        self,
        refs_of: refs.CollectionRefs,
        state_lock: threading.Lock,
        load_many: LoadMany,
        index_set: IndexSet | None,
    ) -> None:
        self._refs = refs_of
        self._state_lock = state_lock
        self.load_many = load_many
        self._heads = index_set.heads if index_set is not None else None
        self.indexes: dict[str, FieldIndex] = (
            index_set.indexes if index_set is not None else {}
        )
        self.access = "scan"

    def size(self) -> int | None:
        """How many live documents a scan yields."""
        if self._heads is not None:
            return len(self._heads)
        return self._refs.live

    def head(self, doc_id: str) -> refs.Head:
        """The head of an id the indexes returned."""
        if self._heads is None:
            raise LookupError("this view has no indexes")
        return self._heads[doc_id]

    def scan(self) -> Iterator[list[tuple[str, refs.Head]]]:
        """Live ids and heads in id order, a window at a time."""
        snapshot = self._heads
        for window in _windows(self._refs, self._state_lock, None):
            if snapshot is not None:
                # The indexes' snapshot decides, not the refs, which may
                # have moved since.
                yield [
                    (doc_id, snapshot[doc_id])
                    for doc_id, _ in window
                    if doc_id in snapshot
                ]
            else:
                yield [
                    (doc_id, head)
                    for doc_id, head in window
                    if head is not None and not head[refs.HEAD_DELETED]
                ]


class HistoryView:
    """The collection as it stood at `micros` (microseconds since the
    epoch): each id at the version current then, if it was live."""

    def __init__(
        self,
        refs_of: refs.CollectionRefs,
        state_lock: threading.Lock,
        load_many: LoadMany,
        micros: int,
    ) -> None:
        self._refs = refs_of
        self._state_lock = state_lock
        self.load_many = load_many
        self._micros = micros
        self.indexes: dict[str, FieldIndex] = {}
        self.access = "history scan"

    def size(self) -> int | None:
        return None

    def head(self, doc_id: str) -> refs.Head:
        raise LookupError("a history view has no indexes")

    def scan(self) -> Iterator[list[tuple[str, refs.Head]]]:
        for window in _windows(self._refs, self._state_lock, self._micros):
            yield [
                (doc_id, head)
                for doc_id, head in window
                if head is not None and not head[refs.HEAD_DELETED]
            ]


View = LiveView | HistoryView


def _windows(
    refs_of: refs.CollectionRefs, lock: threading.Lock, micros: int | None
) -> Iterator[list[tuple[str, refs.Head | None]]]:
    """Every id with its head (or, given `micros`, its version at that
    time, None before the first), in id order, copied a window at a time
    under `lock` so writers wait only briefly."""
    heads = refs_of.heads
    start: str | None = None
    while True:
        window: list[tuple[str, refs.Head | None]] = []
        with lock:
            for doc_id in heads.irange(start, inclusive=(False, True)):
                if micros is None:
                    window.append((doc_id, heads[doc_id]))
                else:
                    window.append((doc_id, refs_of.at_time(doc_id, micros)))
                if len(window) >= _WINDOW:
                    break
        yield window
        if len(window) < _WINDOW:
            return
        start = window[-1][0]


# -- rows --------------------------------------------------------------------


class _Context:
    """What rows share: the indexes, the loader, and counters."""

    __slots__ = ("indexes", "load_many", "loaded", "seen")

    def __init__(self, view: View) -> None:
        self.indexes = view.indexes
        self.load_many = view.load_many
        self.loaded = 0
        self.seen = 0

    def fill(self, rows: list[_Row]) -> None:
        """Read the documents of `rows` that are not read yet, together."""
        missing = [row for row in rows if row.doc is None]
        if not missing:
            return
        found = self.load_many([(row.doc_id, row.head) for row in missing])
        self.loaded += len(missing)
        for row, doc in zip(missing, found, strict=True):
            row.doc = doc


class _Row:
    """One candidate: its keys come from an index when the path is
    indexed, else from the document, read on first need.  `doc` may hold
    the error reading it gave, raised only if the document is needed."""

    __slots__ = ("doc_id", "head", "doc", "pinned", "ctx")

    def __init__(self, ctx: _Context, doc_id: str, head: refs.Head) -> None:
        self.ctx = ctx
        self.doc_id = doc_id
        self.head = head
        self.doc: Document | Exception | None = None
        self.pinned: dict[FieldPath, Key] | None = None

    def key(self, path: FieldPath) -> Key:
        index = self.ctx.indexes.get(path.text)
        if index is not None:
            return index.keys[self.doc_id]
        pinned = self.pinned
        if pinned is not None and path in pinned:
            return pinned[path]
        return key_at(self.document().data, path)

    def document(self) -> Document:
        doc = self.doc
        if doc is None:
            self.ctx.fill([self])
            doc = self.doc
        if isinstance(doc, Exception):
            raise doc
        assert doc is not None
        return doc

    def pin(self, paths: list[FieldPath]) -> None:
        """Keep the keys of `paths` and let the document go, so a large
        result held for sorting costs keys, not documents."""
        if self.doc is None:
            return
        self.pinned = {path: self.key(path) for path in paths}
        self.doc = None


# -- planning ----------------------------------------------------------------


@dataclass
class _Choice:
    """Where candidates come from."""

    index: FieldIndex | None = None
    # Positions in the index's order; None: the whole index, in order.
    spans: list[tuple[int, int]] | None = None
    consumed: list[Filter] = field(default_factory=list)
    count: int | None = None
    ordered: SortKey | None = None


def _plan(
    condition: Condition | None, sort: tuple[SortKey, ...], view: View
) -> _Choice:
    """Pick the access path (see the module docstring)."""
    indexes = view.indexes
    by_path: dict[str, list[tuple[Filter, list[Interval]]]] = {}
    for part in conjuncts(condition):
        if isinstance(part, Filter) and part.path.text in indexes:
            found = intervals_of(part)
            if found is not None:
                by_path.setdefault(part.path.text, []).append((part, found))

    options: list[_Choice] = []
    for text, items in by_path.items():
        index = indexes[text]
        # Conditions that are one interval each intersect into one range
        # (None when they exclude each other); `in` lists are clipped to
        # it.
        single = [part for part, found in items if len(found) == 1]
        span: Interval | None = EVERY_ENTRY
        for _, found in items:
            if len(found) == 1 and span is not None:
                span = intersect(span, found[0])
        if single:
            ranges = index.spans([span] if span is not None else [])
            options.append(_Choice(index, ranges, single, _total(ranges)))
        for part, found in items:
            if len(found) == 1:
                continue
            clipped = []
            for interval in found:
                piece = intersect(interval, span) if span is not None else None
                if piece is not None:
                    clipped.append(piece)
            ranges = index.spans(clipped)
            options.append(
                _Choice(index, ranges, [*single, part], _total(ranges))
            )
    best = min(options, key=lambda choice: choice.count or 0, default=None)

    first = sort[0] if sort else None
    if best is not None and first is not None:
        assert best.index is not None
        if best.index.path == first.path:
            best.ordered = first
            return best
    size = view.size()
    if (
        first is not None
        and first.path.text in indexes
        and (best is None or best.count == size)
    ):
        return _Choice(indexes[first.path.text], None, [], size, first)
    return best or _Choice(count=size)


def _total(spans: list[tuple[int, int]]) -> int:
    return sum(stop - start for start, stop in spans)


# -- running -----------------------------------------------------------------


def _candidates(
    choice: _Choice, view: View, ctx: _Context, prefetch: bool
) -> Iterator[_Row]:
    """The candidate rows in the choice's order.  With `prefetch`, the
    documents of each window are read together before its rows are
    used (worth it when most of them will be read anyway); without, an
    index is read lazily, so a query that stops early reads little."""
    if prefetch or choice.index is None:
        for window in _chunks(choice, view):
            rows = [_Row(ctx, doc_id, head) for doc_id, head in window]
            if prefetch:
                ctx.fill(rows)
            for row in rows:
                ctx.seen += 1
                yield row
        return
    for doc_id in _ids(choice):
        ctx.seen += 1
        yield _Row(ctx, doc_id, view.head(doc_id))


def _ids(choice: _Choice) -> Iterator[str]:
    """The ids an index choice yields, in its order."""
    assert choice.index is not None
    descending = choice.ordered is not None and choice.ordered.descending
    if choice.spans is None:
        return choice.index.in_order(descending)
    return choice.index.scan_spans(choice.spans, descending)


def _chunks(
    choice: _Choice, view: View
) -> Iterator[list[tuple[str, refs.Head]]]:
    if choice.index is None:
        yield from view.scan()
        return
    window: list[tuple[str, refs.Head]] = []
    for doc_id in _ids(choice):
        window.append((doc_id, view.head(doc_id)))
        if len(window) >= _WINDOW:
            yield window
            window = []
    if window:
        yield window


def _needs_documents(
    condition: Condition | None, view: View, *extra: FieldPath | None
) -> bool:
    """Whether checking `condition` (and reading `extra` paths) reads
    fields that no index holds."""
    paths = paths_of(condition) | {path for path in extra if path}
    return any(path.text not in view.indexes for path in paths)


def _residual(
    condition: Condition | None, choice: _Choice, view: View
) -> tuple[Condition | None, Predicate | None]:
    """The conditions the access path did not answer, and their test."""
    consumed = {id(part) for part in choice.consumed}
    rest = [part for part in conjuncts(condition) if id(part) not in consumed]
    if not rest:
        return None, None
    whole = rest[0] if len(rest) == 1 else And(tuple(rest))
    indexes = view.indexes
    test = compile_condition(whole, lambda path: path.text in indexes)
    return whole, test


def run_query(spec: QuerySpec, view: View, started: float) -> QueryResult:
    """Run `spec` against `view`.  `started` is the `perf_counter` time
    the caller began at, so `execution_time` includes refreshing."""
    ctx = _Context(view)
    choice = _plan(spec.condition, spec.sort, view)
    residual, test = _residual(spec.condition, choice, view)
    prefetch = _needs_documents(residual, view) or (
        test is None and spec.limit is None
    )
    id_ordered = choice.index is None
    streaming = choice.ordered is not None or (not spec.sort and id_ordered)
    if (
        choice.index is not None
        and choice.spans is not None
        and not (test or spec.sort)
    ):
        # The index answers the whole filter and no order is asked for:
        # the ids are the result, and only the page is read.
        page, total = _direct(spec, choice, view, ctx)
    elif streaming:
        rows = _candidates(choice, view, ctx, prefetch)
        page, total = _stream(spec, rows, test, choice.count)
    else:
        rows = _candidates(choice, view, ctx, prefetch)
        page, total = _collect(spec, rows, test, id_ordered)

    tree = (
        None if spec.projection is None else projection_tree(spec.projection)
    )
    ctx.fill(page)
    documents = []
    for row in page:
        doc = row.document()
        documents.append(projected(doc, tree) if tree is not None else doc)

    plan = None
    if spec.explain:
        access = view.access
        if choice.index is not None:
            access = "index order" if choice.spans is None else "index"
        plan = Plan(
            access,
            choice.index.path.text if choice.index is not None else None,
            " and ".join(map(str, choice.consumed)) or None,
            None if residual is None else str(residual),
            "none"
            if not spec.sort
            else ("index" if choice.ordered is not None else "memory"),
            ctx.seen,
            ctx.loaded,
        )
    elapsed = time.perf_counter() - started
    return QueryResult(documents, total, elapsed, plan)


def _direct(
    spec: QuerySpec, choice: _Choice, view: View, ctx: _Context
) -> tuple[list[_Row], int]:
    """The page of an index choice that needs no further test or sort:
    its ids, in id order, sliced."""
    assert choice.index is not None and choice.spans is not None
    ids = choice.index.ids_in(choice.spans)
    ids.sort()
    ctx.seen = len(ids)
    end = None if spec.limit is None else spec.offset + spec.limit
    page = [
        _Row(ctx, doc_id, view.head(doc_id))
        for doc_id in ids[spec.offset : end]
    ]
    return page, len(ids)


def _stream(
    spec: QuerySpec,
    rows: Iterator[_Row],
    test: Predicate | None,
    size: int | None,
) -> tuple[list[_Row], int]:
    """Rows already arrive in result order (by the first sort key, ties
    in id order): keep the page, and count the rest only if the total is
    not known without checking them."""
    need = None if spec.limit is None else spec.offset + spec.limit
    first = spec.sort[0].path if spec.sort else None
    more_keys = len(spec.sort) > 1
    kept: list[_Row] = []
    total = 0
    boundary: Key | None = None
    for row in rows:
        if test is not None and not test(row):
            continue
        total += 1
        if need is None or len(kept) < need:
            kept.append(row)
            if more_keys and need is not None and len(kept) == need:
                assert first is not None
                boundary = row.key(first)
            continue
        # Rows tied with the last one on the first key may still belong
        # to the page once the other keys are applied.
        if boundary is not None:
            assert first is not None
            if row.key(first) == boundary:
                kept.append(row)
                continue
            boundary = None
        if test is None and size is not None:
            total = size
            break
    if more_keys:
        sort_rows(kept, spec.sort)
    end = None if spec.limit is None else spec.offset + spec.limit
    return kept[spec.offset : end], total


def _collect(
    spec: QuerySpec,
    rows: Iterator[_Row],
    test: Predicate | None,
    id_ordered: bool,
) -> tuple[list[_Row], int]:
    """Gather every match, then order and page them in memory."""
    paths = [key.path for key in spec.sort]
    light = spec.limit is not None
    matches = []
    for row in rows:
        if test is None or test(row):
            if light:
                row.pin(paths)
            matches.append(row)
    if not id_ordered:
        matches.sort(key=lambda row: row.doc_id)
    sort_rows(matches, spec.sort)
    end = None if spec.limit is None else spec.offset + spec.limit
    return matches[spec.offset : end], len(matches)


def run_aggregate(
    aggregation: Aggregation, condition: Condition | None, view: View
) -> Any:
    """Feed every match to `aggregation`, in id order; return its
    result."""
    ctx = _Context(view)
    choice = _plan(condition, (), view)
    residual, test = _residual(condition, choice, view)
    paths = [
        path
        for path in (aggregation.field, aggregation.group_by)
        if path is not None
    ]
    prefetch = _needs_documents(residual, view, *paths)
    matches: Iterator[_Row] = (
        row
        for row in _candidates(choice, view, ctx, prefetch)
        if test is None or test(row)
    )
    if choice.index is not None:
        ordered = []
        for row in matches:
            row.pin(paths)
            ordered.append(row)
        ordered.sort(key=lambda row: row.doc_id)
        matches = iter(ordered)
    field_path, group_path = aggregation.field, aggregation.group_by
    for row in matches:
        aggregation.add(
            row.key(field_path) if field_path is not None else NULL,
            row.key(group_path) if group_path is not None else NULL,
        )
        # A scan reads each document once; drop it before the next.
        row.doc = None
    return aggregation.result()
