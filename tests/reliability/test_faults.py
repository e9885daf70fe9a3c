"""I/O faults at every file operation (RELIABILITY.md T2, T7-T9, T11).

For each operation (insert of a new id, replacing insert, collection
creation, opening a store, creating a store, `verify`) and n = 1, 2, ...
until the operation completes, the n-th file operation fails with each
of ENOSPC, EDQUOT, EIO, EROFS, EACCES, EMFILE and ENAMETOOLONG, once and
from then on (T7); returns a short count (writes only, T9); or raises
`KeyboardInterrupt` (T11).  Afterwards, with the faults removed:

- the call raised a typed `SentinelError` keeping the errno and a path,
  or let the `KeyboardInterrupt` through unchanged, or (short writes)
  completed;
- what is visible is the state before the call (a failed call changes
  nothing, I6), or the state after it if the call returned (or was
  interrupted once its write was durable);
- the next call in the same process works and does not hang (5 s
  timeout), and no lock is left held;
- no temp file and no descriptor is left behind;
- on reopening, the same state reads back and `verify()` is clean.

T8 (fsync failure is final) and T2 (a kill at every operation, in a
forked child) follow.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import figures
import pytest

import sentinel
from sentinel import (
    StoreFullError,
    StoreIOError,
    StoreReadOnlyError,
    engine,
    fs,
    journal,
)

from . import crashcheck
from .faultfs import (
    ERRNOS,
    WRITES,
    CrashOS,
    Fault,
    FaultOS,
    NoSyncOS,
    Tally,
    crash_states,
    diff,
    materialize,
    snapshot,
    temp_files,
)

NEXT_TIMEOUT = 5.0
MAX_POINTS = 400
A1, B1, B2 = {"n": 1}, {"n": 2}, {"n": 3, "tags": ["x", "y"]}
NEW = {"n": 10, "text": "a new document"}
A2 = {"n": 11, "text": "a replacement"}
AFTER_NEXT = {"next": True}

View = dict[str, Any]


def observe(store: sentinel.Store) -> View:
    """Everything a reader sees: collections, and for every document
    its version, hash and data, and the versions of its history (each
    read and verified)."""
    view: View = {"collections": store.list_collections()}
    for name in view["collections"]:
        coll = store.collection(name)
        for doc_id in coll.ids():
            doc = coll.get(doc_id)
            assert doc is not None
            view[f"{name}/{doc_id}"] = (doc.version, doc.hash, doc.data)
            view[f"{name}/{doc_id} history"] = [
                old.version for old in coll.history(doc_id)
            ]
    return view


def without_hashes(view: View) -> View:
    return {
        key: value[::2] if isinstance(value, tuple) else value
        for key, value in view.items()
    }


def mapped(number: int) -> type[StoreIOError]:
    if number in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFullError
    if number in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreReadOnlyError
    return StoreIOError


# -- the operations -----------------------------------------------------------


@dataclass
class Subject:
    root: str
    store: sentinel.Store | None = None
    docs: sentinel.Collection | None = None
    result: Any = None


class Case:
    """One operation of the loop.  `live`: it runs on a store opened
    before, which stays open after it; otherwise it opens one."""

    name = ""
    live = True
    fresh = False
    # Whether the call must leave every file as it was, failed or not.
    writes_nothing = False

    def setup(self, root: str) -> Subject:
        store = sentinel.Store.new(root)
        return Subject(root, store, store.collection("docs"))

    def run(self, subject: Subject) -> None:
        raise NotImplementedError

    def path(self, root: str) -> str:
        """Where the store is, for a copy of the template at `root`."""
        return root

    def check_result(self, subject: Subject) -> str | None:
        """Why the call's return value is wrong, if it is."""
        return None

    def after(self, before: View) -> View:
        """The view once the call took effect (without hashes)."""
        return without_hashes(before)


