"""Recorded workloads and the power-loss checker (T3), shared by the
power-loss and mutant tests.

A workload runs in a forked child under `faultfs.CrashOS`, so that the
temp files it leaves carry the pid of a process that is gone, as after a
real power loss and reboot.  It marks each operation it starts ("begin"),
each that returned ("ack") and each that raised ("fail").  The parent
replays the trace, builds every crash image, opens each with
`Store.new` and checks it against what had been acknowledged:

- the image opens (a crash before the config exists leaves a half-made
  store that `Store.new` finishes creating);
- every acknowledged write is there with its exact version, data and
  hash, and its history reads back (else a *durability loss*);
- nothing else: each document is at its last acknowledged version, or at
  the version the operation in flight at the crash would have made; a
  failed operation is never visible; collections likewise;
- `verify()` finds no problem (a torn tail is allowed);
- the next write works, and after it the pack holds no torn bytes
  (recovery cut or zeroed them), `verify()` is still clean, and the
  write reads back after a reopen.

Any failure other than a durability loss is a *violation*.
"""

from __future__ import annotations

import base64
import os
import pickle
import random
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sentinel
from sentinel import config, engine, fs, journal

from .faultfs import (
    CrashOS,
    CrashState,
    DiskModel,
    FaultOS,
    Trace,
    crash_states,
    materialize,
)

STORE = "store"
# A recorded workload that runs longer than this has hung.
CHILD_LIMIT = 120.0


# -- workloads ---------------------------------------------------------------


class Ctx:
    """What a workload uses: the store path and marked operations."""

    def __init__(self, root: str, crash: CrashOS | None) -> None:
        self.root = root
        self.crash = crash
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.count = 0
        self._lock = threading.Lock()

    def _mark(self, label: str, payload: dict[str, Any]) -> None:
        if self.crash is not None:
            self.crash.mark(label, payload)
        else:
            self.events.append((label, payload))

    def _begin(self, **op: Any) -> int:
        with self._lock:
            self.count += 1
            index = self.count if self.crash is not None else -self.count
            self._mark("begin", {"i": index, **op})
            return index

    def create(self) -> sentinel.Store:
        """`Store.new` of a store that does not exist yet."""
        index = self._begin(op="create")
        store = sentinel.Store.new(self.root)
        self._mark("ack", {"i": index})
        return store

    def try_create(self) -> sentinel.Store | None:
        """`create`, with a `SentinelError` marked as a failure."""
        index = self._begin(op="create")
        try:
            store = sentinel.Store.new(self.root)
        except sentinel.SentinelError as exc:
            self._mark("fail", {"i": index, "error": repr(exc)})
            return None
        self._mark("ack", {"i": index})
        return store

    def open(self) -> sentinel.Store:
        return sentinel.Store.new(self.root)

    def collection(
        self, store: sentinel.Store, name: str
    ) -> sentinel.Collection:
        index = self._begin(op="collection", coll=name)
        found = store.collection(name)
        self._mark("ack", {"i": index})
        return found

    def insert(
        self, coll: sentinel.Collection, doc_id: str, data: dict[str, Any]
    ) -> sentinel.Document | None:
        """Insert; a `SentinelError` is marked as a failure and swallowed
        (the workload goes on, as a caller that handles it would)."""
        index = self._begin(
            op="insert", coll=coll.name(), id=doc_id, data=data
        )
        try:
            doc = coll.insert(doc_id, data)
        except sentinel.SentinelError as exc:
            self._mark("fail", {"i": index, "error": repr(exc)})
            return None
        self._mark(
            "ack", {"i": index, "version": doc.version, "hash": doc.hash}
        )
        return doc


Workload = Callable[[Ctx], None]


def blob(seed: int, size: int) -> str:
    """An incompressible string, so a frame spans many sectors."""
    raw = random.Random(seed).randbytes(size)
    return base64.b64encode(raw).decode()


def doc(n: int, pad: int = 0) -> dict[str, Any]:
    return {"n": n, "name": f"document {n}", "pad": "x" * pad}


def setup_two_docs(ctx: Ctx) -> None:
    with ctx.create() as store:
        docs = ctx.collection(store, "docs")
        ctx.insert(docs, "a", doc(1))
        ctx.insert(docs, "b", doc(2))


def w_create(ctx: Ctx) -> None:
    """Create a store, a collection, and insert the first document."""
    with ctx.create() as store:
        docs = ctx.collection(store, "docs")
        ctx.insert(docs, "a", doc(1))


