"""The store's config file, ``<store>/sentinel.json``.

Canonical JSON, written once when the store is created (atomically: temp
file, fsync, rename, folder fsync).  A reader refuses a format or version
it does not know with `UnsupportedFormatError`, before touching anything
else, so an old library never misreads a newer store.
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


def path_of(root: str) -> str:
    return os.path.join(root, FILE_NAME)


def encode(config: dict[str, Any]) -> bytes:
    return codec.canonical(config) + b"\n"


def write(root: str) -> None:
    fs.write_atomic(path_of(root), encode(DEFAULT))


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
        if config.get(key) != DEFAULT[key]:
            raise UnsupportedFormatError(
                f"{path} asks for {key} {config.get(key)!r}, which this "
                f"library does not support"
            )
    return config
