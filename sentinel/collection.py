"""`Collection`: the document operations of one named collection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sentinel import codec, names, objects
from sentinel.document import Document
from sentinel.engine import Planner
from sentinel.errors import CorruptObjectError

if TYPE_CHECKING:
    from sentinel.store import Store

# Ids copied per step of `ids()`: small enough to bound memory, large
# enough that the lock is taken rarely.
_ID_WINDOW = 1024


class Collection:
    """A named set of documents in a `Store`.

    Obtain one with `Store.collection`.  All methods are thread-safe and
    see every write that another thread or process has completed.
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

    def insert(self, id: str, data: dict[str, Any]) -> Document:
        """Store `data` as the newest version of document `id`.

        Inserts the document, or replaces an existing one with a new
        version (its `version` goes up by one and `created_at` is kept).
        Returns when the version is durable.  Raises `InvalidIdError` or
        `InvalidDocumentError` before anything is written.

        Runtime: one append and one fdatasync, shared with concurrent
        writers; independent of the collection's size.
        """
        doc_id = names.document_id(id)
        body = codec.canonical_document(data)
        name = self._name

        def plan(planner: Planner) -> Document:
            planner.create_collection(name)
            head = planner.head(name, doc_id)
            stamp = planner.time
            if head is None:
                version, created, parent = 1, stamp, None
            else:
                previous = self._version_at(planner, head.address)
                version, parent = head.version + 1, head.address
                created = stamp if previous.deleted else previous.created_at
                # Keep time moving forward along a document's history,
                # even if the wall clock steps back.
                stamp = max(stamp, previous.updated_at)
            payload = objects.version_payload(
                name, doc_id, version, parent, created, stamp, False, body
            )
            address = planner.put_object(objects.TYPE_VERSION, payload)
            planner.move(name, doc_id, address, version, False)
            return Document(
                name,
                doc_id,
                version,
                created,
                stamp,
                address.hex(),
                None,
                body,
            )

        return self._engine.commit(plan)

    # -- reading -------------------------------------------------------------

    def get(self, id: str) -> Document | None:
        """Return the newest version of document `id`, or None.

        The object is read and verified (BLAKE3, header, JSON) on every
        call; damage raises `CorruptObjectError` and never returns data.
        Runtime: one ``pread`` plus decoding, independent of size.
        """
        doc_id = names.document_id(id)
        engine = self._engine
        engine.refresh()
        refs_of = engine.state.collections.get(self._name)
        head = refs_of.heads.get(doc_id) if refs_of else None
        if head is None or head.deleted:
            return None
        version = self._read_version(head.address)
        self._check_identity(version, doc_id, head.address, head.version)
        return Document(
            self._name,
            doc_id,
            version.version,
            version.created_at,
            version.updated_at,
            head.address.hex(),
            version.data,
        )

    def history(self, id: str) -> list[Document]:
        """Every version of document `id`, newest first.

        Walks from the head through parent links; each version is read
        and verified.  Returns an empty list for an unknown id.
        Runtime: one read per version.
        """
        doc_id = names.document_id(id)
        engine = self._engine
        engine.refresh()
        refs_of = engine.state.collections.get(self._name)
        head = refs_of.heads.get(doc_id) if refs_of else None
        if head is None:
            return []
        found = []
        address: bytes | None = head.address
        expected = head.version
        while address is not None:
            version = self._read_version(address)
            self._check_identity(version, doc_id, address, expected)
            found.append(
                Document(
                    self._name,
                    doc_id,
                    version.version,
                    version.created_at,
                    version.updated_at,
                    address.hex(),
                    version.data,
                )
            )
            address = bytes.fromhex(version.parent) if version.parent else None
            expected -= 1
        if expected != 0:
            raise CorruptObjectError(
                f"the history of {self._name}/{doc_id} ends at version "
                f"{expected + 1}, not 1",
                address=found[-1].hash,
            )
        return found

    def ids(self) -> Iterator[str]:
        """Iterate the ids of live documents in sorted order.

        The ids are those live when iteration starts; the listing is
        copied in slices so memory stays bounded while writers go on.
        """
        engine = self._engine
        engine.refresh()
        refs_of = engine.state.collections.get(self._name)
        if refs_of is None:
            return
        heads = refs_of.heads
        start: str | None = None
        while True:
            with engine.state_lock:
                keys = (
                    heads.irange(start, inclusive=(True, True))
                    if start is not None
                    else heads.irange()
                )
                window = []
                for key in keys:
                    if key == start:
                        continue
                    window.append((key, heads[key].deleted))
                    if len(window) >= _ID_WINDOW:
                        break
            for key, deleted in window:
                if not deleted:
                    yield key
            if len(window) < _ID_WINDOW:
                return
            start = window[-1][0]

    def all(self) -> Iterator[Document]:
        """Iterate the live documents in id order, reading one at a
        time, so memory stays bounded whatever the collection's size."""
        for doc_id in self.ids():
            doc = self.get(doc_id)
            if doc is not None:
                yield doc

    def count(self) -> int:
        """The number of live documents.  Runtime: O(1)."""
        self._engine.refresh()
        refs_of = self._engine.state.collections.get(self._name)
        return refs_of.live if refs_of else 0

    # -- helpers -------------------------------------------------------------

    def _read_version(self, address: bytes) -> objects.Version:
        kind, payload = self._engine.read_object(address)
        return _as_version(kind, payload, address)

    def _version_at(self, planner: Planner, address: bytes) -> objects.Version:
        kind, payload = planner.read(address)
        return _as_version(kind, payload, address)

    def _check_identity(
        self,
        version: objects.Version,
        doc_id: str,
        address: bytes,
        number: int,
    ) -> None:
        """A ref must lead to a version of this very document: a valid
        object moved under another id is damage, not data."""
        if (
            version.collection != self._name
            or version.id != doc_id
            or version.version != number
        ):
            raise CorruptObjectError(
                f"object {address.hex()} is version {version.version} of "
                f"{version.collection}/{version.id}, but the ref of "
                f"{self._name}/{doc_id} names it as version {number}",
                address=address.hex(),
            )


def _as_version(kind: int, payload: bytes, address: bytes) -> objects.Version:
    if kind != objects.TYPE_VERSION:
        raise CorruptObjectError(
            f"object {address.hex()} is not a version object",
            address=address.hex(),
        )
    return objects.parse_version(payload, address.hex())