def w_updates(ctx: Ctx) -> None:
    """New ids and replacements, one frame large enough to tear."""
    with ctx.open() as store:
        docs = store.collection("docs")
        ctx.insert(docs, "c", doc(3))
        ctx.insert(docs, "a", doc(11))
        ctx.insert(docs, "a", {"n": 12, "blob": blob(12, 6000)})
        ctx.insert(docs, "d", doc(4, pad=200))
        ctx.insert(docs, "b", doc(21))


def w_roll(ctx: Ctx) -> None:
    """Enough writes with a small pack limit for several pack rolls."""
    journal.PACK_LIMIT = 1500
    with ctx.open() as store:
        docs = store.collection("docs")
        for n in range(7):
            ctx.insert(docs, "abcdefg"[n % 3], doc(100 + n, pad=150))


def w_checkpoint(ctx: Ctx) -> None:
    """Writes with a tiny checkpoint threshold: the ref table is written
    (and replaced) after most of them."""
    engine.CHECKPOINT_MIN_TAIL = 1
    with ctx.open() as store:
        docs = store.collection("docs")
        for n in range(4):
            ctx.insert(docs, "ab"[n % 2] if n < 2 else f"id{n}", doc(200 + n))


def w_collections(ctx: Ctx) -> None:
    """Several collections created and written in turn."""
    with ctx.open() as store:
        first = ctx.collection(store, "first")
        second = ctx.collection(store, "second")
        docs = store.collection("docs")
        ctx.insert(first, "x", doc(300))
        ctx.insert(second, "x", doc(301))
        ctx.insert(docs, "a", doc(302))
        third = ctx.collection(store, "third")
        ctx.insert(third, "y", doc(303))
        ctx.insert(first, "x", doc(304))


def w_fsync_failure(ctx: Ctx) -> None:
    """The first pack sync fails (see `FAIL_FIRST_PACK_SYNC`): that insert
    must raise and stay invisible; the next ones must work."""
    with ctx.open() as store:
        docs = store.collection("docs")
        ctx.insert(docs, "a", doc(400))
        ctx.insert(docs, "c", doc(401))
        ctx.insert(docs, "a", doc(402))


def w_group(ctx: Ctx) -> None:
    """A group commit: two writers queue while a third syncs, and the
    next leader appends both frames with one write and one sync."""
    with ctx.open() as store:
        docs = store.collection("docs")
        engine_ = store._engine
        in_sync, release = threading.Event(), threading.Event()

        def hook(op: str, path: str | None) -> None:
            if (
                op == "fdatasync"
                and threading.current_thread().name == "leader"
                and not in_sync.is_set()
            ):
                in_sync.set()
                release.wait(10)

        assert ctx.crash is not None
        previous = fs.install(FaultOS(base=ctx.crash, hook=hook))
        try:
            leader = threading.Thread(
                target=ctx.insert, args=(docs, "g1", doc(501)), name="leader"
            )
            leader.start()
            in_sync.wait(10)
            # Frames of over 4 KiB: each of the group's frames starts on
            # a page of its own.
            others = [
                threading.Thread(
                    target=ctx.insert,
                    args=(docs, f"g{n}", {"n": n, "blob": blob(n, 4000)}),
                )
                for n in (2, 3)
            ]
            for thread in others:
                thread.start()
            deadline = time.monotonic() + 10
            # Both must be queued behind the leader (`_pending` is the
            # engine's queue; without it, give them time to queue).
            while time.monotonic() < deadline:
                queued = getattr(engine_, "_pending", None)
                if queued is None:
                    time.sleep(0.2)
                    break
                if len(queued) >= 2:
                    break
                time.sleep(0.001)
            release.set()
            for thread in [leader, *others]:
                thread.join(10)
        finally:
            fs.install(previous)
        ctx.insert(docs, "g4", doc(504))


def w_long(ctx: Ctx) -> None:
    """The slow tier's workload: two collections, replacements, pack
    rolls and checkpoints mixed over two dozen writes."""
    journal.PACK_LIMIT = 2500
    engine.CHECKPOINT_MIN_TAIL = 1500
    with ctx.open() as store:
        colls = [store.collection("docs"), ctx.collection(store, "more")]
        for n in range(24):
            ctx.insert(
                colls[n % 2], f"k{n % 5}", doc(600 + n, pad=(n * 37) % 400)
            )


