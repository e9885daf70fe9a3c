"""T5: protocol mutants.  The harness must catch each of them.

Each mutant is the writer with one durability step removed or moved,
applied with `monkeypatch`.  For each, the checks listed run until one
of them finds a violation (the mutant is *killed*); a mutant that no
check kills means the checks are too weak.  The checks are the ones the
other modules run on the real code (the in-order power-loss model, the
order rules and sync sequence of T4, the failed-fsync contract of T8).
Each check first runs on the real code, once per session, and only
counts if it passes there: a kill must be the mutant's doing.

Equivalent mutants: none is left in this list.  Removing the zeroing of
a torn tail (``dirty_end`` = 0) changes no read: every valid frame in a
torn tail would already have been found at open, so the leftover bytes
never parse.  It is killed by the documented invariant the checker
adds: after the first write that follows a crash, no torn bytes remain
(`crashcheck.check_image`).
"""

from __future__ import annotations

import errno
import os
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import figures
import pytest

import sentinel
from sentinel import fs, journal
from sentinel.errors import StoreIOError

from . import crashcheck
from .faultfs import SYNCS, CrashOS, Fault, FaultOS

Check = Callable[[pathlib.Path], str | None]


# -- the checks: each returns why the code is wrong, or None ------------------


def power(name: str, model: str = "in-order") -> Check:
    """T3 on one scenario, stopping at the first bad image."""

    def check(work: pathlib.Path) -> str | None:
        result = crashcheck.explore(
            crashcheck.SCENARIOS[name],
            str(work),
            crashcheck.MODELS[model],
            stop_early=True,
        )
        if result.losses or result.violations:
            return f"power loss ({name}): {result.examples[0]}"
        return None

    check.__name__ = f"power loss, {name}"
    return check


def order(name: str) -> Check:
    """T4 order rules on the trace of one scenario."""

    def check(work: pathlib.Path) -> str | None:
        recording = crashcheck.record(crashcheck.SCENARIOS[name], str(work))
        _checked, broken = crashcheck.order_violations(recording.trace)
        return f"order ({name}): {broken[0]}" if broken else None

    check.__name__ = f"order rules, {name}"
    return check


def one_insert_syncs(work: pathlib.Path) -> str | None:
    """T4: one insert makes exactly one fdatasync of the pack."""
    base = work / "syncs"
    base.mkdir()
    with sentinel.Store.new(base / "store") as store:
        docs = store.collection("docs")
        docs.insert("a", {"n": 1})
        tracer = FaultOS(base=CrashOS(base))
        previous = fs.install(tracer)
        try:
            docs.insert("b", {"n": 2})
        finally:
            fs.install(previous)
    syncs = [
        (op, os.path.basename(path or ""))
        for op, path in tracer.trace
        if op in SYNCS
    ]
    if syncs != [("fdatasync", "pack-00000001.pack")]:
        return f"one insert syncs {syncs}"
    return None


def failed_fdatasync(work: pathlib.Path) -> str | None:
    """T8 in one process: EIO from the pack's fdatasync.  The insert
    raises a typed error, the document stays absent (also after the
    next write and a reopen), and the next insert works."""
    root = work / "t8" / "store"
    with sentinel.Store.new(root) as store:
        docs = store.collection("docs")
        docs.insert("a", {"n": 1})
        previous = fs.install(
            FaultOS(1, Fault.error(errno.EIO), ops={"fdatasync"})
        )
        try:
            docs.insert("failed", {"n": 2})
        except StoreIOError:
            pass
        else:
            return "insert returned although its fdatasync failed"
        finally:
            fs.install(previous)
        docs.insert("next", {"n": 3})
        if docs.get("failed") is not None:
            return "the failed insert is visible"
    with sentinel.Store.new(root) as store:
        docs = store.collection("docs")
        if docs.get("failed") is not None:
            return "the failed insert is visible after reopening"
        if docs.get("next") is None:
            return "the insert after the failure is lost"
        if not store.verify().ok:
            return "verify fails"
    return None


# -- the mutants --------------------------------------------------------------


