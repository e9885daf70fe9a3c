"""A real full disk: a small tmpfs that the store fills up (issue 6).

The fault loops of `test_faults` inject ENOSPC into single calls; here
the kernel refuses the space itself, with its own short writes and its
own idea of which page is the last one.  A tmpfs of `MOUNT_SIZE` is
mounted for each test (root only: the tests skip with the reason when
the process is not root or the mount is refused, as in a container
without CAP_SYS_ADMIN) and always unmounted in the fixture's teardown.

A filler file takes most of the space, so the store meets ENOSPC after
a few hundred writes; every write it acknowledges is kept in a model.
Then:

- the failing write raised `StoreFullError` (a `StoreIOError`, a
  `SentinelError`) with errno ENOSPC and a path inside the store, and
  no other kind of exception ever escaped;
- while the disk stays full, more writes raise the same typed error,
  reads return exactly the acknowledged data (versions, hashes, data,
  histories, counts), no temp file is left and `verify()` is clean;
- once the filler is gone, writes resume on the same handle, the write
  that failed included; after reopening, every acknowledged version is
  there with its hash, each failed write is absent (a retried one is
  there once), and `verify()` is clean.

Also: a store created on a nearly full disk (one failure point after
another), and the ref-table checkpoint that `close` writes when the
disk is full.
"""

from __future__ import annotations

import base64
import collections
import errno
import logging
import os
import pathlib
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import figures
import pytest
from conftest import Opener

import sentinel
from sentinel import engine

from .faultfs import Tally, temp_files

MOUNT_SIZE = 2 * 1024 * 1024
# What the filler leaves to the store.  The pack grows to about 400 KiB
# in steps of 64 KiB, then 80 KiB; its next step (100 KiB) meets the
# full disk with 45 to 60 KiB still free, far more than one write of
# the workload (under 8 KiB), so the failing write is one that needed
# the pack to grow and its frame ends inside the file: the common case
# on a real disk.  (`test_write_larger_than_the_free_space_...` takes
# the other case.)  That is also more
# than `engine.CHECKPOINT_ON_CLOSE` of journal, so `close` checkpoints.
HEADROOM = 464 * 1024
# A store that has not filled the disk after this many writes never will.
MAX_WRITES = 2000
# Writes after the space is freed, besides the retried one.
WRITES_AFTER_FREEING = 25
COLLECTIONS = ("events", "people", "audit")
# Creation needs a page for the first pack, one for the config and, with
# a passphrase, one for the key file: it must succeed within this many.
CREATION_PAGES = 8

WRITE_LINE = "disk full (tmpfs)"
WRITE_ZERO = (
    "lost",
    "untyped",
    "wrong errors",
    "reads refused",
    "verify problems",
    "failed writes visible",
    "leftover temp files",
    "writes not resumed",
)
CREATE_LINE = "disk full at store creation (tmpfs)"
CREATE_ZERO = (
    "untyped",
    "wrong errors",
    "leftover temp files",
    "not recreated",
    "verify problems",
)

Key = tuple[str, str]


# -- the tmpfs ----------------------------------------------------------------


def unmount(folder: pathlib.Path) -> None:
    """Unmount `folder`; lazily when something still holds it (a store
    a failed test left open), so no mount ever outlives its test."""
    done = subprocess.run(
        ["umount", str(folder)], capture_output=True, text=True
    )
    if done.returncode == 0:
        return
    lazy = subprocess.run(
        ["umount", "-l", str(folder)], capture_output=True, text=True
    )
    if lazy.returncode != 0:
        raise RuntimeError(
            f"could not unmount the tmpfs at {folder}: "
            f"{done.stderr.strip()}; {lazy.stderr.strip()}"
        )


@pytest.fixture
def tmpfs(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A fresh tmpfs of `MOUNT_SIZE`, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip(
            "a real full disk needs a small tmpfs, and mounting one needs "
            "root: run the tests as root (as CI does) to check it"
        )
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount are not installed, so no tmpfs")
    point = tmp_path / "tmpfs"
    point.mkdir()
    done = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={MOUNT_SIZE},mode=0700",
            "tmpfs",
            str(point),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "mounting a tmpfs was refused (a container without "
            f"CAP_SYS_ADMIN?): {' '.join(done.stderr.split())}"
        )
    try:
        yield point
    finally:
        unmount(point)


def free_bytes(folder: pathlib.Path) -> int:
    found = os.statvfs(folder)
    return found.f_bavail * found.f_frsize