def fail_first_pack_sync(path: str, ordinal: int) -> bool:
    return path.startswith("store/objects/") and ordinal == 1


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: Workload
    setup: Workload | None = None
    sync_fault: Callable[[str, int], bool] | None = None


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("create store + first insert", w_create),
        Scenario("inserts and replaces", w_updates, setup_two_docs),
        Scenario("pack rolls", w_roll, setup_two_docs),
        Scenario("checkpoints", w_checkpoint, setup_two_docs),
        Scenario("collections", w_collections, setup_two_docs),
        Scenario("group commit", w_group, setup_two_docs),
        Scenario(
            "fsync failure",
            w_fsync_failure,
            setup_two_docs,
            fail_first_pack_sync,
        ),
    )
}


# Run only with --slow.
SLOW_SCENARIOS = {
    s.name: s for s in (Scenario("long mixed", w_long, setup_two_docs),)
}


# -- recording in a child ----------------------------------------------------


@dataclass
class Recording:
    trace: Trace
    pre_events: list[tuple[str, dict[str, Any]]]


def record(scenario: Scenario, base: str) -> Recording:
    """Run the scenario's setup here and its workload in a forked child
    under `CrashOS`; return the trace."""
    root = os.path.join(base, STORE)
    pre = Ctx(root, None)
    if scenario.setup is not None:
        scenario.setup(pre)
    out = os.path.join(base, ".trace.pickle")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            crash = CrashOS(base, sync_fault=scenario.sync_fault)
            previous = fs.install(crash)
            try:
                scenario.workload(Ctx(root, crash))
            finally:
                fs.install(previous)
            result: Any = crash.trace()
        except BaseException:
            result = traceback.format_exc()
            code = 1
        try:
            with open(out, "wb") as handle:
                pickle.dump(result, handle)
        finally:
            os._exit(code)
    status = wait_child(pid)
    with open(out, "rb") as handle:
        result = pickle.load(handle)
    os.unlink(out)
    if not isinstance(result, Trace):
        raise AssertionError(
            f"the workload failed (status {status}):\n{result}"
        )
    return Recording(result, pre.events)


def wait_child(pid: int, limit: float = CHILD_LIMIT) -> int:
    """Wait for child `pid`; kill it (by its pid) if it runs past
    `limit` seconds, so a hung workload fails the test instead of
    hanging the run.  Return its wait status."""
    deadline = time.monotonic() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the workload hung for {limit} s")
        time.sleep(0.005)


# -- expectations ------------------------------------------------------------


@dataclass
class Operation:
    index: int
    op: str
    coll: str | None = None
    id: str | None = None
    data: dict[str, Any] | None = None
    begin: int = -1
    end: int | None = None
    failed: bool = False
    version: int | None = None
    hash: str | None = None


def operations(recording: Recording) -> list[Operation]:
    """The workload's operations, setup first (positions -1: done before
    the trace began)."""
    found: dict[int, Operation] = {}
    events = [(-1, label, p) for label, p in recording.pre_events] + [
        (m.position, m.label, m.payload) for m in recording.trace.marks
    ]
    for position, label, payload in events:
        index = payload["i"]
        if label == "begin":
            found[index] = Operation(
                index,
                payload["op"],
                payload.get("coll"),
                payload.get("id"),
                payload.get("data"),
                begin=position,
            )
            continue
        operation = found[index]
        operation.end = position
        if label == "fail":
            operation.failed = True
        else:
            operation.version = payload.get("version")
            operation.hash = payload.get("hash")
    return sorted(found.values(), key=lambda o: (o.begin, abs(o.index)))


@dataclass
class Expected:
    """What a crash after `point` operations must leave."""

    store: bool = False
    docs: dict[tuple[str, str], Operation | None] = field(default_factory=dict)
    flights: list[Operation] = field(default_factory=list)
    collections: set[str] = field(default_factory=set)
    maybe_collections: set[str] = field(default_factory=set)
    versions: dict[tuple[str, str], dict[int, Operation]] = field(
        default_factory=dict
    )


def status(operation: Operation, point: int) -> str:
    if operation.begin >= point and operation.begin >= 0:
        return "not started"
    if operation.end is not None and (operation.end <= point):
        return "failed" if operation.failed else "acked"
    return "in flight"


def expected(ops: list[Operation], point: int) -> tuple[Expected, tuple]:
    """The expectation at `point`, and a key equal for equal ones."""
    exp = Expected()
    key = []
    for operation in ops:
        state = status(operation, point)
        key.append(state)
        if operation.op == "insert":
            slot = (operation.coll or "", operation.id or "")
            exp.docs.setdefault(slot, None)
        if state == "acked":
            if operation.op == "create":
                exp.store = True
            elif operation.op == "collection":
                exp.collections.add(operation.coll or "")
            else:
                slot = (operation.coll or "", operation.id or "")
                exp.docs[slot] = operation
                exp.collections.add(operation.coll or "")
                version = operation.version or 0
                exp.versions.setdefault(slot, {})[version] = operation
        elif state == "in flight":
            exp.flights.append(operation)
            if operation.coll:
                exp.maybe_collections.add(operation.coll)
    return exp, tuple(key)


