"""The key file, ``<store>/keys``, of a store opened with a passphrase.

Its bytes are built and checked by `sentinel.crypto` (layout in
``objects_spec/encryption.md``); this module only places them.  The file
is written whole with `fs.write_atomic` (temp file, fsync, rename,
folder fsync), when the store is created, before its config, and when
the passphrase changes; it is never edited in place, so a crash leaves
the old key file or the new one, and both open the same master key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sentinel import crypto, fs
from sentinel.errors import CorruptKeyFileError

FILE_NAME = "keys"


def path_of(root: str) -> str:
    return os.path.join(root, FILE_NAME)


@contextmanager
def naming(root: str) -> Iterator[None]:
    """Name the key file on a `CorruptKeyFileError` raised inside: the
    parser in `crypto` sees bytes, not where they came from."""
    try:
        yield
    except CorruptKeyFileError as exc:
        if exc.path is None:
            exc.path = path_of(root)
        raise


def read(root: str) -> bytes:
    """The key file's bytes (at most one byte more than a valid file).

    Raises `CorruptKeyFileError` if it is missing: the config says the
    store is encrypted, and without the key file nothing in it can ever
    be read again.  Other I/O failures raise `StoreIOError`.
    """
    path = path_of(root)
    if not fs.exists(path):
        raise CorruptKeyFileError(
            f"{path} is missing: this encrypted store cannot be opened "
            "without it (restore it from a backup)",
            path=path,
        )
    fd = fs.open_fd(path, os.O_RDONLY)
    try:
        return fs.pread(fd, crypto.KEYFILE_SIZE + 1, 0, path)
    finally:
        fs.close(fd, path)


def write(root: str, data: bytes) -> None:
    """Publish `data` as the key file, durably and atomically."""
    fs.write_atomic(path_of(root), data)
