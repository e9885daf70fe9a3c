"""Batches under SIGKILL, and read-modify-write between processes.

Batch crash trials: a forked child commits store-wide batches forever,
each writing the same 20 documents (10 in each of two collections) with
the batch number in every one, and reports ``ack K`` once batch K has
returned.  The parent kills it with SIGKILL after a random (seeded)
delay, reopens the store and checks that every batch is all or nothing:
the 20 documents carry one batch number B, each at version B (every
committed batch adds one version to each), and every acknowledged batch
is at most B.  At the end of each store's run, the whole history of
every document must read 1, 2, ..., B, and every frame of the ref log
must move all 20 documents.  200 trials by default, 2000 with --slow.

CAS counter: several processes increment one counter document with
get -> insert(expected_hash=...) and retry on ConflictError.  The final
value must equal the number of acknowledged increments, each value from
1 to that number must be acknowledged exactly once, and the document's
version must be one more than the increments.
"""

from __future__ import annotations

import collections
import os
import pathlib
import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import figures
import pytest

import sentinel

COLLECTIONS = ("alpha", "beta")
PER_COLLECTION = 10
DOC_IDS = tuple(f"d{j:02d}" for j in range(PER_COLLECTION))
BATCH_SIZE = len(COLLECTIONS) * PER_COLLECTION
TRIALS = 200
SLOW_TRIALS = 2000
TRIALS_PER_STORE = 50
# The longest a child runs before the kill; batches take a millisecond
# or two, so a trial sees up to a few dozen batches, and the kill lands
# anywhere in the commit path.
MAX_DELAY = 0.05
# A child that is never killed stops by itself after this long.
CHILD_LIMIT = 60.0


def _emit(fd: int, line: str) -> None:
    """One line in one write, so the parent never sees half of it."""
    os.write(fd, (line + "\n").encode())


def _run_child(work: Callable[[int], None], out: int) -> None:
    """Run `work(out)` in a forked child and never return to pytest."""
    code = 0
    try:
        work(out)
    except BaseException as exc:  # reported to the parent, then exit
        try:
            _emit(out, f"error {type(exc).__name__}: {exc}")
        finally:
            code = 3
    finally:
        os._exit(code)