# -- the checker --------------------------------------------------------------


@dataclass
class Findings:
    losses: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        return bool(self.losses or self.violations)


def _check_doc(
    store: sentinel.Store,
    names: set[str],
    slot: tuple[str, str],
    exp: Expected,
    found: Findings,
) -> None:
    coll, doc_id = slot
    acked = exp.docs.get(slot)
    flight = next(
        (
            f
            for f in exp.flights
            if f.op == "insert" and (f.coll, f.id) == slot
        ),
        None,
    )
    got = store.collection(coll).get(doc_id) if coll in names else None
    where = f"{coll}/{doc_id}"
    if got is None:
        if acked is not None:
            found.losses.append(f"{where}: acknowledged v{acked.version} lost")
        return
    if acked is not None and got.version < (acked.version or 0):
        found.losses.append(
            f"{where}: v{got.version} found, v{acked.version} acknowledged"
        )
        return
    if acked is not None and got.version == acked.version:
        if got.data != acked.data or got.hash != acked.hash:
            found.violations.append(f"{where}: v{got.version} has wrong data")
            return
    elif flight is not None:
        want = (acked.version or 0) + 1 if acked is not None else 1
        if got.version != want or got.data != flight.data:
            found.violations.append(
                f"{where}: v{got.version} {got.data!r} is neither the "
                f"acknowledged state nor the write in flight"
            )
            return
    else:
        found.violations.append(
            f"{where}: v{got.version} present, but "
            + (
                f"only v{acked.version} was acknowledged"
                if acked is not None
                else "it was never acknowledged"
            )
        )
        return
    history = store.collection(coll).history(doc_id)
    if [d.version for d in history] != list(range(got.version, 0, -1)):
        found.violations.append(f"{where}: history is broken")
        return
    for old in history[1:]:
        known = exp.versions.get(slot, {}).get(old.version)
        if known is not None and old.data != known.data:
            found.violations.append(f"{where}: v{old.version} has wrong data")


def check_image(root: str, exp: Expected) -> Findings:
    """Open the store in folder `root` (an image) and check it."""
    found = Findings()
    if exp.store and not os.path.exists(config.path_of(root)):
        found.losses.append("acknowledged store creation lost (no config)")
    try:
        store = sentinel.Store.new(root)
    except Exception as exc:
        found.violations.append(f"open failed: {exc!r}")
        return found
    try:
        names = set(store.list_collections())
        for name in sorted(exp.collections - names):
            found.losses.append(f"acknowledged collection {name} lost")
        allowed = exp.collections | exp.maybe_collections
        for name in sorted(names - allowed):
            found.violations.append(f"collection {name} was never created")
        for slot in sorted(exp.docs):
            _check_doc(store, names, slot, exp, found)
        report = store.verify()
        if not report.ok:
            found.violations.append(f"verify: {report.problems}")
        recovery = store.collection("recovery")
        recovery.insert("r", {"after": "crash"})
        got = recovery.get("r")
        if got is None or got.data != {"after": "crash"}:
            found.violations.append("the first write after the crash is lost")
        report = store.verify()
        if not report.ok or report.torn_tail_bytes:
            found.violations.append(
                f"after a write, {report.torn_tail_bytes} torn tail bytes "
                f"and problems {report.problems}"
            )
    except Exception as exc:
        found.violations.append(f"{type(exc).__name__}: {exc}")
        return found
    finally:
        store.close()
    try:
        with sentinel.Store.new(root) as again:
            got = again.collection("recovery").get("r")
            if got is None or got.data != {"after": "crash"}:
                found.violations.append("the write after the crash vanished")
            if not again.verify().ok:
                found.violations.append("verify fails after reopening")
    except Exception as exc:
        found.violations.append(f"reopen failed: {exc!r}")
    return found


# -- exploration --------------------------------------------------------------


@dataclass
class Exploration:
    scenario: str
    ops: int = 0
    points: int = 0
    states: int = 0
    checked: int = 0
    losses: int = 0
    violations: int = 0
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (
            f"{self.scenario}: {self.ops} ops, {self.checked} images "
            f"checked, {self.losses} durability losses, "
            f"{self.violations} violations"
        )
        return "\n  ".join([head, *self.examples])


