"""Workloads that run in a child process, for the kill, lock-holder and
multi-process tests.

Each workload reports through an `emit(line)` callable, one line per
event, written with a single system call as soon as the event happened:
"ack ..." is sent only after `insert` returned, so a line the parent
received is an acknowledged write.

Started with `multiprocessing` (the ``*_child`` entry points take a
`Connection`), or as a script in a fresh interpreter, with lines on
stdout::

    python tests/helpers/writer.py kill STORE SEED
    python tests/helpers/writer.py hold STORE VARIANT
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import sentinel
from sentinel import fs

Emit = Callable[[str], None]

COLLECTIONS = ("alpha", "beta")
IDS = tuple(f"doc-{n:02d}" for n in range(10))
KEYS = tuple(f"{name}/{doc_id}" for name in COLLECTIONS for doc_id in IDS)

# A child that is never killed stops on its own after this long, so a
# broken parent cannot leave it running.
WORKLOAD_LIMIT = 30.0
# The kill workload closes and reopens its store after this many writes.
REOPEN_EVERY = 40
# How long a lock holder sleeps while holding the lock: far longer than
# any test waits, so only the kill can end it.
HOLD_SECONDS = 600.0


def _stdout_emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _conn_emit(conn: Connection) -> Emit:
    def emit(line: str) -> None:
        conn.send_bytes(line.encode())

    return emit


# -- SIGKILL workload --------------------------------------------------------


def kill_workload(path: str, seed: int, emit: Emit) -> None:
    """Insert forever (until killed) into the 20 keys of `KEYS`.

    Each document carries its key's sequence number: 1 for the first
    write of the key in the store's life, +1 per write, so after any
    number of crashes a key's seq must equal its version.  The child
    first reports the seqs it found ("ready {json}"), then one line
    "ack KEY SEQ VERSION HASH" per returned insert.  Every
    `REOPEN_EVERY` writes it closes and reopens the store.
    """
    store = sentinel.Store.new(path)
    collections = {name: store.collection(name) for name in COLLECTIONS}
    seqs: dict[str, int] = {}
    for key in KEYS:
        name, doc_id = key.split("/")
        doc = collections[name].get(doc_id)
        seqs[key] = 0 if doc is None else int(doc.data["seq"])
    emit("ready " + json.dumps(seqs, sort_keys=True))
    rng = random.Random(seed)
    deadline = time.monotonic() + WORKLOAD_LIMIT
    writes = 0
    while time.monotonic() < deadline:
        key = rng.choice(KEYS)
        name, doc_id = key.split("/")
        seq = seqs[key] + 1
        doc = collections[name].insert(
            doc_id,
            {"key": key, "seq": seq, "seed": seed, "pad": "x" * (seq % 97)},
        )
        seqs[key] = seq
        emit(f"ack {key} {seq} {doc.version} {doc.hash}")
        writes += 1
        if writes % REOPEN_EVERY == 0:
            # Closing may write a checkpoint of the refs, and opening
            # replays the journal: kills land there too.
            store.close()
            store = sentinel.Store.new(path)
            collections = {
                name: store.collection(name) for name in COLLECTIONS
            }
    emit("done")
    store.close()


def kill_child(path: str, seed: int, conn: Connection) -> None:
    """`multiprocessing` entry point of `kill_workload`."""
    kill_workload(path, seed, _conn_emit(conn))


# -- lock holder -------------------------------------------------------------

HOLD_VARIANTS = (
    "create",
    "create-sync",
    "open",
    "insert",
    "fdatasync",
    "refresh",
)


class HoldingOS(fs.OS):
    """The real OS, except that once armed it reports "holding" and
    sleeps inside the chosen call: just after taking the store's lock
    with `operation` (`flock`), or inside the sync call `sync`
    ("fsync" or "fdatasync") made while the exclusive lock is held."""

    def __init__(
        self, emit: Emit, operation: int | None, sync: str | None
    ) -> None:
        self.emit = emit
        self.operation = operation
        self.sync = sync
        self.armed = False
        self.exclusive = False

    def _hold(self) -> None:
        self.armed = False
        self.emit("holding")
        time.sleep(HOLD_SECONDS)

    def flock(self, fd: int, operation: int) -> None:
        super().flock(fd, operation)
        self.exclusive = operation == fcntl.LOCK_EX
        if self.armed and operation == self.operation:
            self._hold()

    def _maybe_hold_sync(self, call: str) -> None:
        if self.armed and self.exclusive and self.sync == call:
            self._hold()

    def fsync(self, fd: int) -> None:
        self._maybe_hold_sync("fsync")
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._maybe_hold_sync("fdatasync")
        super().fdatasync(fd)


def hold_workload(path: str, variant: str, emit: Emit) -> None:
    """Take the store's lock as `variant` says, report, and hang there.

    create: the exclusive lock while creating a new store;
    create-sync: the exclusive lock, inside the first fsync of the
    creation (folders made, no pack or config yet);
    open: the shared lock while opening an existing store;
    insert: the exclusive lock of an insert;
    fdatasync: the exclusive lock, inside the sync of an insert (its
    frame is written but not yet synced);
    refresh: the shared lock of a read catching up with another
    handle's write.
    """
    if variant not in HOLD_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    sync = {"create-sync": "fsync", "fdatasync": "fdatasync"}.get(variant)
    operation: int | None = None
    if variant in ("open", "refresh"):
        operation = fcntl.LOCK_SH
    elif variant in ("create", "insert"):
        operation = fcntl.LOCK_EX
    holder = HoldingOS(emit, operation, sync)
    fs.install(holder)
    if variant.startswith("create") or variant == "open":
        holder.armed = True
        sentinel.Store.new(path)
        raise AssertionError("the holder was not reached")
    store = sentinel.Store.new(path)
    docs = store.collection("held")
    if variant == "refresh":
        other = sentinel.Store.new(path)
        other.collection("held").insert("by-other", {"n": 1})
        holder.armed = True
        docs.get("by-other")
    else:
        holder.armed = True
        docs.insert("by-holder", {"n": 1})
    raise AssertionError("the holder was not reached")


def hold_child(path: str, variant: str, conn: Connection) -> None:
    """`multiprocessing` entry point of `hold_workload`."""
    hold_workload(path, variant, _conn_emit(conn))


# -- multi-process writers ---------------------------------------------------

# Set by a parent before it forks, so fork children can use the store
# the parent opened (the library resets its locks after fork).
INHERITED: sentinel.Store | None = None


def process_writer(
    path: str | None,
    proc: int,
    threads: int,
    puts: int,
    ids: list[str],
    out: str,
) -> None:
    """Write `puts` documents from each of `threads` threads into the
    collection "shared", ids drawn from `ids`; record every
    acknowledged write (id, thread, seq, version) in the JSON file
    `out`.  With `path` None, use `INHERITED`."""
    store = INHERITED if path is None else sentinel.Store.new(path)
    assert store is not None
    docs = store.collection("shared")
    acked: list[list[Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(thread: int) -> None:
        rng = random.Random(proc * 1000 + thread)
        for seq in range(puts):
            doc_id = rng.choice(ids)
            try:
                doc = docs.insert(
                    doc_id, {"proc": proc, "thread": thread, "seq": seq}
                )
            except Exception as exc:  # reported to the parent
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                acked.append([doc_id, thread, seq, doc.version])

    workers = [
        threading.Thread(target=work, args=(n,)) for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result = {"pid": os.getpid(), "acked": acked, "errors": errors}
    with open(out + ".tmp", "w") as handle:
        json.dump(result, handle)
    os.replace(out + ".tmp", out)
    if path is not None:
        store.close()


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "kill":
        kill_workload(argv[1], int(argv[2]), _stdout_emit)
    elif len(argv) == 3 and argv[0] == "hold":
        hold_workload(argv[1], argv[2], _stdout_emit)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
