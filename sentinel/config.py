"""The store's config file, ``<store>/sentinel.json``.

Canonical JSON, written once when the store is created (atomically: temp
file, fsync, rename, folder fsync), last of all its files.  A reader
refuses a format or version it does not know with
`UnsupportedFormatError`, before touching anything else, so an old
library never misreads a newer store.

``encryption`` is ``"none"``, or ``"aes-256-gcm-siv"`` for a store
created with a passphrase (objects, names and the ref table sealed; see
``objects_spec/encryption.md``).  A library that predates encryption
refuses such a config rather than misreading sealed data.  The KDF
parameters live in the key file, not here: they change with every
passphrase change, and the config is never rewritten.
"""

from __future__ import annotations

import os
from typing import Any

from sentinel import codec, fs
from sentinel.errors import CorruptObjectError, UnsupportedFormatError

FILE_NAME = "sentinel.json"
FORMAT = "sentinel"
VERSION = 1
MAX_SIZE = 64 * 1024

DEFAULT: dict[str, Any] = {
    "format": FORMAT,
    "version": VERSION,
    "hash": "blake3",
    "compression": "zstd",
    "encryption": "none",
}
ENCRYPTION_NONE = "none"
ENCRYPTION_SEALED = "aes-256-gcm-siv"
_ENCRYPTIONS = (ENCRYPTION_NONE, ENCRYPTION_SEALED)


def path_of(root: str) -> str:
    return os.path.join(root, FILE_NAME)


def encode(config: dict[str, Any]) -> bytes:
    return codec.canonical(config) + b"\n"


def write(root: str, encryption: str = ENCRYPTION_NONE) -> None:
    fs.write_atomic(
        path_of(root), encode({**DEFAULT, "encryption": encryption})
    )


def encrypted(config: dict[str, Any]) -> bool:
    """Whether a config read by `read` is that of an encrypted store."""
    return bool(config["encryption"] != ENCRYPTION_NONE)


def read(root: str) -> dict[str, Any]:
    """Read and check the config; raise `UnsupportedFormatError`."""
    path = path_of(root)
    fd = fs.open_fd(path, os.O_RDONLY)
    try:
        data = fs.pread(fd, MAX_SIZE + 1, 0, path)
    finally:
        fs.close(fd, path)
    if len(data) > MAX_SIZE:
        raise UnsupportedFormatError(f"{path} is too large to be a config")
    try:
        config = codec.decode(data)
    except CorruptObjectError as exc:
        raise UnsupportedFormatError(f"{path} is not valid JSON") from exc
    if type(config) is not dict or config.get("format") != FORMAT:
        raise UnsupportedFormatError(f"{path} is not a Sentinel config")
    version = config.get("version")
    if type(version) is not int or version != VERSION:
        raise UnsupportedFormatError(
            f"{path} has format version {version!r}; this library reads "
            f"version {VERSION} only"
        )
    for key in ("hash", "compression", "encryption"):
        allowed = _ENCRYPTIONS if key == "encryption" else (DEFAULT[key],)
        if config.get(key) not in allowed:
            raise UnsupportedFormatError(
                f"{path} asks for {key} {config.get(key)!r}, which this "
                f"library does not support"
            )
    return config