# Power-loss models: writes that reach the disk in the order they were
# made (or not at all), and writes whose pages reach it in any order.
MODELS: dict[str, tuple[str, ...]] = {
    "in-order": ("drop", "zero", "garbage", "torn", "keep"),
    "reordered pages": ("pages",),
}


def states_of(
    recording: Recording, modes: tuple[str, ...], *, slow: bool, seed: int
) -> Iterator[CrashState]:
    return crash_states(
        recording.trace,
        modes=modes,
        samples=256 if slow else 32,
        draws=8 if slow else 2,
        seed=seed,
    )


def explore(
    scenario: Scenario,
    work: str,
    modes: tuple[str, ...] = MODELS["in-order"],
    *,
    slow: bool = False,
    stop_early: bool = False,
    seeds: int = 1,
) -> Exploration:
    """Record `scenario` and check every distinct crash image."""
    result = Exploration(scenario.name)
    base = os.path.join(work, "base")
    os.makedirs(base)
    recording = record(scenario, base)
    result.ops = len(recording.trace.ops)
    ops = operations(recording)
    seen: set[tuple[bytes, tuple]] = set()
    points: set[int] = set()
    images = tempfile.mkdtemp(dir=work)
    for seed in range(seeds):
        for state in states_of(recording, modes, slow=slow, seed=seed):
            result.states += 1
            exp, key = expected(ops, state.point)
            if (state.digest, key) in seen:
                continue
            seen.add((state.digest, key))
            points.add(state.point)
            result.checked += 1
            folder = os.path.join(images, str(result.checked))
            os.makedirs(folder)
            materialize(state.image, folder)
            found = check_image(os.path.join(folder, STORE), exp)
            shutil.rmtree(folder)
            result.losses += bool(found.losses)
            result.violations += bool(found.violations)
            if found.bad and len(result.examples) < 6:
                result.examples.append(
                    f"{state.describe(recording.trace)}: "
                    + "; ".join(found.losses + found.violations)
                )
            if found.bad and stop_early:
                result.points = len(points)
                return result
    result.points = len(points)
    return result


# -- protocol order (T4) ------------------------------------------------------

_PACK = re.compile(r"(?:.*/)?objects/pack-(\d{8})\.pack")


def _seals(data: bytes) -> list[int]:
    """The packs named by seal records in the frames that `data` (one
    write into a pack) starts with."""
    found = []
    for frame in journal.parse_frames(data, 0, 0):
        try:
            for item in journal.records(frame.body, frame.body_offset):
                if item.kind == journal.RECORD_SEAL:
                    found.append(int.from_bytes(item.content, "big"))
        except ValueError:
            pass
    return found


def order_violations(trace: Trace) -> tuple[int, list[str]]:
    """Check the write order of a trace; return (rules checked, broken).

    1. A file or folder is created only in a folder whose own name is
       durable (a new folder's parent was fsynced first).
    2. A rename publishes a file whose bytes are all durable.
    3. A seal (a frame that names the next pack) is written only once
       that pack's name and header are durable.
    4. At every acknowledgement, and at the end, nothing is unsynced.
    """
    model = DiskModel(trace.pre)
    acks = sorted(m.position for m in trace.marks if m.label == "ack")
    checked = 0
    broken: list[str] = []

    def settled(where: str) -> None:
        nonlocal checked
        checked += 1
        for item in model.unsynced():
            broken.append(f"{where}: {item}")

    for index, op in enumerate(trace.ops):
        while acks and acks[0] <= index:
            settled(f"acknowledged after op {acks.pop(0)}")
        where = f"op {index + 1} ({op.describe()})"
        if op.kind in ("create", "mkdir") and "/" in op.path:
            checked += 1
            parent = op.path.rpartition("/")[0]
            if parent not in model.durable:
                broken.append(f"{where}: folder {parent} is not durable")
        elif op.kind == "rename":
            checked += 1
            node = model.nodes[op.ino]
            if node.writes or bytes(node.data) != bytes(node.synced):
                broken.append(f"{where}: renamed before its data is synced")
        elif op.kind == "write" and _PACK.fullmatch(op.path):
            folder = op.path.rpartition("/")[0]
            for number in _seals(op.data):
                checked += 1
                rel = f"{folder}/{journal.pack_name(number)}"
                ino = model.names.get(rel)
                node = model.nodes.get(ino) if ino is not None else None
                if (
                    node is None
                    or model.durable.get(rel) != ino
                    or bytes(node.data) != bytes(node.synced)
                ):
                    broken.append(
                        f"{where}: seal names {rel} before it is durable"
                    )
        model.apply(op)
    settled("at the end")
    while acks:
        settled(f"acknowledged after op {acks.pop(0)}")
    return checked, broken
