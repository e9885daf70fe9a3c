"""Typed identifiers: document ids, collection names, object addresses.

Each kind of name has one function that validates it.  The rules are
portable on purpose: a store folder copied from Linux to Windows or macOS
must stay valid, so names that any of those systems treats specially are
refused everywhere.

Document id
    1 to 200 bytes of ASCII letters, digits, ``_`` and ``-``.  Case is
    significant (``Doc`` and ``doc`` are two ids).  Windows device names
    (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``,
    ``LPT0``-``LPT9``, in any case) are refused.

Collection name
    The same, plus ``.`` anywhere but first or last; the part before the
    first ``.`` must not be a device name (``nul.txt`` is refused); names
    ending in ``.lock`` or ``.tmp`` and the store's own folder names
    (``objects``, ``refs``, ``locks``, ``tmp``) are refused.

Because only ASCII is allowed, there is no Unicode normalisation question:
``é`` in either form is refused with a typed error.
"""

from __future__ import annotations

import re
from typing import NewType

from sentinel.errors import InvalidCollectionError, InvalidIdError

DocumentId = NewType("DocumentId", str)
CollectionName = NewType("CollectionName", str)

MAX_NAME_BYTES = 200

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
# Accepts exactly the ids `document_id` accepts, in one match: the fast
# path for ids read back from the journal and for valid input.
_GOOD_ID_RE = re.compile(
    r"(?!(?i:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])\Z)[A-Za-z0-9_-]{1,200}"
)
_COLLECTION_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")
_DEVICE_RE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])", re.IGNORECASE)
_RESERVED_COLLECTIONS = frozenset({"objects", "refs", "locks", "tmp"})


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def document_id(value: object) -> DocumentId:
    """Return `value` as a `DocumentId`, or raise `InvalidIdError`."""
    if type(value) is str and _GOOD_ID_RE.fullmatch(value):
        return DocumentId(value)
    if type(value) is not str:
        raise InvalidIdError(
            f"document id must be a str, not {type(value).__name__}"
        )
    if _ID_RE.fullmatch(value) is None:
        raise InvalidIdError(
            f"invalid document id {_describe(value)}: use 1 to "
            f"{MAX_NAME_BYTES} ASCII letters, digits, '_' or '-'"
        )
    if _DEVICE_RE.fullmatch(value):
        raise InvalidIdError(
            f"invalid document id {value!r}: reserved device name on Windows"
        )
    return DocumentId(value)


_known_collections: set[str] = set()


def collection_name(value: object) -> CollectionName:
    """Return `value` as a `CollectionName`, or raise an error."""
    if type(value) is str and value in _known_collections:
        return CollectionName(value)
    if type(value) is not str:
        raise InvalidCollectionError(
            f"collection name must be a str, not {type(value).__name__}"
        )
    if _COLLECTION_RE.fullmatch(value) is None or value.endswith("."):
        raise InvalidCollectionError(
            f"invalid collection name {_describe(value)}: use 1 to "
            f"{MAX_NAME_BYTES} ASCII letters, digits, '_', '-' or '.', "
            "not starting or ending with '.'"
        )
    stem = value.split(".", 1)[0]
    if _DEVICE_RE.fullmatch(stem):
        raise InvalidCollectionError(
            f"invalid collection name {value!r}: reserved device name on "
            "Windows"
        )
    lowered = value.lower()
    if lowered in _RESERVED_COLLECTIONS or lowered.endswith((".lock", ".tmp")):
        raise InvalidCollectionError(
            f"invalid collection name {value!r}: reserved for the store"
        )
    if len(_known_collections) < 4096:
        _known_collections.add(value)
    return CollectionName(value)