def skip_pack_sync(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(fs, "fdatasync", lambda fd, path: None)


def skip_dir_sync(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(fs, "fsync_dir", lambda path: None)


def write_in_place(mp: pytest.MonkeyPatch) -> None:
    def in_place(target: str, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = fs.open_fd(target, flags, 0o644)
        try:
            fs.write_all(fd, data, target)
            fs.fsync(fd, target)
        finally:
            fs.close(fd, target)
        fs.fsync_dir(os.path.dirname(target))

    mp.setattr(fs, "write_atomic", in_place)


def rename_unsynced_temp(mp: pytest.MonkeyPatch) -> None:
    write_atomic = fs.write_atomic

    def no_temp_sync(target: str, data: bytes) -> None:
        # `write_atomic` syncs the temp with `fs.fsync` and the folder
        # with the raw primitive, so only the temp's sync goes.
        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(fs, "fsync", lambda fd, path: None)
            write_atomic(target, data)

    mp.setattr(fs, "write_atomic", no_temp_sync)


def keep_torn_tail(mp: pytest.MonkeyPatch) -> None:
    append = journal.Journal.append

    def no_zeroing(
        self: journal.Journal,
        data: bytes,
        at: int,
        durable: bool,
        dirty_end: int,
    ) -> None:
        append(self, data, at, durable, 0)

    mp.setattr(journal.Journal, "append", no_zeroing)


def seal_first(mp: pytest.MonkeyPatch) -> None:
    roll = journal.Journal.roll
    create_pack = journal.Journal.create_pack

    def sealing_first(
        self: journal.Journal, at: int, durable: bool, dirty_end: int
    ) -> bytes:
        following = self.current + 1
        # The real roll, with the creation of the new pack moved after
        # the seal that names it.
        self.create_pack = lambda number: None  # type: ignore[method-assign]
        try:
            seal = roll(self, at, durable, dirty_end)
        finally:
            del self.create_pack
        create_pack(self, following)
        return seal

    mp.setattr(journal.Journal, "roll", sealing_first)


def unsynced_pack_header(mp: pytest.MonkeyPatch) -> None:
    create_pack = journal.Journal.create_pack

    def without_file_sync(self: journal.Journal, number: int) -> None:
        # `create_pack` syncs the file with `fs.fsync` and the folder
        # with the raw primitive, so only the header's sync goes.
        with pytest.MonkeyPatch.context() as inner:
            inner.setattr(fs, "fsync", lambda fd, path: None)
            create_pack(self, number)

    mp.setattr(journal.Journal, "create_pack", without_file_sync)


def retry_failed_sync(mp: pytest.MonkeyPatch) -> None:
    fdatasync = fs.fdatasync

    def retrying(fd: int, path: str) -> None:
        try:
            fdatasync(fd, path)
        except StoreIOError:
            fdatasync(fd, path)

    mp.setattr(fs, "fdatasync", retrying)


def swallow_write_errors(mp: pytest.MonkeyPatch) -> None:
    append = journal.Journal.append

    def swallowing(
        self: journal.Journal,
        data: bytes,
        at: int,
        durable: bool,
        dirty_end: int,
    ) -> None:
        try:
            append(self, data, at, durable, dirty_end)
        except Exception:
            pass

    mp.setattr(journal.Journal, "append", swallowing)


def no_erase(mp: pytest.MonkeyPatch) -> None:
    # Claims success, so nothing downstream knows the frame is still there.
    mp.setattr(journal.Journal, "erase", lambda self, start, stop: True)


@dataclass(frozen=True)
class Mutant:
    name: str
    apply: Callable[[pytest.MonkeyPatch], None]
    checks: tuple[Check, ...]


MUTANTS = [
    Mutant(
        "pack fdatasync skipped",
        skip_pack_sync,
        (one_insert_syncs, power("inserts and replaces")),
    ),
    Mutant(
        "directory fsync skipped",
        skip_dir_sync,
        (
            power("pack rolls"),
            power("checkpoints"),
            power("create store + first insert"),
        ),
    ),
    Mutant(
        "ref table and config written in place",
        write_in_place,
        (power("checkpoints"), power("create store + first insert")),
    ),
    Mutant(
        "temp renamed before it is synced",
        rename_unsynced_temp,
        (power("checkpoints"), power("create store + first insert")),
    ),
    Mutant(
        "torn tail not zeroed before the next append",
        keep_torn_tail,
        (power("inserts and replaces"), power("pack rolls")),
    ),
    Mutant(
        "seal written before the new pack is durable",
        seal_first,
        (order("pack rolls"), power("pack rolls")),
    ),
    Mutant(
        "new pack header not synced before the seal",
        unsynced_pack_header,
        (power("pack rolls"), order("pack rolls")),
    ),
    Mutant(
        "failed fdatasync retried into a success",
        retry_failed_sync,
        (failed_fdatasync, power("fsync failure")),
    ),
    Mutant(
        "write errors swallowed",
        swallow_write_errors,
        (failed_fdatasync, power("fsync failure")),
    ),
    Mutant(
        "failed frame not erased",
        no_erase,
        (failed_fdatasync, power("fsync failure")),
    ),
]


_baseline: dict[str, str | None] = {}


def baseline(check: Check, work: pathlib.Path) -> str | None:
    """What `check` finds on the real code (once per session): a check
    that fails there cannot tell a mutant apart, so it does not count."""
    name = check.__name__
    if name not in _baseline:
        work.mkdir()
        _baseline[name] = check(work)
    return _baseline[name]


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_killed(
    mutant: Mutant,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    slow: bool,
) -> None:
    usable = [
        check
        for number, check in enumerate(mutant.checks)
        if baseline(check, tmp_path / f"baseline{number}") is None
    ]
    mutant.apply(monkeypatch)
    findings = []
    for number, check in enumerate(usable):
        work = tmp_path / f"check{number}"
        work.mkdir()
        found = check(work)
        if found is not None:
            findings.append(f"{check.__name__}: {found}")
            if not slow:
                break
    killed = bool(findings)
    figures.record(
        "protocol mutants",
        zero=("survived",),
        killed=int(killed),
        total=1,
        survived=int(not killed),
    )
    unusable = [c.__name__ for c in mutant.checks if c not in usable]
    assert killed, f"no check finds the mutant {mutant.name!r}" + (
        f" (failing on the real code: {unusable})" if unusable else ""
    )


def test_checks_pass_on_the_real_code(tmp_path: pathlib.Path) -> None:
    """The control: the quick checks find nothing without a mutant, so
    a kill above is the mutant's doing."""
    for number, check in enumerate(
        (one_insert_syncs, failed_fdatasync, order("pack rolls"))
    ):
        work = tmp_path / f"check{number}"
        work.mkdir()
        assert check(work) is None, check.__name__