class Filler:
    """A file that takes the tmpfs's space, whole pages at a time."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.page = os.statvfs(path.parent).f_bsize

    def fill(self) -> None:
        """Append until the tmpfs refuses: the disk is then full."""
        chunk = b"\xa5" * (16 * self.page)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)

    def leave(self, free: int) -> None:
        """Give back `free` bytes (whole pages) of a full disk."""
        pages = -(-free // self.page)
        size = self.path.stat().st_size
        keep = size - size % self.page - pages * self.page
        os.truncate(self.path, max(keep, 0))
        assert free_bytes(self.path.parent) >= free

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# -- findings -----------------------------------------------------------------


def inside(path: object, root: pathlib.Path) -> bool:
    if not isinstance(path, str):
        return False
    return os.path.commonpath([os.path.abspath(path), str(root)]) == str(root)


def judge_error(
    exc: Exception, root: pathlib.Path, findings: Tally, where: str
) -> None:
    """A write on a full disk may fail only with `StoreFullError`,
    errno ENOSPC, naming a path in the store."""
    if not isinstance(exc, sentinel.SentinelError):
        findings.bad("untyped", f"{where}: {exc!r}")
    elif (
        isinstance(exc, sentinel.StoreFullError)
        and isinstance(exc, sentinel.StoreIOError)
        and exc.errno == errno.ENOSPC
        and inside(exc.filename, root)
    ):
        findings.counts["ENOSPC raised"] += 1
    else:
        findings.bad(
            "wrong errors",
            f"{where}: {exc!r} (errno {getattr(exc, 'errno', None)}, "
            f"path {getattr(exc, 'filename', None)})",
        )


# -- the workload and its model -----------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write call, made again as it is for a retry.  `targets`: the
    documents it writes; `collections`: those it creates."""

    label: str
    call: Callable[[sentinel.Store], list[sentinel.Document]]
    targets: tuple[Key, ...] = ()
    collections: tuple[str, ...] = ()


