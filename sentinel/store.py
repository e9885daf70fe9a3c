"""`Store`: opens a store folder and owns its collections."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from types import TracebackType

from sentinel import codec, config, fs, journal, log, names, objects
from sentinel.batch import StoreBatch
from sentinel.collection import Collection
from sentinel.engine import Engine, Planner
from sentinel.errors import (
    ConflictError,
    EncryptionUnavailableError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFormatError,
)
from sentinel.log import LogEntry
from sentinel.verify import VerifyReport, verify


def _empty_first_pack(path: str) -> bool:
    """Whether `path` is pack 1 as creation writes it, or as a crash
    during creation can leave it (a header that never reached the disk:
    missing, partial or garbage).  A valid header followed by anything
    but zeros means data lives here, and a folder that lost its config
    must not be created again over it; `Journal.create_pack` refuses to
    replace a pack holding frames as a second guard."""
    if os.path.basename(path) != journal.pack_name(1):
        return False
    if fs.kind(path) != "file":
        return False
    fd = fs.open_fd(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = fs.pread(fd, 64 * 1024, 0, path)
    finally:
        fs.close(fd, path)
    header = journal.pack_header(1)
    if data[: len(header)] != header:
        return True
    return not data[len(header) :].strip(b"\0")


# What an unfinished creation may have left inside each folder.  A ref
# table is not among them: it is written only after data.
_LEFTOVERS = {"objects": _empty_first_pack, "refs": lambda path: False}


class Store:
    """An open Sentinel store: a folder of packs, refs and a config.

    Create or open one with `Store.new`.  A `Store` is thread-safe, and
    several processes may open the same folder at once.  Use it as a
    context manager, or call `close`.
    """

    def __init__(self, root: str, engine: Engine) -> None:
        self._root = root
        self._engine = engine
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()

    @classmethod
    def new(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | None = None,
        *,
        durable: bool = True,
    ) -> Store:
        """Create the store at `path`, or open it if it exists.

        `durable=True` (the default) returns from each write only once it
        is on disk (fdatasync).  `durable=False` skips the sync: writes
        survive the process being killed, but not a power loss or kernel
        crash; it exists for bulk loads and tests, never by default.

        A passphrase cannot be honoured by this version yet, so passing
        one raises `EncryptionUnavailableError` rather than storing data
        unencrypted.
        """
        if passphrase is not None:
            raise EncryptionUnavailableError(
                "encryption at rest is not available in this version of "
                "Sentinel; open the store without a passphrase"
            )
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidInputError(
                f"path must be a str or os.PathLike, not {type(path).__name__}"
            )
        root = os.path.abspath(os.fspath(path))
        if "\x00" in root:
            raise InvalidInputError("path contains a NUL character")
        if not fs.exists(config.path_of(root)):
            _create(root)
        config.read(root)
        return cls(root, Engine(root, durable=durable))

    # -- collections ---------------------------------------------------------

    def collection(self, name: str) -> Collection:
        """Return the collection `name`, creating it durably if needed."""
        checked = names.collection_name(name)
        engine = self._engine
        engine.refresh()
        if checked not in engine.state.collections:

            def plan(planner: Planner) -> None:
                planner.create_collection(checked)

            engine.commit(plan)
        with self._lock:
            found = self._collections.get(checked)
            if found is None:
                found = self._collections[checked] = Collection(self, checked)
        return found

    def delete_collection(self, name: str) -> None:
        """Remove collection `name` from the listing and its refs.

        Its documents and history stay in the packs, and its refs are set
        aside: `restore_collection` brings them back, until the name is
        dropped again.  Raises `NotFoundError` if it does not exist.
        Handles to the collection raise `NotFoundError` meanwhile.
        """
        checked = names.collection_name(name)

        def plan(planner: Planner) -> None:
            if not planner.has_collection(checked):
                raise NotFoundError(f"collection {checked!r} does not exist")
            planner.drop_collection(checked)

        self._engine.commit(plan)

    def restore_collection(self, name: str) -> Collection:
        """Bring back the refs of a dropped collection.

        Raises `NotFoundError` if nothing was dropped under `name`, and
        `ConflictError` if a collection of that name exists now (drop it
        first).
        """
        checked = names.collection_name(name)

        def plan(planner: Planner) -> None:
            if planner.has_collection(checked):
                raise ConflictError(f"collection {checked!r} exists")
            if not planner.is_dropped(checked):
                raise NotFoundError(f"no dropped collection {checked!r}")
            planner.restore_collection(checked)

        self._engine.commit(plan)
        return self.collection(checked)

    def batch(self) -> StoreBatch:
        """Writes across collections, committed atomically when the
        ``with`` block ends (see `sentinel.batch`)."""
        return StoreBatch(self._engine)

    def log(self, collection: str | None = None) -> Iterator[LogEntry]:
        """Every ref move and collection change, oldest first, from the
        packs (see `sentinel.log`)."""
        name = (
            None if collection is None else names.collection_name(collection)
        )
        self._engine.refresh()
        return log.entries(self._engine, name)

    def list_collections(self) -> list[str]:
        """The names of all collections, sorted."""
        self._engine.refresh()
        return sorted(self._engine.state.collections)

    # -- store-wide work -----------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every byte of the store; see `sentinel.verify`."""
        self._engine.refresh()
        return verify(self._engine)

    def cat_object(self, hash: str) -> dict[str, object]:
        """Decode any stored object by its hex address.

        Returns its type, its encoding as stored, its place in the pack
        and its payload parsed as JSON.  The object is verified first.
        """
        try:
            address = bytes.fromhex(hash)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{hash!r} is not a hex address") from exc
        if len(address) != objects.ADDRESS_SIZE:
            raise InvalidInputError(f"{hash!r} is not a 32-byte address")
        engine = self._engine
        engine.refresh()
        kind, payload = engine.read_object(address)
        location = engine.state.objects[address]
        header = engine.journal.read(
            location.pack, location.offset, objects.HEADER_SIZE
        )
        return {
            "hash": hash,
            "type": objects.TYPE_NAMES[kind].decode(),
            "encoding": header[5],
            "pack": journal.pack_name(location.pack),
            "offset": location.offset,
            "stored_bytes": location.length,
            "payload_bytes": len(payload),
            "payload": codec.decode(payload, address=hash),
        }

    @property
    def path(self) -> str:
        """The store's folder, as an absolute path."""
        return self._root

    def close(self) -> None:
        """Close the store; later calls raise `StoreClosedError`."""
        self._engine.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._root!r})"


