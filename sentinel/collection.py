"""`Collection`: the document operations of one named collection.

Every write goes through one funnel, `write_version`: it runs under the
store's exclusive lock (as a plan, see `sentinel.engine`), checks the
caller's expectation of the current version, builds the version object,
and moves the ref.  Reads go through `Collection._load`, which verifies
the object and that it is the version the ref claims.

Reads that return documents (`get`, `get_at`, `get_many`, `history`,
`all`, `filter`, `query`, `aggregate`) take ``verification=``, a
`VerificationOptions` saying what to do about signatures in an
encrypted store; None means the store's default (see `Store.new`).  It
is resolved once with `Store._verification_for`, before anything is
read, then passed to every `_load` (or `Engine.read_many`, for `all`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sentinel import aggregate as _aggregate
from sentinel import codec, merge, names, objects, refs
from sentinel import execution as _execution
from sentinel import index as _index
from sentinel import query as _query
from sentinel.document import Document
from sentinel.engine import Planner, to_micros
from sentinel.errors import (
    ConflictError,
    CorruptObjectError,
    InvalidInputError,
    NotFoundError,
)
from sentinel.signing import VerificationOptions

if TYPE_CHECKING:
    from sentinel.batch import Batch
    from sentinel.store import Store

# Ids copied per step of `ids()`: small enough to bound memory, large
# enough that the lock is taken rarely.
_ID_WINDOW = 1024
T = TypeVar("T")
_HEX_ADDRESS = re.compile(r"[0-9a-f]{64}")


def expected_address(expected_hash: str | None) -> bytes | None:
    """Check an ``expected_hash`` argument before anything is written."""
    if expected_hash is None:
        return None
    if type(expected_hash) is not str or not _HEX_ADDRESS.fullmatch(
        expected_hash
    ):
        raise InvalidInputError(
            "expected_hash must be a 64-character lowercase hex string"
        )
    return bytes.fromhex(expected_hash)


def parse_moment(when: datetime | str) -> int:
    """Microseconds since the epoch of a timezone-aware moment."""
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError as exc:
            raise InvalidInputError(
                f"{when!r} is not an ISO 8601 time"
            ) from exc
    if not isinstance(when, datetime):
        raise InvalidInputError("when must be a datetime or an ISO string")
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInputError(
            "when must carry a timezone (naive times are ambiguous)"
        )
    return to_micros(when)


def _version_in(opened: objects.Opened, address: str) -> objects.Version:
    """The version object in `opened`, read from hex `address`;
    `CorruptObjectError` if it is not one."""
    if opened.kind != objects.TYPE_VERSION:
        raise CorruptObjectError(
            f"object {address} is not a version object", address=address
        )
    return objects.parse_version(opened.payload, address)


def read_version(planner: Planner, address: bytes) -> objects.Version:
    """Read and verify the version object at `address`, committed or
    planned (hash and tag; not its signature: this serves writes)."""
    return _version_in(planner.read(address), address.hex())


def write_version(
    planner: Planner,
    collection: str,
    doc_id: str,
    body: bytes,
    *,
    deleted: bool = False,
    expected: bytes | None = None,
    created: str | None = None,
    current: objects.Version | None = None,
) -> Document:
    """Write a new version of `doc_id` holding `body`: the one funnel.

    `expected`, when given, must be the address of the current head (a
    `ConflictError` otherwise).  `created` overrides the created_at the
    version would get (kept from a live parent, else now).  `current` is
    the head's version object when the caller has already read it.
    """
    if not planner.has_collection(collection):
        raise NotFoundError(f"collection {collection!r} does not exist")
    head = planner.head(collection, doc_id)
    parent = head[refs.HEAD_ADDRESS] if head is not None else None
    if expected is not None and parent != expected:
        raise ConflictError(
            f"{collection}/{doc_id} is at "
            f"{parent.hex() if parent else 'no version'}, not "
            f"{expected.hex()}"
        )
    stamp, micros = planner.time, planner.micros
    if head is None:
        version, born = 1, stamp
    else:
        parent, number, _, head_time = head
        previous = current or read_version(planner, parent)
        version = number + 1
        # Keep time moving forward along a document's history, even if
        # the wall clock steps back.
        if previous.updated_at > stamp:
            stamp, micros = previous.updated_at, head_time
        born = stamp if previous.deleted else previous.created_at
    payload = objects.version_payload(
        collection,
        doc_id,
        version,
        parent,
        created or born,
        stamp,
        deleted,
        body,
    )
    stored = planner.put_object(objects.TYPE_VERSION, payload)
    address = stored.address
    planner.move(collection, doc_id, address, version, deleted, micros, head)
    return Document(
        collection,
        doc_id,
        version,
        created or born,
        stamp,
        address.hex(),
        None,
        body,
        deleted,
        parent.hex() if parent else None,
        stored.signature.hex(),
    )


def live_head(planner: Planner, collection: str, doc_id: str) -> refs.Head:
    head = planner.head(collection, doc_id)
    if head is None or head[refs.HEAD_DELETED]:
        raise NotFoundError(f"{collection}/{doc_id} does not exist")
    return head


def update_version(
    planner: Planner,
    collection: str,
    doc_id: str,
    patch: dict[str, Any],
    expected: bytes | None,
) -> Document:
    if not planner.has_collection(collection):
        raise NotFoundError(f"collection {collection!r} does not exist")
    head = live_head(planner, collection, doc_id)
    current = read_version(planner, head[refs.HEAD_ADDRESS])
    merged = merge.merge(current.data, patch)
    return write_version(
        planner,
        collection,
        doc_id,
        codec.canonical_document(merged),
        expected=expected,
        current=current,
    )


def upsert_version(
    planner: Planner,
    collection: str,
    doc_id: str,
    patch: dict[str, Any],
    expected: bytes | None,
) -> bool:
    head = planner.head(collection, doc_id)
    if head is None or head[refs.HEAD_DELETED]:
        body = codec.canonical_document(patch)
        write_version(planner, collection, doc_id, body, expected=expected)
        return True
    update_version(planner, collection, doc_id, patch, expected)
    return False


def private_copy(data: dict[str, Any]) -> dict[str, Any]:
    """Validate `data` and return a copy the caller cannot change under
    us while the write waits for the lock."""
    copy: dict[str, Any] = codec.decode(codec.canonical_document(data))
    return copy


def delete_version(
    planner: Planner, collection: str, doc_id: str, expected: bytes | None
) -> bool:
    if not planner.has_collection(collection):
        raise NotFoundError(f"collection {collection!r} does not exist")
    head = planner.head(collection, doc_id)
    if head is None or head[refs.HEAD_DELETED]:
        if expected is not None:
            raise ConflictError(f"{collection}/{doc_id} does not exist")
        return False
    write_version(
        planner, collection, doc_id, b"{}", deleted=True, expected=expected
    )
    return True


def restore_version(
    planner: Planner, collection: str, doc_id: str
) -> Document:
    if not planner.has_collection(collection):
        raise NotFoundError(f"collection {collection!r} does not exist")
    head = planner.head(collection, doc_id)
    if head is None:
        raise NotFoundError(f"{collection}/{doc_id} never existed")
    if not head[refs.HEAD_DELETED]:
        raise ConflictError(f"{collection}/{doc_id} is not deleted")
    address = read_version(planner, head[refs.HEAD_ADDRESS]).parent
    while address is not None:
        older = read_version(planner, bytes.fromhex(address))
        if not older.deleted:
            return write_version(
                planner,
                collection,
                doc_id,
                codec.canonical_document(older.data),
                created=older.created_at,
            )
        address = older.parent
    raise NotFoundError(f"{collection}/{doc_id} has no live version")


class Collection:
    """A named set of documents in a `Store`.

    Obtain one with `Store.collection`.  All methods are thread-safe and
    see every write that another thread or process has completed.  Each
    write returns once it is durable, and raises `InvalidIdError` or
    `InvalidDocumentError` before anything is written.  After
    `Store.delete_collection`, methods raise `NotFoundError` until the
    collection is created or restored again.
    """

    def __init__(self, store: Store, name: names.CollectionName) -> None:
        self._store = store
        self._engine = store._engine
        self._name = name

    def name(self) -> str:
        """The collection's name."""
        return self._name

    def __repr__(self) -> str:
        return f"Collection({self._name!r})"

    # -- writing -------------------------------------------------------------

    def insert(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> Document:
        """Store `data` as the newest version of document `id`.

        Inserts the document, or replaces an existing one with a new
        version (its `version` goes up by one; `created_at` is kept, or
        starts again if the id was deleted).  With `expected_hash`, the
        current version must be that one, else `ConflictError`.

        Runtime: one append and one fdatasync, shared with concurrent
        writers; independent of the collection's size.
        """
        doc_id = names.document_id(id)
        body = codec.canonical_document(data)
        expected = expected_address(expected_hash)
        name = self._name
        return self._engine.commit(
            lambda planner: write_version(
                planner, name, doc_id, body, expected=expected
            )
        )

    def update(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> Document:
        """Merge `data` into the newest version, as a new version.

        Objects merge recursively; arrays, scalars and null replace (see
        `sentinel.merge`).  Raises `NotFoundError` if `id` does not exist
        or is deleted, `ConflictError` on an `expected_hash` mismatch.
        """
        doc_id = names.document_id(id)
        patch = private_copy(data)
        expected = expected_address(expected_hash)
        name = self._name
        return self._engine.commit(
            lambda planner: update_version(
                planner, name, doc_id, patch, expected
            )
        )

    def upsert(
        self,
        id: str,
        data: dict[str, Any],
        *,
        expected_hash: str | None = None,
    ) -> bool:
        """Insert `data` if `id` is absent or deleted (returns True),
        else merge it in as `update` does (returns False)."""
        doc_id = names.document_id(id)
        patch = private_copy(data)
        expected = expected_address(expected_hash)
        name = self._name
        return self._engine.commit(
            lambda planner: upsert_version(
                planner, name, doc_id, patch, expected
            )
        )

    def delete(self, id: str, *, expected_hash: str | None = None) -> bool:
        """Delete document `id` by writing a tombstone version.

        `get` then returns None and `count()` drops; `history` keeps
        every version.  Returns whether a live document was deleted.
        """
        doc_id = names.document_id(id)
        expected = expected_address(expected_hash)
        name = self._name
        return self._engine.commit(
            lambda planner: delete_version(planner, name, doc_id, expected)
        )

    def restore(self, id: str) -> Document:
        """Bring back the last live version of a deleted document, as a
        new version (created_at as it was).  `NotFoundError` if `id`
        never existed, `ConflictError` if it is not deleted."""
        doc_id = names.document_id(id)
        name = self._name
        return self._engine.commit(
            lambda planner: restore_version(planner, name, doc_id)
        )

    def revert(self, id: str, version: int) -> Document:
        """Write a new version whose data equals version `version`.

        Raises `NotFoundError` if that version does not exist or is a
        tombstone.
        """
        doc_id = names.document_id(id)
        number = _version_number(version)
        name = self._name

        def plan(planner: Planner) -> Document:
            refs_of = planner.refs_of(name)
            target = refs_of.version(doc_id, number) if refs_of else None
            if target is None or target[refs.HEAD_DELETED]:
                raise NotFoundError(
                    f"{name}/{doc_id} has no live version {number}"
                )
            old = read_version(planner, target[refs.HEAD_ADDRESS])
            return write_version(
                planner, name, doc_id, codec.canonical_document(old.data)
            )

        return self._engine.commit(plan)

    def bulk_insert(
        self, items: Iterable[tuple[str, dict[str, Any]]]
    ) -> list[Document]:
        """Insert or replace many documents atomically.

        Every item is validated first; then all of them become visible
        together, or none do, even across a crash, with one durable
        commit.  Returns the new versions in input order.
        """
        checked = [
            (names.document_id(doc_id), codec.canonical_document(data))
            for doc_id, data in items
        ]
        name = self._name
        return self._engine.commit(
            lambda planner: [
                write_version(planner, name, doc_id, body)
                for doc_id, body in checked
            ]
        )

    def batch(self) -> Batch:
        """A batch of writes to this collection, committed atomically
        when the ``with`` block ends without an exception::

            with users.batch() as b:
                b.insert("a", {...})
                b.update("b", {...})
                b.delete("c")
        """
        from sentinel.batch import Batch

        return Batch(self._engine, self._name)

    # -- reading -------------------------------------------------------------

    def get(
        self,
        id: str,
        *,
        version: int | None = None,
        verification: VerificationOptions | None = None,
    ) -> Document | None:
        """Return the newest version of document `id`, or None.

        With `version`, return that version instead (None if it does not
        exist or is a tombstone).  The object is read and verified
        (BLAKE3 address, header, JSON, identity; in an encrypted store
        also the authentication tag) on every call, in every
        verification mode; damage raises a
        `CorruptionError` and never returns data.  `verification`
        (default: the store's) also checks the signature: strict raises
        `SignatureError`, warn warns.  Runtime: one ``pread`` plus
        decoding, independent of size and history; a signature check
        adds about 130 us.
        """
        doc_id = names.document_id(id)
        number = None if version is None else _version_number(version)
        options = self._store._verification_for(verification)
        self._engine.refresh()
        refs_of = self._refs()
        head: refs.Head | None
        if number is None:
            head = refs_of.heads.get(doc_id)
        else:
            head = refs_of.version(doc_id, number)
        if head is None or head[refs.HEAD_DELETED]:
            return None
        return self._load(doc_id, head, options)

    def get_at(
        self,
        id: str,
        when: datetime | str,
        *,
        verification: VerificationOptions | None = None,
    ) -> Document | None:
        """The version of `id` that was current at `when` (a timezone-
        aware datetime or ISO string); None before its first version or
        while it was deleted.  Runtime: a binary search in memory and
        one read."""
        doc_id = names.document_id(id)
        moment = parse_moment(when)
        options = self._store._verification_for(verification)
        self._engine.refresh()
        head = self._refs().at_time(doc_id, moment)
        if head is None or head[refs.HEAD_DELETED]:
            return None
        return self._load(doc_id, head, options)

    def get_many(
        self,
        ids: Iterable[str],
        *,
        verification: VerificationOptions | None = None,
    ) -> list[Document | None]:
        """`get` for each id, in the order asked."""
        wanted = [names.document_id(doc_id) for doc_id in ids]
        options = self._store._verification_for(verification)
        return [self.get(doc_id, verification=options) for doc_id in wanted]

    def history(
        self, id: str, *, verification: VerificationOptions | None = None
    ) -> list[Document]:
        """Every version of document `id`, newest first, tombstones
        included (their `deleted` is True).  Empty for an unknown id.

        Each version is read and verified (its signature too, as
        `verification` says), and each parent link is checked against
        the version before it.  Runtime: one read per version.
        """
        doc_id = names.document_id(id)
        options = self._store._verification_for(verification)
        self._engine.refresh()
        refs_of = self._refs()
        head: refs.Head | None = refs_of.heads.get(doc_id)
        if head is None:
            return []
        found = []
        child: Document | None = None
        for number in range(head[refs.HEAD_VERSION], 0, -1):
            entry = refs_of.version(doc_id, number)
            if entry is None:
                break
            doc = self._load(doc_id, entry, options)
            if child is not None and child.parent != doc.hash:
                raise CorruptObjectError(
                    f"version {child.version} of {self._name}/{doc_id} "
                    f"names parent {child.parent}, not {doc.hash}",
                    address=child.hash,
                )
            found.append(doc)
            child = doc
        if child is not None and child.parent is not None:
            raise CorruptObjectError(
                f"version 1 of {self._name}/{doc_id} names a parent",
                address=child.hash,
            )
        return found

    def parent(self, doc: Document) -> Document | None:
        """The version before `doc` (a tombstone included), or None."""
        if doc.version <= 1:
            return None
        self._engine.refresh()
        entry = self._refs().version(doc.id, doc.version - 1)
        if entry is None:
            return None
        return self._load(doc.id, entry)

    def diff(self, id: str, a: int, b: int) -> dict[str, Any]:
        """How version `a` of `id` became version `b`.

        Returns ``{"id", "from": {"version", "hash"}, "to": {...},
        "added": [...], "removed": [...], "changed": [...]}`` with JSON
        Pointer paths (see `sentinel.merge.diff`).  A tombstone counts as
        an empty document.  `NotFoundError` if either version is missing.
        """
        doc_id = names.document_id(id)
        numbers = (_version_number(a), _version_number(b))
        self._engine.refresh()
        refs_of = self._refs()
        docs = []
        for number in numbers:
            entry = refs_of.version(doc_id, number)
            if entry is None:
                raise NotFoundError(
                    f"{self._name}/{doc_id} has no version {number}"
                )
            docs.append(self._load(doc_id, entry))
        result: dict[str, Any] = {
            "id": doc_id,
            "from": {"version": docs[0].version, "hash": docs[0].hash},
            "to": {"version": docs[1].version, "hash": docs[1].hash},
        }
        result.update(merge.diff(docs[0].data, docs[1].data))
        return result

    def count(self) -> int:
        """The number of live documents.  Runtime: O(1)."""
        self._engine.refresh()
        return self._refs().live

    def ids(self) -> Iterator[str]:
        """Iterate the ids of live documents in sorted order.

        Copies the listing in slices under the lock, so memory stays
        bounded and writers are never blocked for long.  Ids written
        during the iteration may or may not appear.
        """
        for window in self._windows():
            for doc_id, _ in window:
                yield doc_id

    def _windows(self) -> Iterator[list[tuple[str, refs.Head]]]:
        """The live heads in id order, copied a window at a time under
        the lock, so writers are never blocked for long."""
        engine = self._engine
        engine.refresh()
        heads = self._refs().heads
        start: str | None = None
        while True:
            with engine.state_lock:
                window: list[tuple[str, refs.Head]] = []
                for key in heads.irange(start, inclusive=(False, True)):
                    window.append((key, heads[key]))
                    if len(window) >= _ID_WINDOW:
                        break
            live = [
                (key, head)
                for key, head in window
                if not head[refs.HEAD_DELETED]
            ]
            if live:
                yield live
            if len(window) < _ID_WINDOW:
                return
            start = window[-1][0]

    def all(
        self, *, verification: VerificationOptions | None = None
    ) -> Iterator[Document]:
        """Iterate the live documents in id order.

        Reads a window of documents at a time, in the order they lie in
        the packs and with neighbouring objects fetched by one read, so
        a scan reads sequentially; memory stays bounded by the window
        whatever the collection's size.  Every object is verified as by
        `get` (`verification`, default the store's, applies to
        signatures; strict and warn check each window's signatures as
        it is read).
        """
        options = self._store._verification_for(verification)
        return self._all(options)

    def _all(self, options: VerificationOptions) -> Iterator[Document]:
        engine = self._engine
        opened_document = self._opened_document
        for window in self._windows():
            found = engine.read_many(
                [head[refs.HEAD_ADDRESS] for _, head in window], options
            )
            for (doc_id, head), result in zip(window, found, strict=True):
                if isinstance(result, Exception):
                    raise result
                yield opened_document(doc_id, head, result)

    def filter(
        self,
        predicate: Callable[[Document], bool],
        *,
        verification: VerificationOptions | None = None,
    ) -> Iterator[Document]:
        """Stream the live documents for which `predicate` is true."""
        return (
            doc
            for doc in self.all(verification=verification)
            if predicate(doc)
        )

    # -- helpers -------------------------------------------------------------

    def _refs(self) -> refs.CollectionRefs:
        refs_of = self._engine.state.collections.get(self._name)
        if refs_of is None:
            raise NotFoundError(f"collection {self._name!r} does not exist")
        return refs_of

    def _load(
        self,
        doc_id: str,
        head: refs.Head,
        verification: VerificationOptions | None = None,
    ) -> Document:
        """Read the version `head` names and check it is that version of
        this document: a valid object under another ref is damage.
        `verification` (resolved; None: the store's default) applies to
        the signature."""
        options = verification or self._store.verification
        opened = self._engine.read_object(head[refs.HEAD_ADDRESS], options)
        return self._opened_document(doc_id, head, opened)

    def _opened_document(
        self, doc_id: str, head: refs.Head, opened: objects.Opened
    ) -> Document:
        """The document in `opened`, read through `head`: it must be the
        version the ref names (same collection, id, version number and
        tombstone flag), since a valid object under another ref is
        damage."""
        stored_at, number, deleted, _ = head
        address = stored_at.hex()
        version = _version_in(opened, address)
        if (
            version.collection != self._name
            or version.id != doc_id
            or version.version != number
            or version.deleted != deleted
        ):
            raise CorruptObjectError(
                f"object {address} is version {version.version} of "
                f"{version.collection}/{version.id}, but the ref of "
                f"{self._name}/{doc_id} names it as version {number}",
                address=address,
            )
        return Document(
            self._name,
            doc_id,
            version.version,
            version.created_at,
            version.updated_at,
            address,
            version.data,
            None,
            version.deleted,
            version.parent,
            opened.signature.hex(),
        )

    # -- queries and indexes -------------------------------------------------

    def query(
        self,
        q: object = None,
        *,
        as_of: datetime | str | None = None,
        explain: bool = False,
        verification: VerificationOptions | None = None,
    ) -> _query.QueryResult:
        """Run a query: a `QueryBuilder`, a Mongo-style dict, a single
        condition, or None for every document.

        Returns a `QueryResult`: the page of `Document`s asked for (with
        `data` trimmed by a projection), the number of matches before
        offset and limit, and the seconds taken.  With ``explain=True``
        (or ``q.explain()``) its `plan` says how the query ran (see
        `sentinel.query.Plan`).  With `as_of` (an aware `datetime` or ISO
        string), the query runs over the collection as it stood then:
        each id at the version current at that moment, ids not yet
        written or deleted then left out; indexes are not used.

        Runtime: with a usable index, the index lookup plus one read per
        returned document (and per candidate, for conditions on fields
        that are not indexed); otherwise one read of every live document.
        Raises `InvalidQueryError` for a malformed query before reading
        anything, `CorruptionError` if a document read is damaged.
        `verification` (default: the store's) applies to the signature
        of every document read, as in `get`.
        """
        started = time.perf_counter()
        spec = _query.to_spec(q, explain=explain)
        return self._in_view(
            as_of,
            verification,
            lambda view: _execution.run_query(spec, view, started),
        )

    def aggregate(
        self,
        operation: str,
        field: str | None = None,
        *,
        where: object = None,
        group_by: str | None = None,
        as_of: datetime | str | None = None,
        verification: VerificationOptions | None = None,
    ) -> Any:
        """``count``, ``sum``, ``avg``, ``min`` or ``max`` of `field`
        over the documents matching `where` (a `QueryBuilder` with
        filters only, a Mongo-style dict, a condition, or None for all).

        Returns the value, or with `group_by` a list of ``(group value,
        value)`` pairs ordered by group value.  ``count`` without a field
        counts documents; with one, those where it is present and not
        null.  The others skip values that are not numbers (booleans
        included); ``sum`` of none is 0, the rest None.  See
        `sentinel.aggregate` for the exact rules.  Runtime: as
        `query`; fields that are indexed are read from the index.
        `verification` applies to every document read, as in `query`.
        """
        aggregation = _aggregate.Aggregation(operation, field, group_by)
        condition = _query.filter_only(where)
        return self._in_view(
            as_of,
            verification,
            lambda view: _execution.run_aggregate(
                aggregation, condition, view
            ),
        )

    def _in_view(
        self,
        as_of: datetime | str | None,
        verification: VerificationOptions | None,
        run: Callable[[_execution.View], T],
    ) -> T:
        """Call `run` on the collection as it was at `as_of` (its
        history), or as it is now (its live heads and its indexes, held
        current while `run` reads them)."""
        moment = None if as_of is None else parse_moment(as_of)
        load = self._loader(verification)
        engine = self._engine
        engine.refresh()
        refs_of = self._refs()
        if moment is not None:
            return run(
                _execution.HistoryView(
                    refs_of, engine.state_lock, load, moment
                )
            )
        index_set = self._index_set()
        with index_set.lock:
            index_set.refresh(refs_of)
            active = index_set if index_set.indexes else None
            return run(
                _execution.LiveView(refs_of, engine.state_lock, load, active)
            )

    def _loader(
        self, verification: VerificationOptions | None
    ) -> _execution.LoadMany:
        """`_load_many` with the resolved `verification` (checked now,
        before anything is read)."""
        options = self._store._verification_for(verification)

        def load_many(
            heads: list[tuple[str, refs.Head]],
        ) -> list[Document | Exception]:
            return self._load_many(heads, options)

        return load_many

    def create_index(self, field: str) -> bool:
        """Index the dotted path `field`; returns False if it already
        was.

        The definition is written durably to the journal, so every
        process sees it and it survives a restart; the index itself is
        built in memory here and now (one read of every live document),
        and in other processes on their first query.  Raises
        `InvalidQueryError` for a malformed path.
        """
        path = _query.parse_path(field).text
        name = self._name

        def plan(planner: Planner) -> bool:
            if not planner.has_collection(name):
                raise NotFoundError(f"collection {name!r} does not exist")
            refs_of = planner.refs_of(name)
            if refs_of is not None and path in refs_of.indexes:
                return False
            planner.change_index(refs.OP_CREATE_INDEX, name, path)
            return True

        created = self._engine.commit(plan)
        index_set = self._index_set()
        with index_set.lock:
            index_set.refresh(self._refs())
        return created

    def drop_index(self, field: str) -> None:
        """Remove the index on `field`, in every process.  Raises
        `NotFoundError` if there is none."""
        path = _query.parse_path(field).text
        name = self._name

        def plan(planner: Planner) -> None:
            if not planner.has_collection(name):
                raise NotFoundError(f"collection {name!r} does not exist")
            refs_of = planner.refs_of(name)
            if refs_of is None or path not in refs_of.indexes:
                raise NotFoundError(f"{name} has no index on {path!r}")
            planner.change_index(refs.OP_DROP_INDEX, name, path)

        self._engine.commit(plan)
        index_set = self._index_set()
        with index_set.lock:
            index_set.refresh(self._refs())

    def list_indexes(self) -> list[str]:
        """The indexed field paths, sorted."""
        self._engine.refresh()
        with self._engine.state_lock:
            return sorted(self._refs().indexes)

    def _index_set(self) -> _index.IndexSet:
        """This collection's in-memory indexes in this process, made on
        first use (kept on the instance: a store hands out one
        `Collection` per name)."""
        found: _index.IndexSet | None = self.__dict__.get("_indexes")
        if found is None:
            fresh = _index.IndexSet(self._engine.state_lock, self._load_many)
            found = self.__dict__.setdefault("_indexes", fresh)
        return found

    def _load_many(
        self,
        heads: list[tuple[str, refs.Head]],
        verification: VerificationOptions | None = None,
    ) -> list[Document | Exception]:
        """`_load` for many heads, read in pack order with neighbours
        fetched together (`Engine.read_many`).  A document that fails
        its checks gets its error in its place, for the caller to raise
        if it needs that document.  `verification` (resolved; None: the
        store's default) applies to the signatures."""
        options = verification or self._store.verification
        found = self._engine.read_many(
            [head[refs.HEAD_ADDRESS] for _, head in heads], options
        )
        docs: list[Document | Exception] = []
        for (doc_id, head), result in zip(heads, found, strict=True):
            if isinstance(result, Exception):
                docs.append(result)
                continue
            try:
                docs.append(self._opened_document(doc_id, head, result))
            except CorruptObjectError as exc:
                docs.append(exc)
        return docs


def _version_number(value: object) -> int:
    if type(value) is not int or value < 1:
        raise InvalidInputError("a version number is an int >= 1")
    return value
