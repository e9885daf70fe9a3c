"""Sentinel: an embedded, content-addressed document store.

Every version of every document is an immutable, compressed object named
by its BLAKE3 hash; per-collection refs name the newest version of each
id.  Quick start::

    import sentinel
    store = sentinel.Store.new("/path/to/db")
    users = store.collection("users")
    users.insert("user-123", {"name": "Alice", "age": 30})
    doc = users.get("user-123")

The library never prints; it logs through `logging` under ``sentinel``.
"""

from __future__ import annotations

import logging

from sentinel.batch import Batch, StoreBatch
from sentinel.collection import Collection
from sentinel.document import Document
from sentinel.errors import (
    ConflictError,
    CorruptionError,
    CorruptJournalError,
    CorruptObjectError,
    DocumentTooLargeError,
    EncryptionUnavailableError,
    InvalidCollectionError,
    InvalidDocumentError,
    InvalidIdError,
    InvalidInputError,
    MissingObjectError,
    NotFoundError,
    SentinelError,
    StoreClosedError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    UnsupportedFormatError,
)
from sentinel.log import LogEntry
from sentinel.query import (
    And,
    Filter,
    InvalidQueryError,
    Not,
    Or,
    Plan,
    QueryBuilder,
    QueryResult,
)
from sentinel.store import Store
from sentinel.verify import Problem, VerifyReport

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "And",
    "Filter",
    "InvalidQueryError",
    "Not",
    "Or",
    "Plan",
    "QueryBuilder",
    "QueryResult",
    "Batch",
    "Collection",
    "ConflictError",
    "CorruptJournalError",
    "CorruptObjectError",
    "CorruptionError",
    "Document",
    "DocumentTooLargeError",
    "EncryptionUnavailableError",
    "InvalidCollectionError",
    "InvalidDocumentError",
    "InvalidIdError",
    "InvalidInputError",
    "LogEntry",
    "MissingObjectError",
    "NotFoundError",
    "Problem",
    "SentinelError",
    "Store",
    "StoreBatch",
    "StoreClosedError",
    "StoreFullError",
    "StoreIOError",
    "StoreReadOnlyError",
    "UnsupportedFormatError",
    "VerifyReport",
]