def _fork(work: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child running `work(write_fd)`; return (pid, read_fd)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        _run_child(work, write_fd)
    os.close(write_fd)
    return pid, read_fd


# -- batch crash trials ----------------------------------------------------


def batch_data(batch: int, j: int) -> dict[str, Any]:
    return {"batch": batch, "j": j, "pad": "p" * ((batch * 37 + j * 11) % 400)}


def batch_writer(path: str, start: int, out: int) -> None:
    """Commit batches start, start + 1, ... until killed."""
    store = sentinel.Store.new(path)
    _emit(out, "ready")
    deadline = time.monotonic() + CHILD_LIMIT
    number = start
    while time.monotonic() < deadline:
        with store.batch() as batch:
            for j, doc_id in enumerate(DOC_IDS):
                batch.insert("alpha", doc_id, batch_data(number, j))
                batch.upsert("beta", doc_id, batch_data(number, j))
        _emit(out, f"ack {number}")
        number += 1


class Tally:
    """What the trials found.  Partial and lost batches are sets of
    "store#batch" names, so a batch seen twice is counted once."""

    def __init__(self) -> None:
        self.trials = 0
        self.acked = 0
        self.partial: set[str] = set()
        self.lost: set[str] = set()
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def committed_batch(path: pathlib.Path, tally: Tally) -> int:
    """Reopen the store and return the newest batch number B found
    (0 before the first batch); B must be on all 20 documents, and
    every document's version must equal its batch number."""
    with sentinel.Store.new(path) as store:
        found = [
            store.collection(name).get(doc_id)
            for name in COLLECTIONS
            for doc_id in DOC_IDS
        ]
    present = [doc for doc in found if doc is not None]
    if not present:
        return 0
    newest = max(doc.data["batch"] for doc in present)
    on_newest = [doc for doc in present if doc.data["batch"] == newest]
    consistent = all(
        doc.version == doc.data["batch"]
        and doc.data == batch_data(doc.data["batch"], doc.data["j"])
        for doc in present
    )
    if len(on_newest) != BATCH_SIZE or not consistent:
        tally.partial.add(f"{path}#{newest}")
        tally.problem(
            f"{path}: batch {newest} on {len(on_newest)} of {BATCH_SIZE} "
            f"documents; versions {sorted(d.version for d in present)}"
        )
    return newest


def crash_trial(
    path: pathlib.Path, start: int, rng: random.Random
) -> list[int]:
    """Run one child, kill it, return the batch numbers it acknowledged."""
    pid, read_fd = _fork(lambda out: batch_writer(os.fspath(path), start, out))
    with os.fdopen(read_fd, "rb") as reader:
        first = reader.readline()
        if first == b"ready\n":
            time.sleep(
                0.0 if rng.random() < 0.1 else rng.uniform(0, MAX_DELAY)
            )
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        rest = reader.read().decode()
    assert first == b"ready\n", f"child failed to start: {first!r} {rest}"
    assert os.WIFSIGNALED(status), f"child ended early: {rest}"
    assert os.WTERMSIG(status) == signal.SIGKILL
    lines = rest.splitlines()
    # the last line may be cut by the kill only if it was never written
    # whole; os.write of a short line is atomic on a pipe
    assert all(line.startswith("ack ") for line in lines), lines[-3:]
    acked = [int(line.split()[1]) for line in lines]
    assert acked == list(range(start, start + len(acked)))
    return acked


def check_whole_history(path: pathlib.Path, last: int, tally: Tally) -> None:
    """Every batch 1..last is in the history of all 20 documents, every
    frame of the log moves all 20 documents, and the store verifies."""
    everything = sorted(
        f"{name}/{doc_id}" for name in COLLECTIONS for doc_id in DOC_IDS
    )
    counts: collections.Counter[int] = collections.Counter()
    with sentinel.Store.new(path) as store:
        for name in COLLECTIONS:
            collection = store.collection(name)
            for doc_id in DOC_IDS:
                history = list(reversed(collection.history(doc_id)))
                numbers = [doc.data["batch"] for doc in history]
                counts.update(numbers)
                if numbers != [doc.version for doc in history]:
                    tally.problem(f"{name}/{doc_id} history {numbers[:8]}")
        for number in range(1, last + 1):
            if counts[number] == 0:
                tally.lost.add(f"{path}#{number}")
            elif counts[number] != BATCH_SIZE:
                tally.partial.add(f"{path}#{number}")
        beyond = [number for number in counts if not 1 <= number <= last]
        if beyond:
            tally.problem(f"{path}: unexpected batches {beyond[:5]}")
        frames: dict[tuple[int, int], list[str]] = collections.defaultdict(
            list
        )
        for entry in store.log():
            if entry.id is not None:
                frames[(entry.pack, entry.offset)].append(
                    f"{entry.collection}/{entry.id}"
                )
        torn = [
            p for p, moved in frames.items() if sorted(moved) != everything
        ]
        if torn:
            tally.problem(f"{path}: {len(torn)} frames move a partial batch")
        if len(frames) != last:
            tally.problem(f"{path}: {len(frames)} frames, {last} batches")
        report = store.verify()
        assert report.ok, report.problems


def test_batch_atomicity_under_sigkill(
    tmp_path: pathlib.Path, slow: bool
) -> None:
    trials = SLOW_TRIALS if slow else TRIALS
    rng = random.Random(20240603)
    tally = Tally()
    for first in range(0, trials, TRIALS_PER_STORE):
        path = tmp_path / f"store-{first // TRIALS_PER_STORE}"
        with sentinel.Store.new(path) as store:
            for name in COLLECTIONS:
                store.collection(name)
        last = 0
        for _ in range(min(TRIALS_PER_STORE, trials - first)):
            acked = crash_trial(path, last + 1, rng)
            tally.trials += 1
            tally.acked += len(acked)
            last = committed_batch(path, tally)
            lost = [number for number in acked if number > last]
            tally.lost.update(f"{path}#{number}" for number in lost)
            if lost:
                tally.problem(f"{path}: acked {lost} but store is at {last}")
        check_whole_history(path, last, tally)
    figures.record(
        "batch crash trials (SIGKILL)",
        zero=("partial batches", "lost batches"),
        trials=tally.trials,
        **{
            "acknowledged batches": tally.acked,
            "partial batches": len(tally.partial),
            "lost batches": len(tally.lost),
        },
    )
    assert tally.problems == []
    assert sorted(tally.partial) == [] and sorted(tally.lost) == []
    assert tally.trials == trials
    # the kills landed while batches were being written
    assert tally.acked > trials


# -- CAS counter -----------------------------------------------------------


def cas_worker(path: str, threads: int, increments: int, out: int) -> None:
    """Each thread increments the counter `increments` times, retrying
    on conflict, and acks each value it wrote."""
    store = sentinel.Store.new(path)
    counter = store.collection("cas")
    failures: list[BaseException] = []

    def loop() -> None:
        done = conflicts = 0
        try:
            while done < increments:
                doc = counter.get("counter")
                assert doc is not None
                try:
                    written = counter.insert(
                        "counter",
                        {"n": doc.data["n"] + 1},
                        expected_hash=doc.hash,
                    )
                except sentinel.ConflictError:
                    conflicts += 1
                    continue
                done += 1
                _emit(out, f"ack {written.data['n']} {written.version}")
            _emit(out, f"conflicts {conflicts}")
        except BaseException as exc:
            failures.append(exc)

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    store.close()
    if failures:
        raise failures[0]


@pytest.mark.parametrize(
    "processes, threads", [(2, 1), (3, 1), (4, 1), (2, 3)]
)
def test_cas_counter(
    tmp_path: pathlib.Path, processes: int, threads: int
) -> None:
    path = tmp_path / "store"
    increments = 40
    with sentinel.Store.new(path) as store:
        store.collection("cas").insert("counter", {"n": 0})

    children = [
        _fork(
            lambda out: cas_worker(os.fspath(path), threads, increments, out)
        )
        for _ in range(processes)
    ]
    outputs: dict[int, list[str]] = {}
    readers = []

    def drain(pid: int, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as reader:
            outputs[pid] = reader.read().decode().splitlines()

    for pid, read_fd in children:
        reader = threading.Thread(target=drain, args=(pid, read_fd))
        reader.start()
        readers.append(reader)
    for reader in readers:
        reader.join()
    statuses = {pid: os.waitpid(pid, 0)[1] for pid, _ in children}

    acked: list[int] = []
    versions: list[int] = []
    conflicts = 0
    for pid, lines in outputs.items():
        assert os.WIFEXITED(statuses[pid]), lines[-3:]
        assert os.WEXITSTATUS(statuses[pid]) == 0, lines[-3:]
        for line in lines:
            kind, *values = line.split()
            if kind == "ack":
                acked.append(int(values[0]))
                versions.append(int(values[1]))
            elif kind == "conflicts":
                conflicts += int(values[0])
            else:
                pytest.fail(f"child {pid}: {line}")

    with sentinel.Store.new(path) as store:
        final = store.collection("cas").get("counter")
        assert final is not None
        history = store.collection("cas").history("counter")
    value = int(final.data["n"])
    figures.record(
        "CAS counter",
        zero=("lost increments",),
        processes=processes,
        **{
            "increments acked": len(acked),
            "final counter": value,
            "lost increments": len(acked) - value,
            "conflicts retried": conflicts,
        },
    )
    assert len(acked) == processes * threads * increments
    assert value == len(acked)
    assert final.version == 1 + len(acked)
    # every value was written by exactly one increment, at the version
    # one above it
    assert sorted(acked) == list(range(1, len(acked) + 1))
    assert versions == [value + 1 for value in acked]
    assert [doc.data["n"] for doc in reversed(history)] == list(
        range(len(acked) + 1)
    )
