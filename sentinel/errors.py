"""The exception hierarchy: one root, a few families.

Every error the library raises on purpose derives from `SentinelError`.
Where a built-in family fits naturally the class also derives from it
(`InvalidIdError` is a `ValueError`, `NotFoundError` a `LookupError`), so
code that already catches those keeps working.  Low-level causes
(`OSError`, `zstandard.ZstdError`, `json.JSONDecodeError`) are chained with
``raise ... from`` and never escape on their own.
"""

from __future__ import annotations

import errno as _errno


class SentinelError(Exception):
    """Root of every error raised by Sentinel."""


# -- invalid input ---------------------------------------------------------


class InvalidInputError(SentinelError, ValueError):
    """The caller passed something the store cannot accept.

    Raised before anything is written.
    """


class InvalidIdError(InvalidInputError):
    """A document id breaks the naming rules (see `sentinel.names`)."""


class InvalidCollectionError(InvalidInputError):
    """A collection name breaks the naming rules (see `sentinel.names`)."""


class InvalidDocumentError(InvalidInputError):
    """A document is not a JSON object within the documented limits."""


class DocumentTooLargeError(InvalidDocumentError):
    """A document's canonical JSON exceeds `sentinel.codec.MAX_DOCUMENT`."""


# -- state -----------------------------------------------------------------


class NotFoundError(SentinelError, LookupError):
    """The named document, version or collection does not exist."""


class ConflictError(SentinelError):
    """The current version is not the one the caller expected."""


class StoreClosedError(SentinelError):
    """The store was closed; open it again to continue."""


# -- corrupt or missing data -------------------------------------------------


class CorruptionError(SentinelError):
    """Bytes on disk are not what the store wrote.

    Attributes name what was being read, so a report can point at it:
    `path` (the file), `address` (hex object address, when known) and
    `offset` (position in the file, when known).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        address: str | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.address = address
        self.offset = offset


class CorruptObjectError(CorruptionError):
    """An object failed its hash, header, decompression or parse check."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        address: str | None = None,
        offset: int | None = None,
        expected: str | None = None,
        actual: str | None = None,
    ) -> None:
        super().__init__(message, path=path, address=address, offset=offset)
        self.expected = expected
        self.actual = actual


class MissingObjectError(CorruptionError):
    """A ref or parent link names an object the store does not hold."""


class CorruptKeyFileError(CorruptionError):
    """The key file is damaged or missing: wrong size, magic or
    checksum.  Without it an encrypted store cannot be opened."""


class IntegrityError(CorruptionError):
    """Sealed bytes failed authentication: tampered or damaged.

    In an encrypted store every object, sealed name and the ref table
    carry an authentication tag; any changed byte raises this (never a
    wrong-passphrase error, which is decided at open).
    """


class SignatureError(CorruptionError):
    """A version's signature is missing, malformed or does not verify."""


class UnknownSignerError(SignatureError):
    """The signature names a different key than the store's."""


class CorruptJournalError(CorruptionError):
    """A pack file holds damaged records that are not a torn tail.

    A torn tail (the last, unacknowledged append) is cut silently at
    recovery; damage anywhere before it means acknowledged data was
    changed, and the store refuses to guess.
    """


# -- format ----------------------------------------------------------------


class UnsupportedFormatError(SentinelError):
    """The folder is not a Sentinel store this version can read."""


class EncryptionUnavailableError(UnsupportedFormatError):
    """This build of `cryptography`/OpenSSL lacks an algorithm the store
    needs (AES-256-GCM-SIV or Argon2id)."""


# -- passphrase --------------------------------------------------------------


class PassphraseError(SentinelError):
    """Root of the errors about a passphrase.  Raised at open, before
    anything is written."""


class InvalidPassphraseError(PassphraseError, InvalidInputError):
    """The passphrase is empty, not a str, or not valid Unicode."""


class WrongPassphraseError(PassphraseError):
    """The passphrase does not unwrap the store's master key."""


class PassphraseRequiredError(PassphraseError):
    """The store is encrypted and no passphrase was given."""


class PassphraseNotExpectedError(PassphraseError):
    """A passphrase was given for a store that is not encrypted."""


class SignatureWarning(UserWarning):
    """Category of the warnings `VerificationOptions.warn()` issues."""


# -- I/O -------------------------------------------------------------------


class StoreIOError(SentinelError, OSError):
    """A file operation failed.

    `errno` and `filename` keep the operating system's error number and
    the path involved, as on `OSError`.
    """

    def __init__(self, err: int | None, message: str, path: str | None):
        OSError.__init__(self, err, message, path)


class StoreFullError(StoreIOError):
    """The disk or quota is full (ENOSPC, EDQUOT, EFBIG)."""


class StoreReadOnlyError(StoreIOError):
    """The store cannot be written (EROFS, EACCES, EPERM)."""


_FULL = {_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG}
_READ_ONLY = {_errno.EROFS, _errno.EACCES, _errno.EPERM}


def io_error(exc: OSError, path: str | None) -> StoreIOError:
    """Map an `OSError` onto the typed family, keeping errno and path."""
    number = exc.errno
    reason = exc.strerror or str(exc)
    where = path if path is not None else exc.filename
    if number in _FULL:
        cls: type[StoreIOError] = StoreFullError
    elif number in _READ_ONLY:
        cls = StoreReadOnlyError
    else:
        cls = StoreIOError
    return cls(number, reason, where)