@dataclass
class Model:
    """What the store acknowledged, and what it refused."""

    collections: set[str] = field(default_factory=set)
    latest: dict[Key, sentinel.Document] = field(default_factory=dict)
    versions: dict[Key, list[tuple[int, str]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    refused: set[Key] = field(default_factory=set)
    writes: int = 0

    def ack(self, write: Write, docs: list[sentinel.Document]) -> None:
        self.writes += 1
        self.collections.update(write.collections)
        for doc in docs:
            key = (doc.collection, doc.id)
            self.versions[key].append((doc.version, doc.hash))
            self.latest[key] = doc

    def refuse(self, write: Write) -> None:
        # A refused collection is caught by comparing the listing with
        # `collections`; refused documents must have no version at all
        # beyond the acknowledged ones.
        self.refused.update(write.targets)

    def live(self, name: str) -> list[str]:
        return sorted(doc_id for coll, doc_id in self.latest if coll == name)


def attempt(
    store: sentinel.Store,
    write: Write,
    model: Model,
    findings: Tally,
    root: pathlib.Path,
) -> Exception | None:
    """Make `write`; record what came of it; return its error."""
    try:
        docs = write.call(store)
    except Exception as exc:  # noqa: BLE001 - judged below
        model.refuse(write)
        judge_error(exc, root, findings, write.label)
        return exc
    model.ack(write, docs)
    return None


def insert(coll: str, doc_id: str, data: dict[str, Any]) -> Write:
    def call(store: sentinel.Store) -> list[sentinel.Document]:
        return [store.collection(coll).insert(doc_id, data)]

    return Write(f"insert {coll}/{doc_id}", call, ((coll, doc_id),))


def update(coll: str, doc_id: str, patch: dict[str, Any]) -> Write:
    def call(store: sentinel.Store) -> list[sentinel.Document]:
        return [store.collection(coll).update(doc_id, patch)]

    return Write(f"update {coll}/{doc_id}", call, ((coll, doc_id),))


def bulk(coll: str, items: list[tuple[str, dict[str, Any]]]) -> Write:
    def call(store: sentinel.Store) -> list[sentinel.Document]:
        return store.collection(coll).bulk_insert(items)

    ids = tuple((coll, doc_id) for doc_id, _ in items)
    return Write(f"bulk_insert {coll} x{len(items)}", call, ids)


def batch(
    inserts: list[tuple[str, str, dict[str, Any]]],
    updates: list[tuple[str, str, dict[str, Any]]],
) -> Write:
    def call(store: sentinel.Store) -> list[sentinel.Document]:
        with store.batch() as group:
            for coll, doc_id, data in inserts:
                group.insert(coll, doc_id, data)
            for coll, doc_id, patch in updates:
                group.update(coll, doc_id, patch)
        return list(group.results)

    targets = tuple((c, i) for c, i, _ in inserts) + tuple(
        (c, i) for c, i, _ in updates
    )
    return Write(f"batch x{len(targets)}", call, targets)


def new_collection(name: str) -> Write:
    def call(store: sentinel.Store) -> list[sentinel.Document]:
        store.collection(name)
        return []

    return Write(f"collection {name}", call, collections=(name,))


class Workload:
    """Seeded writes of 300 bytes to 4 KiB documents (random, so zstd
    cannot shrink them much): new ids in several collections, replacing
    inserts and merges of acknowledged ids, bulk inserts and batches
    across collections."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0

    def blob(self, low: int = 300, high: int = 4096) -> str:
        size = self.rng.randint(low, high)
        raw = self.rng.randbytes(size)
        return base64.b64encode(raw).decode()[:size]

    def document(self, low: int = 300, high: int = 4096) -> dict[str, Any]:
        self.serial += 1
        return {
            "serial": self.serial,
            "kind": self.rng.choice(["login", "change", "grant", "audit"]),
            "tags": self.rng.sample(["a", "b", "c", "d", "e"], 2),
            "blob": self.blob(low, high),
        }

    def new_id(self, coll: str) -> str:
        self.serial += 1
        return f"{coll[:3]}-{self.serial:06d}"

    def existing(self, model: Model) -> Key:
        return self.rng.choice(sorted(model.latest))

    def next(self, model: Model) -> Write:
        rng = self.rng
        roll = rng.random()
        if len(model.latest) < 4:
            roll = 1.0
        if roll < 0.08:
            coll = rng.choice(COLLECTIONS)
            items = [
                (self.new_id(coll), self.document(300, 1500))
                for _ in range(rng.randint(2, 3))
            ]
            old = [k for k in sorted(model.latest) if k[0] == coll]
            if old:
                items.append((rng.choice(old)[1], self.document(300, 1500)))
            return bulk(coll, items)
        if roll < 0.14:
            first, second = rng.sample(COLLECTIONS, 2)
            target = self.existing(model)
            return batch(
                [
                    (first, self.new_id(first), self.document(300, 1500)),
                    (second, self.new_id(second), self.document(300, 1500)),
                ],
                [(*target, {"audited": self.serial, "note": self.blob(50)})],
            )
        if roll < 0.30:
            return insert(*self.existing(model), self.document())
        if roll < 0.40:
            patch = {"revision": {"n": self.serial}, "note": self.blob()}
            return update(*self.existing(model), patch)
        coll = rng.choice(COLLECTIONS)
        return insert(coll, self.new_id(coll), self.document())


# -- checks -------------------------------------------------------------------


def compare(
    store: sentinel.Store, model: Model, findings: Tally, stage: str
) -> None:
    """Everything a reader sees against the model: collections, counts,
    ids, and for every document its newest version, hash and data and
    the versions and hashes of its history."""
    listed = set(store.list_collections())
    if listed - model.collections:
        findings.bad(
            "failed writes visible",
            f"{stage}: collections {sorted(listed - model.collections)}",
        )
    if model.collections - listed:
        findings.bad(
            "lost", f"{stage}: collections {model.collections - listed}"
        )
    # Handles only to listed collections: `collection()` of a missing
    # one would create it, a write in the middle of a read check.
    handles = {name: store.collection(name) for name in sorted(listed)}
    for name in sorted(model.collections & listed):
        coll = handles[name]
        want = model.live(name)
        count, ids = coll.count(), list(coll.ids())
        if count != len(want) or ids != want:
            kind = "lost" if set(want) - set(ids) else "failed writes visible"
            findings.bad(
                kind,
                f"{stage}: {name} counts {count} and lists {len(ids)} ids, "
                f"{len(want)} acknowledged",
            )
    for key, acked in sorted(model.latest.items()):
        if key[0] not in handles:
            findings.bad("lost", f"{stage}: {key} (no collection)")
            continue
        got = handles[key[0]].get(key[1])
        if got is None or got.version < acked.version:
            findings.bad("lost", f"{stage}: {key} reads {got}")
            continue
        if got.version > acked.version:
            findings.bad(
                "failed writes visible",
                f"{stage}: {key} v{got.version}, v{acked.version} acked",
            )
            continue
        if (got.hash, got.data) != (acked.hash, acked.data):
            findings.bad("lost", f"{stage}: {key} v{got.version} differs")
    for key in sorted(model.versions.keys() | model.refused):
        if key[0] not in handles:
            continue
        history = handles[key[0]].history(key[1])
        seen = [(doc.version, doc.hash) for doc in reversed(history)]
        acked_versions = model.versions.get(key, [])
        if seen == acked_versions:
            continue
        kind = (
            "lost"
            if set(acked_versions) - set(seen)
            else "failed writes visible"
        )
        findings.bad(kind, f"{stage}: {key} history {seen}")


def check_reads(
    store: sentinel.Store,
    model: Model,
    findings: Tally,
    root: pathlib.Path,
    stage: str,
) -> None:
    """`compare`, counting a read that raises; then no temp file is
    left and `verify()` is clean."""
    try:
        compare(store, model, findings, stage)
    except sentinel.SentinelError as exc:
        findings.bad("reads refused", f"{stage}: {exc!r}")
    except Exception as exc:  # noqa: BLE001 - counted
        findings.bad("untyped", f"{stage}: read raised {exc!r}")
    check_leftovers(store, findings, root, stage)


def check_leftovers(
    store: sentinel.Store,
    findings: Tally,
    root: pathlib.Path,
    stage: str,
) -> None:
    for path in temp_files(root):
        findings.bad("leftover temp files", f"{stage}: {path}")
    try:
        report = store.verify()
    except sentinel.SentinelError as exc:
        findings.bad("verify problems", f"{stage}: verify raised {exc!r}")
        return
    for problem in report.problems:
        findings.bad("verify problems", f"{stage}: {problem}")
    for path in report.temp_files_removed:
        findings.bad("leftover temp files", f"{stage}: {path} (removed)")


def reopen_and_check(
    root: pathlib.Path, model: Model, findings: Tally, stage: str
) -> None:
    with sentinel.Store.new(root) as store:
        check_reads(store, model, findings, root, stage)


# -- filling the disk ---------------------------------------------------------


@dataclass
class Full:
    """A store whose disk just filled up under `write`."""

    store: sentinel.Store
    root: pathlib.Path
    filler: Filler
    workload: Workload
    model: Model
    findings: Tally
    write: Write
    error: Exception


def fill_store(folder: pathlib.Path, seed: int) -> Full:
    """Leave `HEADROOM` free, create a store, write until one write
    raises; return the store, still open, with the disk full."""
    filler = Filler(folder / "filler")
    filler.fill()
    filler.leave(HEADROOM)
    root = folder / "store"
    store = sentinel.Store.new(root)
    model, findings = Model(), Tally()
    workload = Workload(seed)
    for name in COLLECTIONS:
        error = attempt(store, new_collection(name), model, findings, root)
        if error is not None:
            pytest.fail(f"the disk is full before any write: {findings}")
    for _ in range(MAX_WRITES):
        write = workload.next(model)
        error = attempt(store, write, model, findings, root)
        if error is not None:
            # Nothing else is written on this tmpfs now: the pack's
            # growth took what was left, or the filler takes it.
            filler.fill()
            return Full(
                store, root, filler, workload, model, findings, write, error
            )
    store.close()
    pytest.fail(f"{MAX_WRITES} writes did not fill {HEADROOM} bytes")


def while_full(full: Full) -> list[Write]:
    """Writes made while the disk is full: the failed one again, and
    others of each kind.  The retries need the pack to grow exactly as
    the failed write did, so they must fail; the small ones may fit in
    what the pack has already allocated, and then succeed."""
    rng, model = full.workload, full.model
    coll, other = COLLECTIONS[:2]
    target = rng.existing(model)
    return [
        full.write,
        insert(coll, rng.new_id(coll), rng.document(200, 300)),
        update(*target, {"while_full": True}),
        bulk(other, [(rng.new_id(other), {"n": n}) for n in range(2)]),
        new_collection("late"),
        full.write,
        full.write,
    ]


def record_writes(full: Full, resumed: int) -> None:
    counts = full.findings.counts
    figures.record(
        WRITE_LINE,
        zero=WRITE_ZERO,
        runs=1,
        **{
            "acknowledged writes": full.model.writes,
            "acknowledged versions": sum(
                map(len, full.model.versions.values())
            ),
            "ENOSPC raised": counts["ENOSPC raised"],
            "writes after freeing": resumed,
            **{kind: counts[kind] for kind in WRITE_ZERO},
        },
    )


# -- the tests ----------------------------------------------------------------


def test_disk_full_raises_typed_keeps_data_and_resumes(
    tmpfs: pathlib.Path,
) -> None:
    """The store fills the disk: a typed ENOSPC, more of them while it
    stays full, exact reads throughout; once the filler is deleted the
    same handle writes again, the failed write first, and a reopened
    store holds every acknowledged version and none of the failed."""
    full = fill_store(tmpfs, seed=6)
    store, root, model, findings = (
        full.store,
        full.root,
        full.model,
        full.findings,
    )
    resumed = 0
    try:
        first = full.error
        failed_while_full = 0
        for write in while_full(full):
            if attempt(store, write, model, findings, root) is not None:
                failed_while_full += 1
        # The writes above really met a full disk, not a nearly full one.
        assert free_bytes(tmpfs) < full.filler.page
        check_reads(store, model, findings, root, "while full")

        # Space comes back: the same handle takes writes again, first
        # the very write that failed.
        full.filler.remove()
        for write in [
            full.write,
            *(full.workload.next(model) for _ in range(WRITES_AFTER_FREEING)),
        ]:
            if attempt(store, write, model, findings, root) is not None:
                findings.bad("writes not resumed", write.label)
            else:
                resumed += 1
        check_reads(store, model, findings, root, "after freeing")
    finally:
        store.close()
    reopen_and_check(root, model, findings, "reopened")
    record_writes(full, resumed)

    assert isinstance(first, sentinel.StoreFullError), repr(first)
    assert isinstance(first, sentinel.StoreIOError)
    assert isinstance(first, sentinel.SentinelError)
    assert first.errno == errno.ENOSPC, repr(first)
    assert inside(first.filename, root), first.filename
    assert model.writes > 100, "the disk filled before the store grew"
    assert failed_while_full >= 3, "writes while full did not fail"
    assert findings.counts["ENOSPC raised"] == 1 + failed_while_full
    for key in full.write.targets:
        assert key in model.latest, f"the retried write missed {key}"
    assert not any(findings.counts[kind] for kind in WRITE_ZERO), (
        findings.problems(WRITE_ZERO)
    )


def test_write_larger_than_the_free_space_keeps_reads_working(
    tmpfs: pathlib.Path,
) -> None:
    """A write whose frame runs past the end of the pack file while the
    disk is full: it raises ENOSPC, and undoing it must not need space
    either, so reads and `verify()` go on while the disk stays full.

    This test found a bug: the undo zeroed the whole range of the
    failed frame, past the end of the file too, which needed the space
    that was missing; the write was then marked as not undone
    (`Journal.broken`) and every read in the process raised
    `StoreIOError(EIO, "a failed write could not be undone yet ...")`
    until space was freed.  `Journal.erase` now stops at the file's
    size: bytes that do not exist cannot make a frame look valid.
    """
    full = fill_store(tmpfs, seed=7)
    store, root, model, findings = (
        full.store,
        full.root,
        full.model,
        full.findings,
    )
    pack = root / "objects" / "pack-00000001.pack"
    # Base64 of random bytes as long as the pack file: even compressed,
    # far more than the space the pack file holds past its last frame.
    size = pack.stat().st_size
    big = insert(
        COLLECTIONS[2], "big-one", {"blob": full.workload.blob(size, size)}
    )
    resumed = 0
    try:
        error = attempt(store, big, model, findings, root)
        check_reads(store, model, findings, root, "after the large write")
        full.filler.remove()
        if attempt(store, big, model, findings, root) is not None:
            findings.bad("writes not resumed", big.label)
        else:
            resumed += 1
        check_reads(store, model, findings, root, "after freeing")
    finally:
        store.close()
    reopen_and_check(root, model, findings, "reopened")
    record_writes(full, resumed)

    assert isinstance(error, sentinel.StoreFullError), repr(error)
    assert error.errno == errno.ENOSPC
    assert not any(findings.counts[kind] for kind in WRITE_ZERO), (
        findings.problems(WRITE_ZERO)
    )


def test_checkpoint_on_close_with_a_full_disk(
    tmpfs: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`close` writes a ref table once enough journal follows the last
    one; on a full disk that fails, and must cost nothing but time: the
    journal holds every acknowledged write."""
    full = fill_store(tmpfs, seed=8)
    store, root, model, findings = (
        full.store,
        full.root,
        full.model,
        full.findings,
    )
    table = root / "refs" / "table"
    pack = root / "objects" / "pack-00000001.pack"
    journal_bytes = pack.stat().st_size
    assert not table.exists(), "a ref table was written before close"
    with caplog.at_level(logging.WARNING, logger="sentinel"):
        store.close()
    # The failed checkpoint is only logged (the write it would speed up
    # is in the journal): its typed error is in the record.
    refused = [
        cause
        for record in caplog.records
        if record.name.startswith("sentinel")
        for cause in [
            *(record.args if isinstance(record.args, tuple) else ()),
            *(record.exc_info[1:2] if record.exc_info else ()),
        ]
        if isinstance(cause, sentinel.StoreFullError)
        and cause.errno == errno.ENOSPC
    ]
    written_while_full = table.exists()
    leftovers = temp_files(root)
    reopen_and_check(root, model, findings, "reopened while full")
    full.filler.remove()
    reopen_and_check(root, model, findings, "reopened after freeing")
    written_after_freeing = table.exists()
    # That reopening read the table written by the close before it.
    reopen_and_check(root, model, findings, "reopened from the table")
    record_writes(full, 0)

    assert journal_bytes >= engine.CHECKPOINT_ON_CLOSE
    assert refused, "close did not meet ENOSPC writing the ref table"
    assert not written_while_full, "a ref table fit on a full disk"
    assert not leftovers, leftovers
    assert written_after_freeing, "no ref table once space was back"
    assert not any(findings.counts[kind] for kind in WRITE_ZERO), (
        findings.problems(WRITE_ZERO)
    )


def test_store_creation_on_a_full_disk(
    tmpfs: pathlib.Path, opener: Opener
) -> None:
    """`Store.new` on a disk with 0, 1, 2, ... pages free, until it
    succeeds: each failure is a typed ENOSPC and leaves nothing that
    stops the same call once space is back (nor, still full, turns
    into another error), and the store then works."""
    filler = Filler(tmpfs / "filler")
    findings = Tally()
    failures = recreated = 0
    created_when_full = False
    for pages in range(CREATION_PAGES):
        root = tmpfs / f"store-{pages}"
        filler.fill()
        filler.leave(pages * filler.page)
        try:
            opener(root).close()
        except Exception as exc:  # noqa: BLE001 - judged
            failures += 1
            judge_error(exc, root, findings, f"{pages} pages free")
        else:
            created_when_full = True
            break
        for path in temp_files(root):
            findings.bad("leftover temp files", f"{pages} pages: {path}")
        # Still full: the leftovers are taken for an unfinished
        # creation, not for a foreign folder.
        filler.fill()
        try:
            opener(root).close()
        except Exception as exc:  # noqa: BLE001 - judged
            judge_error(exc, root, findings, f"{pages} pages, again")
        else:
            findings.bad("wrong errors", f"{pages} pages: a full disk took it")
        os.truncate(filler.path, 0)
        try:
            with opener(root) as store:
                doc = store.collection("docs").insert("a", {"pages": pages})
            with opener(root) as store:
                got = store.collection("docs").get("a")
                report = store.verify()
        except Exception as exc:  # noqa: BLE001 - counted
            findings.bad("not recreated", f"{pages} pages: {exc!r}")
            continue
        if got is None or (got.version, got.hash) != (doc.version, doc.hash):
            findings.bad("not recreated", f"{pages} pages: read {got}")
        else:
            recreated += 1
        for problem in report.problems:
            findings.bad("verify problems", f"{pages} pages: {problem}")
        for path in temp_files(root):
            findings.bad("leftover temp files", f"{pages} pages: {path}")
    figures.record(
        CREATE_LINE,
        zero=CREATE_ZERO,
        runs=1,
        **{
            "ENOSPC raised": findings.counts["ENOSPC raised"],
            "recreated after freeing": recreated,
            **{kind: findings.counts[kind] for kind in CREATE_ZERO},
        },
    )

    # The first pack and the config each need a page (and the key file
    # of an encrypted store another): at least two failure points.
    assert failures >= 2, f"only {failures} creations met a full disk"
    assert created_when_full, f"no creation fit in {CREATION_PAGES} pages"
    assert recreated == failures
    assert not any(findings.counts[kind] for kind in CREATE_ZERO), (
        findings.problems(CREATE_ZERO)
    )