def _create(root: str) -> None:
    """Create the folders, first pack and config of a new store.

    Runs under the store's exclusive lock so two processes creating the
    same store at once cannot interleave.  The config is written last: a
    folder without it is an unfinished creation, which is resumed.  A
    folder holding anything else is refused, so Sentinel never writes
    into a folder it does not own.
    """
    _make_dirs(root)
    _refuse_foreign(root)
    lock_path = os.path.join(root, "lock")
    lock_fd = fs.open_fd(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fs.flock(lock_fd, fcntl.LOCK_EX, lock_path)
        if fs.exists(config.path_of(root)):
            return
        _refuse_foreign(root)
        for folder in ("objects", "refs"):
            path = os.path.join(root, folder)
            if not fs.exists(path):
                fs.mkdir(path)
        fs.fsync_dir(root)
        # The store's own name must be durable before the config makes it
        # a store; an earlier attempt may have created the folders and
        # failed to sync them, so the parents are synced every time.
        _sync_parents(root)
        packs = journal.Journal(os.path.join(root, "objects"))
        packs.create_pack(1)
        config.write(root)
    finally:
        # Unlock first: if closing is interrupted, the lock is gone.
        try:
            fs.flock(lock_fd, fcntl.LOCK_UN, lock_path)
        finally:
            fs.close(lock_fd, lock_path)


def _sync_parents(root: str) -> None:
    folder = os.path.dirname(root)
    while True:
        fs.fsync_dir(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _refuse_foreign(root: str) -> None:
    """Refuse a folder holding anything but what an unfinished creation
    of a store leaves (an empty lock file, ``objects/`` with packs,
    ``refs/`` with a table, and our temp files), before anything is
    written into it."""
    for entry in fs.listdir(root):
        path = os.path.join(root, entry)
        if fs.is_temp(entry):
            continue
        if entry == "lock" and fs.kind(path) == "file":
            continue
        if entry in _LEFTOVERS and fs.kind(path) == "dir":
            stray = [
                name
                for name in fs.listdir(path)
                if not fs.is_temp(name)
                and not _LEFTOVERS[entry](os.path.join(path, name))
            ]
            if not stray:
                continue
            entry = f"{entry}/{stray[0]}"
        raise UnsupportedFormatError(
            f"{root} is not empty and is not a Sentinel store "
            f"(found {entry!r})"
        )


def _make_dirs(root: str) -> None:
    """Create `root` and missing parents, each made durable in its
    parent folder before anything is placed inside it."""
    missing = []
    path = root
    while not fs.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        fs.mkdir(folder)
        fs.fsync_dir(os.path.dirname(folder))
