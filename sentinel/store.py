"""`Store`: opens a store folder and owns its collections.

Opening, in order (nothing is written before step 5, and nothing at all
when the folder is already a store):

1. Check the arguments: path, passphrase (type, not empty),
   `verification`, `kdf`.
2. A folder without a config is created (`_create`): with a
   passphrase, a new key file is made first (one Argon2id run) and
   written before the config, which is always written last.
3. Read the config (`UnsupportedFormatError`); refuse a missing or an
   unexpected passphrase (`PassphraseRequiredError`,
   `PassphraseNotExpectedError`).
4. Open the key file with the passphrase (`WrongPassphraseError`): one
   Argon2id run, before any other byte of the store is read.
5. Start the engine: read the ref table, replay the journal.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from sentinel import (
    codec,
    config,
    crypto,
    fs,
    journal,
    keyfile,
    log,
    names,
    objects,
    refs,
    sealed,
)
from sentinel.batch import StoreBatch
from sentinel.collection import Collection
from sentinel.crypto import KdfParams
from sentinel.engine import Engine, Planner
from sentinel.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PassphraseNotExpectedError,
    UnsupportedFormatError,
)
from sentinel.log import LogEntry
from sentinel.signing import VerificationOptions
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
_LEFTOVERS: dict[str, Callable[[str], bool]] = {
    "objects": _empty_first_pack,
    "refs": lambda path: False,
}
# Files an unfinished creation may leave at the top: the lock, and the
# key file of a store with a passphrase (written just before the config;
# nothing was sealed with it yet, so the next creation replaces it).
_LEFTOVER_FILES = frozenset({"lock", keyfile.FILE_NAME})
# A key file is replaced only if it did not change while the new one was
# derived; a concurrent change makes us derive again, this many times.
_REWRAP_ATTEMPTS = 3


class Store:
    """An open Sentinel store: a folder of packs, refs and a config.

    Create or open one with `Store.new`.  A `Store` is thread-safe, and
    several processes may open the same folder at once.  Use it as a
    context manager, or call `close`.
    """

    def __init__(
        self,
        root: str,
        engine: Engine,
        verification: VerificationOptions = sealed.SILENT,
    ) -> None:
        self._root = root
        self._engine = engine
        self._verification = verification
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()

    @classmethod
    def new(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | None = None,
        *,
        durable: bool = True,
        verification: VerificationOptions | None = None,
        kdf: KdfParams | None = None,
    ) -> Store:
        """Create the store at `path`, or open it if it exists.

        `durable=True` (the default) returns from each write only once it
        is on disk (fdatasync).  `durable=False` skips the sync: writes
        survive the process being killed, but not a power loss or kernel
        crash; it exists for bulk loads and tests, never by default.

        With a `passphrase`, a new store is encrypted at rest and signs
        every version (see the README's threat model and
        ``objects_spec/encryption.md``);
        an existing one must be opened with the passphrase it was
        created with.  Opening costs one Argon2id run (about 0.16 s
        with the default parameters; creating costs the same).
        `verification` is the default of every read that takes one:
        `VerificationOptions.silent()` unless given; strict or warn is
        refused (`InvalidInputError`) without a passphrase, since a
        plain store has no signatures.  `kdf` sets the Argon2id cost of
        a store created now (default `crypto.DEFAULT_PARAMS`); tests
        pass `crypto.TEST_PARAMS`, which protects nothing.  It is
        ignored when the store exists.

        Raises, before anything is written: `InvalidInputError`
        (`InvalidPassphraseError` for an empty or non-str passphrase),
        `UnsupportedFormatError` (not a store, or a newer format),
        `PassphraseRequiredError`, `PassphraseNotExpectedError`,
        `WrongPassphraseError`, `CorruptKeyFileError`.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidInputError(
                f"path must be a str or os.PathLike, not {type(path).__name__}"
            )
        root = os.path.abspath(os.fspath(path))
        if "\x00" in root:
            raise InvalidInputError("path contains a NUL character")
        options = _check_verification(verification, passphrase is not None)
        if kdf is not None and (
            type(kdf) is not KdfParams or passphrase is None
        ):
            raise InvalidInputError(
                "kdf must be a crypto.KdfParams, given with a passphrase"
            )

        keys = None
        if not fs.exists(config.path_of(root)):
            made = None
            if passphrase is not None:
                made = crypto.create_keyfile(
                    passphrase, kdf or crypto.DEFAULT_PARAMS
                )
            if _create(root, made[0] if made else None) and made:
                # This call created the store: its keys are the ones
                # just made, so the KDF need not run a second time.
                keys = made[1]

        found = config.read(root)
        crypto.check_passphrase_presence(config.encrypted(found), passphrase)
        if passphrase is not None and keys is None:
            with keyfile.naming(root):
                keys = crypto.open_keyfile(keyfile.read(root), passphrase)
        return cls(root, Engine(root, durable=durable, keys=keys), options)

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

    # -- keys and signatures -------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether the store was created with a passphrase."""
        return self._engine.codec.signed

    @property
    def public_key(self) -> bytes | None:
        """The 32-byte Ed25519 key that checks this store's signatures
        (None without a passphrase).  Also readable without the
        passphrase: `sentinel.read_public_key`."""
        codec = self._engine.codec
        return (
            codec.public_key if isinstance(codec, sealed.SealedCodec) else None
        )

    @property
    def verification(self) -> VerificationOptions:
        """The default `VerificationOptions` of this store's reads."""
        return self._verification

    def _verification_for(
        self, verification: VerificationOptions | None
    ) -> VerificationOptions:
        """The options a read uses: `verification`, or the default.

        Raises `InvalidInputError` for something that is not a
        `VerificationOptions`, or strict/warn in a store without
        signatures.
        """
        if verification is None:
            return self._verification
        return _check_verification(verification, self.encrypted)

    def change_passphrase(
        self, old: str, new: str, *, kdf: KdfParams | None = None
    ) -> None:
        """Replace the passphrase; no data is rewritten.

        The master key is re-wrapped under a key derived from `new`
        (fresh salt; `kdf` changes the Argon2id cost, by default kept)
        and the key file replaced atomically: after a crash, the old
        passphrase or the new one opens the store, never neither.  Other
        handles, in this process or others, keep working: the keys
        themselves do not change.  Anyone holding a copy of the old key
        file can still open it with the old passphrase, with the data
        of that time and later (see the threat model).

        Cost: two Argon2id runs (about 0.3 s), outside the store's lock.
        Raises `PassphraseNotExpectedError` in a store without a
        passphrase, `InvalidPassphraseError` for a bad `new` and
        `WrongPassphraseError` when `old` is wrong; nothing is written
        then.
        """
        if not self.encrypted:
            raise PassphraseNotExpectedError(
                "this store is not encrypted; it has no passphrase to change"
            )
        if kdf is not None and type(kdf) is not KdfParams:
            raise InvalidInputError("kdf must be a crypto.KdfParams")
        engine = self._engine
        for _ in range(_REWRAP_ATTEMPTS):
            engine.check_open()
            current = keyfile.read(self._root)
            with keyfile.naming(self._root):
                replacement = crypto.rewrap(current, old, new, kdf)
            with engine.exclusive():
                # Compare and swap: another process may have changed
                # the passphrase while the KDF ran.
                if keyfile.read(self._root) == current:
                    keyfile.write(self._root, replacement)
                    return
        raise ConflictError(
            "the key file kept changing while the passphrase was being "
            "changed; try again"
        )

    # -- store-wide work -----------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every byte of the store, and every signature in an
        encrypted one whatever the default verification; see
        `sentinel.verify`."""
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
        kind, payload, signature = engine.read_object(
            address, self._verification
        )
        pack, offset, length = refs.place(engine.state.objects[address])
        header = engine.journal.read(pack, offset, objects.HEADER_SIZE)
        return {
            "hash": hash,
            "type": objects.TYPE_NAMES[kind].decode(),
            "encoding": header[5],
            "pack": journal.pack_name(pack),
            "offset": offset,
            "stored_bytes": length,
            "payload_bytes": len(payload),
            "payload": codec.decode(payload, address=hash),
            "signature": signature.hex(),
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


def read_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Ed25519 public key of the encrypted store at `path`.

    Needs no passphrase and takes no lock; anyone who can read the
    folder can check who signed a version (`sentinel.verify_version`).
    The key is only as trustworthy as the folder it came from: a party
    that must know who signed should pin it out of band.  Raises
    `UnsupportedFormatError` if `path` is not a store, `NotFoundError`
    if the store has no passphrase (so no key), `CorruptKeyFileError`
    for a damaged or missing key file.  Cost: two small reads.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError("path must be a str or os.PathLike")
    root = os.path.abspath(os.fspath(path))
    if not fs.exists(config.path_of(root)):
        raise UnsupportedFormatError(f"{root} is not a Sentinel store")
    if not config.encrypted(config.read(root)):
        raise NotFoundError(f"{root} has no passphrase, so no signing key")
    with keyfile.naming(root):
        return crypto.public_key(keyfile.read(root))


def _check_verification(
    verification: VerificationOptions | None, signed: bool
) -> VerificationOptions:
    if verification is None:
        return sealed.SILENT
    if type(verification) is not VerificationOptions:
        raise InvalidInputError(
            "verification must be a sentinel.VerificationOptions"
        )
    if verification.checks_signatures and not signed:
        raise InvalidInputError(
            "a store without a passphrase has no signatures to verify; "
            "use VerificationOptions.silent() or open it with none"
        )
    return verification


def _create(root: str, keys_file: bytes | None) -> bool:
    """Create the folders, first pack, key file and config of a new
    store; return whether this call created it.

    Runs under the store's exclusive lock so two processes creating the
    same store at once cannot interleave.  The config is written last: a
    folder without it is an unfinished creation, which is resumed.  The
    key file (`keys_file`, for a store with a passphrase) is written
    before it, so a config that says "encrypted" always has its keys;
    a key file left by an unfinished creation protects nothing yet and
    is replaced or removed.  A folder holding anything else is refused,
    so Sentinel never writes into a folder it does not own.
    """
    _make_dirs(root)
    _refuse_foreign(root)
    lock_path = os.path.join(root, "lock")
    lock_fd = fs.open_fd(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fs.flock(lock_fd, fcntl.LOCK_EX, lock_path)
        if fs.exists(config.path_of(root)):
            return False
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
        if keys_file is not None:
            keyfile.write(root, keys_file)
            config.write(root, config.ENCRYPTION_SEALED)
        else:
            if fs.exists(keyfile.path_of(root)):
                fs.unlink(keyfile.path_of(root))
                fs.fsync_dir(root)
            config.write(root)
        return True
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
    of a store leaves (a lock file, a key file, ``objects/`` with an
    empty first pack, an empty ``refs/``, and our temp files), before
    anything is written into it."""
    for entry in fs.listdir(root):
        path = os.path.join(root, entry)
        if fs.is_temp(entry):
            continue
        if entry in _LEFTOVER_FILES and fs.kind(path) == "file":
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