class InsertNew(Case):
    name = "insert new id"

    def run(self, subject: Subject) -> None:
        assert subject.docs is not None
        subject.result = subject.docs.insert("new", NEW)

    def after(self, before: View) -> View:
        view = without_hashes(before)
        view["docs/new"] = (1, NEW)
        view["docs/new history"] = [1]
        return view


class InsertReplace(Case):
    name = "insert replace"

    def run(self, subject: Subject) -> None:
        assert subject.docs is not None
        subject.result = subject.docs.insert("a", A2)

    def after(self, before: View) -> View:
        view = without_hashes(before)
        view["docs/a"] = (2, A2)
        view["docs/a history"] = [2, 1]
        return view


class CreateCollection(Case):
    name = "collection creation"

    def run(self, subject: Subject) -> None:
        assert subject.store is not None
        subject.result = subject.store.collection("fresh")

    def after(self, before: View) -> View:
        view = without_hashes(before)
        view["collections"] = sorted([*view["collections"], "fresh"])
        return view


class OpenStore(Case):
    name = "open existing store"
    live = False
    writes_nothing = True

    def setup(self, root: str) -> Subject:
        return Subject(root)

    def run(self, subject: Subject) -> None:
        subject.store = sentinel.Store.new(subject.root)


class CreateStore(Case):
    name = "create new store"
    live = False
    fresh = True

    def setup(self, root: str) -> Subject:
        return Subject(self.path(root))

    def path(self, root: str) -> str:
        return os.path.join(root, "deeper", "store")

    def run(self, subject: Subject) -> None:
        subject.store = sentinel.Store.new(subject.root)

    def after(self, before: View) -> View:
        return {"collections": []}


class Verify(Case):
    name = "verify"

    def setup(self, root: str) -> Subject:
        subject = super().setup(root)
        # A temp file of a writer that is gone, for verify to remove.
        name = f".table.{dead_pid()}.0badf00d{fs.TEMP_SUFFIX}"
        stale = os.path.join(root, "refs", name)
        with open(stale, "wb") as handle:
            handle.write(b"left by a crash")
        return subject

    def run(self, subject: Subject) -> None:
        assert subject.store is not None
        subject.result = subject.store.verify()

    def check_result(self, subject: Subject) -> str | None:
        report = subject.result
        if not report.ok:
            return f"verify found problems: {report.problems}"
        if len(report.temp_files_removed) != 1:
            return "verify did not remove the stale temp file"
        return None


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        InsertNew(),
        InsertReplace(),
        CreateCollection(),
        OpenStore(),
        CreateStore(),
        Verify(),
    )
}


def dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.fixture(scope="module", autouse=True)
def fast_io() -> Iterator[None]:
    """Thousands of trials: packs grow by 64 KiB instead of 1 MiB
    (opening a store reads the free tail of its pack; the growth path is
    taken the same way, more often if anything), and syncs are counted
    and injected but do not reach the disk (`NoSyncOS`; durability is the
    power-loss tests' business)."""
    saved = journal.EXTEND_STEP
    journal.EXTEND_STEP = 64 * 1024
    previous = fs.install(NoSyncOS())
    yield
    fs.install(previous)
    journal.EXTEND_STEP = saved


@dataclass(frozen=True)
class Template:
    root: str
    view: View


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A store with history: docs/a v1, docs/b v2."""
    root = str(tmp_path_factory.mktemp("template") / "store")
    with sentinel.Store.new(root) as store:
        docs = store.collection("docs")
        docs.insert("a", A1)
        docs.insert("b", B1)
        docs.insert("b", B2)
        view = observe(store)
    return Template(root, view)


# -- one trial ----------------------------------------------------------------


def lock_is_held(root: str) -> bool:
    """Whether anyone holds the store's lock (a non-blocking probe on a
    descriptor of our own)."""
    path = os.path.join(root, "lock")
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def close_leaked(folder: str) -> int:
    """Close this process's descriptors on files under `folder` (fresh
    for each trial, so every one of them is a leak) and return how many,
    so that one trial's leak cannot hurt the next."""
    leaked = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(folder + os.sep) or target == folder:
            os.close(fd)
            leaked += 1
    return leaked


