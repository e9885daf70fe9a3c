"""Sentinel: an embedded, content-addressed document store.

Every version of every document is an immutable, compressed object named
by its BLAKE3 hash; per-collection refs name the newest version of each
id.  Quick start::

    import sentinel
    store = sentinel.Store.new("/path/to/db")
    users = store.collection("users")
    users.insert("user-123", {"name": "Alice", "age": 30})
    doc = users.get("user-123")

With ``Store.new(path, passphrase=...)`` the store is encrypted at rest
and every version is signed; `read_public_key` and `verify_version`
check a signature without the passphrase.

The library never prints; it logs through `logging` under ``sentinel``.
"""

from __future__ import annotations

import logging

from sentinel.batch import Batch, StoreBatch
from sentinel.collection import Collection
from sentinel.crypto import KdfParams
from sentinel.document import Document
from sentinel.errors import (
    ConflictError,
    CorruptionError,
    CorruptJournalError,
    CorruptKeyFileError,
    CorruptObjectError,
    DocumentTooLargeError,
    EncryptionUnavailableError,
    IntegrityError,
    InvalidCollectionError,
    InvalidDocumentError,
    InvalidIdError,
    InvalidInputError,
    InvalidPassphraseError,
    MissingObjectError,
    NotFoundError,
    PassphraseError,
    PassphraseNotExpectedError,
    PassphraseRequiredError,
    SentinelError,
    SignatureError,
    SignatureWarning,
    StoreClosedError,
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    UnknownSignerError,
    UnsupportedFormatError,
    WrongPassphraseError,
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
from sentinel.sealed import verify_version
from sentinel.signing import VerificationOptions
from sentinel.store import Store, read_public_key
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
    "CorruptKeyFileError",
    "CorruptObjectError",
    "CorruptionError",
    "Document",
    "DocumentTooLargeError",
    "EncryptionUnavailableError",
    "IntegrityError",
    "InvalidCollectionError",
    "InvalidDocumentError",
    "InvalidIdError",
    "InvalidInputError",
    "InvalidPassphraseError",
    "KdfParams",
    "LogEntry",
    "MissingObjectError",
    "NotFoundError",
    "PassphraseError",
    "PassphraseNotExpectedError",
    "PassphraseRequiredError",
    "Problem",
    "SentinelError",
    "SignatureError",
    "SignatureWarning",
    "Store",
    "StoreBatch",
    "StoreClosedError",
    "StoreFullError",
    "StoreIOError",
    "StoreReadOnlyError",
    "UnknownSignerError",
    "UnsupportedFormatError",
    "VerificationOptions",
    "VerifyReport",
    "WrongPassphraseError",
    "read_public_key",
    "verify_version",
]
