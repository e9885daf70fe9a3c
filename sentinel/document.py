"""`Document`: one version of one document, as the caller sees it."""

from __future__ import annotations

from typing import Any

from sentinel import codec


class Document:
    """A read-only view of one version of a document.

    Attributes: `id`, `version` (1 on the first write of an id, +1 on
    every later write), `created_at` (ISO 8601 UTC time of the first
    version), `updated_at` (time of this version), `hash` (hex BLAKE3
    address of this version's object) and `data` (a dict of the caller's
    own: changing it changes nothing in the store).  `collection` names
    the collection.  `signature` is the hex Ed25519 signature of this
    version in a store opened with a passphrase (see
    `sentinel.verify_version`), and the empty string in a store without
    one.  These are read-only properties: assigning to or deleting any
    of them raises `AttributeError`, and so does setting a new one.
    """

    __slots__ = (
        "_collection",
        "_id",
        "_version",
        "_created_at",
        "_updated_at",
        "_hash",
        "_data",
        "_body",
        "_deleted",
        "_parent",
        "_signature",
    )

    def __init__(
        self,
        collection: str,
        doc_id: str,
        version: int,
        created_at: str,
        updated_at: str,
        address: str,
        data: dict[str, Any] | None,
        body: bytes | None = None,
        deleted: bool = False,
        parent: str | None = None,
        signature: str = "",
    ) -> None:
        self._collection = collection
        self._id = doc_id
        self._version = version
        self._created_at = created_at
        self._updated_at = updated_at
        self._hash = address
        self._data = data
        self._body = body
        self._deleted = deleted
        self._parent = parent
        self._signature = signature

    @property
    def collection(self) -> str:
        return self._collection

    @property
    def id(self) -> str:
        return self._id

    @property
    def version(self) -> int:
        return self._version

    @property
    def created_at(self) -> str:
        return self._created_at

    @property
    def updated_at(self) -> str:
        return self._updated_at

    @property
    def hash(self) -> str:
        return self._hash

    @property
    def deleted(self) -> bool:
        return self._deleted

    @property
    def parent(self) -> str | None:
        return self._parent

    @property
    def signature(self) -> str:
        return self._signature

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            # A document returned by a write carries the canonical bytes
            # it stored; they are decoded on first use, into a fresh dict
            # the caller owns.
            self._data = codec.decode(self._body or b"")
        data: dict[str, Any] = self._data
        return data

    def __repr__(self) -> str:
        return (
            f"Document(collection={self._collection!r}, id={self._id!r}, "
            f"version={self._version}, hash={self._hash[:16]}..."
            + (", deleted=True)" if self._deleted else ")")
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return (self._collection, self._hash) == (
            other._collection,
            other._hash,
        )

    def __hash__(self) -> int:
        return hash((self._collection, self._hash))