def in_thread(action: Callable[[], None]) -> tuple[bool, BaseException | None]:
    """Run `action` in a daemon thread; (finished in time, its error)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(NEXT_TIMEOUT)
    if thread.is_alive():
        return False, None
    return True, outcome[0]


def next_call(subject: Subject) -> None:
    """The next call in the same process: an insert and a read back."""
    store = subject.store
    if store is None:
        store = subject.store = sentinel.Store.new(subject.root)
    docs = store.collection("docs")
    docs.insert("next", AFTER_NEXT)
    got = docs.get("next")
    if got is None or got.data != AFTER_NEXT:
        raise AssertionError("the next insert does not read back")


def judge(
    view: View,
    before: View,
    after: View,
    error: BaseException | None,
    fault: Fault,
    where: str,
    tally: Tally,
) -> None:
    """Check what is visible against the call's outcome: a failed call
    changed nothing (an interrupt may also come after the write was
    durable); a call that returned took effect."""
    was_before = view == before
    was_after = without_hashes(view) == after
    if error is not None:
        if was_before or (was_after and fault.kind == "interrupt"):
            return
        if was_after:
            tally.bad("failed writes visible", f"{where}: {error!r}")
        else:
            tally.bad("corruptions", f"{where}: {view}")
    elif not was_after:
        if was_before:
            tally.bad("lost writes", f"{where}: returned, not visible")
        else:
            tally.bad("corruptions", f"{where}: {view}")


def trial(
    case: Case,
    template: Template,
    work: str,
    fault: Fault,
    at: int,
    ops: frozenset[str] | None,
    tally: Tally,
) -> bool:
    """Run `case` with `fault` at matching call `at`; check everything;
    return whether the fault was injected (False: the call completed
    before reaching call `at`)."""
    folder = os.path.join(work, f"{fault.label}-{at}".replace(" ", "-"))
    root = os.path.join(folder, "store")
    if case.fresh:
        os.makedirs(folder)
    else:
        shutil.copytree(template.root, root)
    subject = case.setup(root)
    before: View = {"collections": []}
    if not case.fresh:
        before = observe(subject.store) if subject.store else template.view
    after = case.after(before)
    temps = set(temp_files(folder))
    tree = snapshot(folder) if case.writes_nothing else None
    faulty = FaultOS(at, fault, ops=ops, base=fs.current())
    previous = fs.install(faulty)
    error: BaseException | None = None
    try:
        case.run(subject)
    except BaseException as exc:  # noqa: BLE001 - classified below
        error = exc
    finally:
        fs.install(previous)
    injected = faulty.injected > 0
    where = f"{case.name}, {fault.label} at call {at} " + (
        f"({faulty.first[0]} {os.path.basename(faulty.first[1] or '')})"
        if faulty.first
        else "(not reached)"
    )
    if tree is not None and (changes := diff(tree, snapshot(folder))):
        tally.bad("corruptions", f"{where}: the tree changed: {changes}")
    try:
        check_trial(
            case,
            subject,
            (before, after),
            error,
            fault,
            injected,
            where,
            tally,
        )
        left = sorted(set(temp_files(folder)) - temps)
        if left:
            names = [os.path.basename(path) for path in left]
            tally.bad("leaked temps", f"{where}: {names}")
    finally:
        leaked = close_leaked(folder)
        if leaked:
            tally.bad("leaked descriptors", f"{where}: {leaked}")
        shutil.rmtree(folder, ignore_errors=True)
    return injected


def check_trial(
    case: Case,
    subject: Subject,
    views: tuple[View, View],
    error: BaseException | None,
    fault: Fault,
    injected: bool,
    where: str,
    tally: Tally,
) -> None:
    """Everything checked after one trial, faults removed."""
    before, after = views
    detail = f"{where}: {error!r}"
    # The error itself.
    if fault.kind == "interrupt":
        if error is None and injected:
            tally.bad("swallowed", where)
        elif error is not None and type(error) is not KeyboardInterrupt:
            tally.bad("untyped", detail)
    elif error is not None and not isinstance(error, sentinel.SentinelError):
        tally.bad("untyped", detail)
    elif fault.kind == "errno" and error is not None:
        assert isinstance(error, sentinel.SentinelError)
        if not isinstance(error, mapped(fault.number)) or (
            error.errno != fault.number
        ):
            tally.bad("errno lost", detail)
        elif not error.filename:
            tally.bad("path lost", detail)
    elif fault.kind == "short" and error is not None:
        tally.bad("failed short writes", detail)
    if error is None and (why := case.check_result(subject)):
        tally.bad("corruptions", f"{where}: {why}")

    # What this process sees now.
    if case.live and subject.store is not None:
        try:
            judge(
                observe(subject.store),
                before,
                after,
                error,
                fault,
                where,
                tally,
            )
        except Exception as exc:
            tally.bad("corruptions", f"{where}: reading fails: {exc!r}")

    # The next call in this process; no lock left held.
    if subject.store is None and lock_is_held(subject.root):
        tally.bad("hangs", f"{where}: the store lock is left held")
        return
    done, problem = in_thread(lambda: next_call(subject))
    if not done:
        tally.bad("hangs", f"{where}: the next call hangs")
        return
    if problem is not None:
        tally.bad("next call fails", f"{where}: {problem!r}")
    if subject.store is not None:
        try:
            subject.store.close()
        except Exception as exc:
            tally.bad("untyped", f"{where}: close: {exc!r}")
    if lock_is_held(subject.root):
        tally.bad("hangs", f"{where}: the lock is held after close")
        return

    # Reopen: the same state, and a clean verify.
    try:
        with sentinel.Store.new(subject.root) as again:
            view = observe(again)
            view.pop("docs/next", None)
            view.pop("docs/next history", None)
            if "docs" not in before["collections"]:
                view["collections"] = [
                    name for name in view["collections"] if name != "docs"
                ]
            judge(
                view, before, after, error, fault, f"{where}, reopened", tally
            )
            report = again.verify()
            if not report.ok:
                tally.bad("corruptions", f"{where}: {report.problems}")
    except Exception as exc:
        tally.bad("corruptions", f"{where}: reopen fails: {exc!r}")


def loop(
    case: Case,
    template: Template,
    work: str,
    fault: Fault,
    tally: Tally,
    ops: frozenset[str] | None = None,
) -> int:
    """n = 1, 2, ... until the call completes; return the points."""
    for at in range(1, MAX_POINTS):
        if not trial(case, template, work, fault, at, ops, tally):
            return at - 1
    raise AssertionError(f"{case.name} never completes under {fault.label}")


# More errnos for the slow tier (--slow).
SLOW_ERRNOS = {
    "EFBIG": errno.EFBIG,
    "EPERM": errno.EPERM,
    "ENFILE": errno.ENFILE,
    "ESTALE": errno.ESTALE,
}
PROBLEMS = (
    "untyped",
    "corruptions",
    "leaked temps",
    "errno lost",
    "path lost",
    "failed writes visible",
    "lost writes",
    "hangs",
    "next call fails",
    "leaked descriptors",
)
_described: set[str] = set()


def describe_once(line: str, **counts: int) -> dict[str, int]:
    """Counts that describe a figure line rather than add up across
    tests (how many errnos, modes): given on the first record only."""
    if line in _described:
        return {}
    _described.add(line)
    return counts


@pytest.mark.parametrize("name", list(CASES))
def test_fault_injection(
    name: str, template: Template, tmp_path: pathlib.Path, slow: bool
) -> None:
    """T7: every errno, once and forever, at every call."""
    case, tally = CASES[name], Tally()
    numbers = {**ERRNOS, **(SLOW_ERRNOS if slow else {})}
    points = trials = 0
    for number in numbers.values():
        for forever in (False, True):
            fault = Fault.error(number, forever=forever)
            reached = loop(case, template, str(tmp_path), fault, tally)
            points, trials = max(points, reached), trials + reached + 1
    counts = tally.counts
    figures.record(
        "fault injection",
        zero=PROBLEMS,
        **describe_once("fault injection", errnos=len(numbers), modes=2),
        points=points,
        trials=trials,
        **{kind: counts[kind] for kind in PROBLEMS},
    )
    assert points > 0
    assert not counts, tally.report()


INTERRUPT_PROBLEMS = tuple(
    kind for kind in PROBLEMS if kind != "leaked descriptors"
) + ("swallowed",)


@pytest.mark.parametrize("name", list(CASES))
def test_interrupts(
    name: str, template: Template, tmp_path: pathlib.Path
) -> None:
    """T11: a KeyboardInterrupt at every call propagates unchanged, and
    leaves no lock held: the next call in the same process works.

    A descriptor left open by an interrupt that arrives just before a
    ``close`` is reported but not failed: no code can tell whether an
    interrupt came before or after the system call.
    """
    case, tally = CASES[name], Tally()
    points = loop(case, template, str(tmp_path), Fault("interrupt"), tally)
    counts = tally.counts
    figures.record(
        "interrupt points",
        zero=INTERRUPT_PROBLEMS,
        points=points,
        **{kind: counts[kind] for kind in INTERRUPT_PROBLEMS},
        **{"descriptors left (not failed)": counts["leaked descriptors"]},
    )
    assert points > 0
    bad = {k: v for k, v in counts.items() if k in INTERRUPT_PROBLEMS}
    assert not bad, tally.report()


@pytest.mark.parametrize("name", list(CASES))
def test_short_writes(
    name: str, template: Template, tmp_path: pathlib.Path
) -> None:
    """T9: a write or pwrite that writes only part of its bytes, once
    and for every write from then on: the call completes, whole."""
    case, tally = CASES[name], Tally()
    trials = 0
    for fault in (Fault("short"), Fault("short", forever=True)):
        trials += 1 + loop(
            case, template, str(tmp_path), fault, tally, ops=WRITES
        )
    counts = tally.counts
    truncated = counts["corruptions"] + counts["lost writes"]
    figures.record(
        "short writes",
        zero=("truncated objects", "other problems"),
        trials=trials,
        **{
            "truncated objects": truncated,
            "other problems": sum(counts.values()) - truncated,
        },
    )
    assert not counts, tally.report()


# -- T8: a failed fsync is final ----------------------------------------------


@dataclass(frozen=True)
class SyncCase:
    """A workload whose first sync of a file matching `target` fails
    with EIO under `CrashOS` (which then drops the unsynced bytes for
    good); `rest_fail`: every call after it fails too, until the first
    operation is over.  `must_fail`: the operation that met the failed
    sync must raise (False for a checkpoint, which the write does not
    depend on)."""

    name: str
    target: str
    workload: Callable[[crashcheck.Ctx], None]
    setup: Callable[[crashcheck.Ctx], None] | None = crashcheck.setup_two_docs
    must_fail: bool = True
    rest_fail: bool = False
    patches: tuple[tuple[Any, str, Any], ...] = ()


def t8_insert_new(ctx: crashcheck.Ctx) -> None:
    with ctx.open() as store:
        docs = store.collection("docs")
        ctx.insert(docs, "new", NEW)
        ctx.insert(docs, "new", NEW)
        ctx.insert(docs, "later", {"n": 99})


def t8_second_handle(ctx: crashcheck.Ctx) -> None:
    """The insert fails; then another handle (as another process would)
    opens the store and writes."""
    with ctx.open() as store:
        ctx.insert(store.collection("docs"), "new", NEW)
        with ctx.open() as other:
            ctx.insert(other.collection("docs"), "later", {"n": 99})


def t8_replace(ctx: crashcheck.Ctx) -> None:
    with ctx.open() as store:
        docs = store.collection("docs")
        ctx.insert(docs, "a", A2)
        ctx.insert(docs, "a", A2)
        ctx.insert(docs, "later", {"n": 99})


def t8_roll(ctx: crashcheck.Ctx) -> None:
    with ctx.open() as store:
        docs = store.collection("docs")
        for n in range(6):
            ctx.insert(docs, f"r{n}", {"n": n, "pad": "p" * 200})


def t8_create(ctx: crashcheck.Ctx) -> None:
    store = ctx.try_create() or ctx.try_create()
    assert store is not None
    with store:
        docs = ctx.collection(store, "docs")
        ctx.insert(docs, "a", A1)


SYNC_CASES = [
    SyncCase("pack fdatasync, new id", r"objects/pack-", t8_insert_new),
    SyncCase("pack fdatasync, replace", r"objects/pack-", t8_replace),
    SyncCase(
        "pack fdatasync, then every call",
        r"objects/pack-",
        t8_second_handle,
        rest_fail=True,
    ),
    SyncCase(
        "new pack fsync (roll)",
        r"objects/pack-00000002",
        t8_roll,
        patches=((journal, "PACK_LIMIT", 1200),),
    ),
    SyncCase(
        "objects folder fsync (roll)",
        r"objects$",
        t8_roll,
        patches=((journal, "PACK_LIMIT", 1200),),
    ),
    SyncCase(
        "ref table temp fsync (checkpoint)",
        r"refs/\.table\.",
        t8_insert_new,
        must_fail=False,
        patches=((engine, "CHECKPOINT_MIN_TAIL", 1),),
    ),
    SyncCase("config temp fsync", r"\.sentinel\.json\.", t8_create, None),
    SyncCase("new store folder's parent fsync", r"^$", t8_create, None),
    SyncCase("objects folder fsync (creation)", r"objects$", t8_create, None),
]


@pytest.mark.parametrize("case", SYNC_CASES, ids=lambda c: c.name)
def test_fsync_failure_is_final(
    case: SyncCase, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T8: EIO from one fsync/fdatasync.  The call that needed it
    raises; nothing is retried into a success; the next calls work; and
    a power loss at the end (unsynced bytes and names dropped, or a
    process crash) keeps every acknowledged write and no failed one."""
    for module, name, value in case.patches:
        monkeypatch.setattr(module, name, value)
    base = tmp_path / "base"
    base.mkdir()
    root = str(base / crashcheck.STORE)
    pre = crashcheck.Ctx(root, None)
    if case.setup is not None:
        case.setup(pre)
    pattern = re.compile(case.target)
    state = {"fired": 0, "failing": False}

    def sync_fault(path: str, ordinal: int) -> bool:
        rel = path[len(crashcheck.STORE) + 1 :] if path else path
        if state["fired"] or not pattern.search(rel):
            return False
        state["fired"] = len(crash.ops) + 1
        state["failing"] = case.rest_fail
        return True

    def hook(op: str, path: str | None) -> None:
        # The device fails: every I/O call, not lock or close calls.
        if state["failing"] and op not in ("flock", "close"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)

    crash = CrashOS(base, sync_fault=sync_fault)
    ctx = crashcheck.Ctx(root, crash)
    original_mark = crash.mark

    def mark(label: str, payload: Any = None) -> None:
        # The faults stop with the end of the operation that met them.
        if label in ("ack", "fail"):
            state["failing"] = False
        original_mark(label, payload)

    crash.mark = mark  # type: ignore[method-assign]
    previous = fs.install(FaultOS(base=crash, hook=hook))
    try:
        case.workload(ctx)
    finally:
        fs.install(previous)
    trace = crash.trace()
    recording = crashcheck.Recording(trace, pre.events)
    ops = crashcheck.operations(recording)
    assert state["fired"], "the sync fault never fired"
    fired = state["fired"]
    met = [
        o
        for o in ops
        if o.begin >= 0 and o.begin < fired <= (o.end or len(trace.ops))
    ]
    false_successes = sum(not o.failed for o in met) if case.must_fail else 0
    findings = crashcheck.Findings()
    point = len(trace.ops)
    exp, _key = crashcheck.expected(ops, point)
    images = 0
    for crash_state in crash_states(
        trace, points=[point], modes=("drop", "keep")
    ):
        images += 1
        folder = tmp_path / f"image{images}"
        folder.mkdir()
        materialize(crash_state.image, folder)
        found = crashcheck.check_image(str(folder / crashcheck.STORE), exp)
        findings.losses += found.losses
        findings.violations += found.violations
    figures.record(
        "fsync-failure",
        zero=("false successes", "durability losses", "violations"),
        cases=1,
        images=images,
        **{
            "false successes": false_successes,
            "durability losses": len(findings.losses),
            "violations": len(findings.violations),
        },
    )
    assert met, "no operation met the failed sync"
    assert not false_successes, f"returned after a failed sync: {met}"
    assert not findings.bad, findings


