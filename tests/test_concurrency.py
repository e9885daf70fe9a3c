"""Threads and processes writing and reading one store at once
(RELIABILITY.md T13 and T14).

Every write is counted where it was acknowledged; afterwards each id's
version must equal the number of writes to it, the versions handed out
must be exactly 1..n (no two writers got the same one), and the history
must hold every acknowledged write once, in a parent chain.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pathlib
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import figures
import pytest
from helpers import writer

import sentinel

WRITERS = 32
PUTS = 250
READERS = 8
IDS = [f"id-{n:02d}" for n in range(50)]
JOIN_TIMEOUT = 120.0


def _record(**counts: int) -> None:
    figures.record(
        "threads/processes",
        zero=("reader errors", "lost updates"),
        **counts,
    )


def check_histories(
    store: sentinel.Store,
    name: str,
    acked: dict[str, list[tuple[Any, ...]]],
    writer_of: Callable[[dict[str, Any]], str] = lambda d: d["writer"],
) -> list[str]:
    """Compare each id's history with its acknowledged writes.

    `acked[id]` lists (writer, seq, version, hash-or-None) per write;
    the writer is whatever identifies a sequential writer (a thread, or
    a process and a thread).  Returns the problems found.
    """
    problems: list[str] = []
    docs = store.collection(name)
    for doc_id, writes in sorted(acked.items()):
        n = len(writes)
        head = docs.get(doc_id)
        if head is None or head.version != n:
            found = None if head is None else head.version
            problems.append(f"{doc_id}: version {found}, {n} writes acked")
        versions = sorted(w[2] for w in writes)
        if versions != list(range(1, n + 1)):
            dupes = [v for v, k in Counter(versions).items() if k > 1]
            problems.append(f"{doc_id}: versions handed out twice: {dupes}")
        history = docs.history(doc_id)
        if [d.version for d in history] != list(range(n, 0, -1)):
            problems.append(f"{doc_id}: history versions are not {n}..1")
            continue
        stored = [(writer_of(d.data), d.data["seq"]) for d in history]
        wanted = [(w[0], w[1]) for w in writes]
        if sorted(stored) != sorted(wanted):
            problems.append(f"{doc_id}: history differs from the acks")
        by_version = {w[2]: w for w in writes}
        for doc in history:
            write = by_version.get(doc.version)
            if write is None:
                continue
            if (writer_of(doc.data), doc.data["seq"]) != write[:2]:
                problems.append(
                    f"{doc_id} v{doc.version}: holds another write than "
                    "the one acknowledged with that version"
                )
            if write[3] is not None and doc.hash != write[3]:
                problems.append(f"{doc_id} v{doc.version}: hash differs")
        # one writer's writes to an id appear in the order it made them
        last: dict[str, int] = {}
        for doc in reversed(history):
            key = writer_of(doc.data)
            if doc.data["seq"] <= last.get(key, -1):
                problems.append(f"{doc_id}: writer {key} out of order")
            last[key] = doc.data["seq"]
        # the parent links chain the versions
        for newer, older in zip(history, history[1:], strict=False):
            payload = store.cat_object(newer.hash)["payload"]
            assert isinstance(payload, dict)
            if payload["parent"] != older.hash:
                problems.append(f"{doc_id} v{newer.version}: bad parent")
        created = {d.created_at for d in history}
        if len(created) != 1:
            problems.append(f"{doc_id}: created_at changed")
        stamps = [d.updated_at for d in reversed(history)]
        if stamps != sorted(stamps):
            problems.append(f"{doc_id}: updated_at went backwards")
    return problems


# -- threads -----------------------------------------------------------------


def test_threads(store: sentinel.Store) -> None:
    docs = store.collection("shared")
    acked: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    acked_lock = threading.Lock()
    writer_errors: list[str] = []
    reader_errors: list[str] = []
    reader_ops = Counter[int]()
    start = threading.Barrier(WRITERS + READERS)
    writers_done = threading.Event()

    def write(thread: int) -> None:
        rng = random.Random(thread)
        start.wait()
        for seq in range(PUTS):
            doc_id = rng.choice(IDS)
            try:
                doc = docs.insert(
                    doc_id, {"writer": f"t{thread}", "seq": seq, "n": seq}
                )
            except Exception as exc:  # counted, then reported
                writer_errors.append(f"t{thread}: {exc!r}")
                continue
            with acked_lock:
                acked[doc_id].append(
                    (f"t{thread}", seq, doc.version, doc.hash)
                )

    def read(reader: int) -> None:
        rng = random.Random(1000 + reader)
        seen: dict[str, int] = {}
        last_count = 0
        start.wait()
        while not writers_done.is_set():
            try:
                doc_id = rng.choice(IDS)
                doc = docs.get(doc_id)
                if doc is not None:
                    if doc.version < seen.get(doc_id, 0):
                        reader_errors.append(
                            f"r{reader}: {doc_id} went back to v{doc.version}"
                        )
                    seen[doc_id] = doc.version
                    data = doc.data
                    if doc.id != doc_id or set(data) != {"writer", "seq", "n"}:
                        reader_errors.append(f"r{reader}: bad doc {data}")
                count = docs.count()
                if not last_count <= count <= len(IDS):
                    reader_errors.append(
                        f"r{reader}: count {count} after {last_count}"
                    )
                last_count = count
                if store.list_collections() != ["shared"]:
                    reader_errors.append(f"r{reader}: bad collection list")
                if rng.random() < 0.05:
                    listed = list(docs.ids())
                    if listed != sorted(listed) or len(listed) < count:
                        reader_errors.append(f"r{reader}: bad ids {listed}")
                reader_ops[reader] += 4
            except Exception as exc:  # a reader must never see an error
                reader_errors.append(f"r{reader}: {exc!r}")

    writers = [
        threading.Thread(target=write, args=(n,), daemon=True)
        for n in range(WRITERS)
    ]
    readers = [
        threading.Thread(target=read, args=(n,), daemon=True)
        for n in range(READERS)
    ]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(JOIN_TIMEOUT)
    writers_done.set()
    for thread in readers:
        thread.join(JOIN_TIMEOUT)
    hung = [t.name for t in writers + readers if t.is_alive()]
    assert hung == [], "threads did not finish (deadlock?)"

    total = sum(len(w) for w in acked.values())
    final = {doc_id: docs.get(doc_id) for doc_id in acked}
    lost = sum(
        len(writes) - (final[doc_id].version if final[doc_id] else 0)
        for doc_id, writes in acked.items()
    )
    problems = check_histories(store, "shared", acked)
    report = store.verify()
    _record(
        threads=WRITERS + READERS,
        ops=total + sum(reader_ops.values()),
        **{
            "reader errors": len(reader_errors),
            "lost updates": abs(lost) + len(problems),
        },
    )
    assert writer_errors == []
    assert total == WRITERS * PUTS
    assert reader_errors == []
    assert lost == 0
    assert problems == []
    assert report.ok, report.problems
    assert report.objects == total
    assert report.refs == len(acked)
    assert docs.count() == len(acked)


def test_threads_on_two_handles(store_path: pathlib.Path) -> None:
    """Two `Store` handles in one process take turns through the file
    lock as two processes would."""
    handles = [sentinel.Store.new(store_path) for _ in range(2)]
    acked: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[str] = []

    def write(thread: int) -> None:
        docs = handles[thread % 2].collection("shared")
        rng = random.Random(thread)
        for seq in range(40):
            doc_id = rng.choice(IDS[:5])
            try:
                doc = docs.insert(doc_id, {"writer": f"t{thread}", "seq": seq})
            except Exception as exc:  # counted, then reported
                errors.append(repr(exc))
                continue
            with lock:
                acked[doc_id].append(
                    (f"t{thread}", seq, doc.version, doc.hash)
                )

    try:
        threads = [
            threading.Thread(target=write, args=(n,), daemon=True)
            for n in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in threads), "deadlock"
        problems = check_histories(handles[1], "shared", acked)
        total = sum(len(w) for w in acked.values())
        _record(
            threads=6,
            ops=total,
            **{"reader errors": 0, "lost updates": len(problems)},
        )
        assert errors == []
        assert total == 6 * 40
        assert problems == []
        assert check_histories(handles[0], "shared", acked) == []
        assert handles[0].verify().ok
    finally:
        for handle in handles:
            handle.close()


# -- processes ---------------------------------------------------------------

PROCESSES = 4
PROCESS_THREADS = 2
PROCESS_PUTS = 100
PROCESS_IDS = IDS[:6]


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_processes(tmp_path: pathlib.Path, method: str) -> None:
    path = tmp_path / "store"
    context = multiprocessing.get_context(method)
    acked: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    store = sentinel.Store.new(path)
    try:
        docs = store.collection("shared")
        # Some history before the children start.
        for n, doc_id in enumerate(PROCESS_IDS[:3]):
            doc = docs.insert(doc_id, {"writer": "parent", "seq": n})
            acked[doc_id].append(("parent", n, doc.version, doc.hash))
        if method == "fork":
            # Fork children use the handle the parent opened.
            writer.INHERITED = store
            target_path = None
        else:
            target_path = str(path)
        outputs = [str(tmp_path / f"proc-{n}.json") for n in range(PROCESSES)]
        procs = [
            context.Process(
                target=writer.process_writer,
                args=(
                    target_path,
                    n,
                    PROCESS_THREADS,
                    PROCESS_PUTS,
                    PROCESS_IDS,
                    outputs[n],
                ),
            )
            for n in range(PROCESSES)
        ]
        try:
            for proc in procs:
                proc.start()
            # The parent reads while the children write.
            seen: dict[str, int] = {}
            reader_errors = []
            while any(proc.is_alive() for proc in procs):
                for doc_id in PROCESS_IDS:
                    got = docs.get(doc_id)
                    if got is None:
                        continue
                    if got.version < seen.get(doc_id, 0):
                        reader_errors.append(f"{doc_id} went back")
                    seen[doc_id] = got.version
                docs.count()
            for proc in procs:
                proc.join(JOIN_TIMEOUT)
        finally:
            writer.INHERITED = None
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        assert [proc.exitcode for proc in procs] == [0] * PROCESSES
        pids = set()
        errors = []
        for n, out in enumerate(outputs):
            with open(out) as handle:
                result = json.load(handle)
            pids.add(result["pid"])
            errors.extend(result["errors"])
            for doc_id, thread, seq, version in result["acked"]:
                acked[doc_id].append((f"p{n}t{thread}", seq, version, None))
        assert os.getpid() not in pids and len(pids) == PROCESSES
        total = sum(len(w) for w in acked.values())
        problems = _check_process_histories(store, acked)
        lost = sum(
            len(writes) - (docs.get(doc_id).version)  # type: ignore
            for doc_id, writes in acked.items()
        )
        _record(
            processes=PROCESSES,
            threads=PROCESSES * PROCESS_THREADS,
            ops=total,
            **{
                "reader errors": len(reader_errors),
                "lost updates": abs(lost) + len(problems),
            },
        )
        assert errors == []
        assert total == PROCESSES * PROCESS_THREADS * PROCESS_PUTS + 3
        assert reader_errors == []
        assert lost == 0
        assert problems == []
        report = store.verify()
        assert report.ok, report.problems
        assert report.objects == total
    finally:
        store.close()
    with sentinel.Store.new(path) as again:
        assert _check_process_histories(again, acked) == []


def _process_writer_of(data: dict[str, Any]) -> str:
    """Name the writer of a document `process_writer` or the parent
    wrote: the parent stores "writer", the children "proc" and
    "thread"."""
    if "writer" in data:
        return str(data["writer"])
    return f"p{data['proc']}t{data['thread']}"


def _check_process_histories(
    store: sentinel.Store, acked: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    return check_histories(store, "shared", acked, _process_writer_of)