# -- T2: a kill at every file operation ---------------------------------------


def kill_trial(
    case: Case, template: Template, work: str, at: int, tally: Tally
) -> bool:
    """Fork; in the child, run `case` with ``os._exit(137)`` at call
    `at`; check the store left behind.  Return whether the child died
    (False: the call completed first)."""
    folder = os.path.join(work, f"kill-{at}")
    root = os.path.join(folder, "store")
    if case.fresh:
        os.makedirs(folder)
    else:
        shutil.copytree(template.root, root)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            subject = case.setup(root)
            fs.install(FaultOS(at, Fault("exit"), base=fs.current()))
            case.run(subject)
        except BaseException:
            code = 1
        os._exit(code)
    code = os.waitstatus_to_exitcode(crashcheck.wait_child(pid))
    where = f"{case.name}, killed at call {at}"
    before = {"collections": []} if case.fresh else template.view
    try:
        if code not in (0, 137):
            tally.bad("violations", f"{where}: the child failed ({code})")
            return False
        with sentinel.Store.new(case.path(root)) as store:
            view = observe(store)
            view.pop("docs/next", None)
            view.pop("docs/next history", None)
            if view != before and without_hashes(view) != case.after(before):
                tally.bad("violations", f"{where}: state {view}")
            report = store.verify()
            if not report.ok:
                tally.bad("violations", f"{where}: {report.problems}")
            next_call(Subject(case.path(root), store))
        with sentinel.Store.new(case.path(root)) as store:
            if not store.verify().ok:
                tally.bad("violations", f"{where}: verify after the next call")
    except Exception as exc:
        tally.bad("violations", f"{where}: {exc!r}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return code == 137


@pytest.mark.parametrize("name", list(CASES))
def test_kill_at_every_operation(
    name: str, template: Template, tmp_path: pathlib.Path
) -> None:
    """T2: the process dies (``os._exit(137)``) at file operation k, for
    k = 1, 2, ... until the call completes: the store holds the state
    before or after the call, verifies, and takes the next write."""
    case, tally = CASES[name], Tally()
    points = 0
    while kill_trial(case, template, str(tmp_path), points + 1, tally):
        points += 1
        assert points < MAX_POINTS
    figures.record(
        "whitebox crash points",
        zero=("violations",),
        points=points,
        violations=tally.counts["violations"],
    )
    assert points > 0
    assert not tally.counts, tally.report()
