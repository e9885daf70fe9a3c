"""Benchmark the lifecycle and history operations against sqlite3.

    python tools/bench_lifecycle.py [--docs 2000] [--versions 1000]

Reports, in one run with the engines interleaved (a few operations each,
in turn, because disk latency here drifts within minutes):

- durable update/s and delete/s, Sentinel against stdlib sqlite3 (WAL,
  synchronous=FULL, one transaction per operation, JSON in a table);
- bulk_insert of N documents against N single durable inserts, and the
  least work of a write (`_workload.least_work`), which bounds that
  ratio;
- history() of one document with --versions versions (ms);
- get_at() on that document against reading 10 versions with get().
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _workload import least_work, make_doc  # noqa: E402

import sentinel  # noqa: E402

STEP = 20


class SqliteDocs:
    """sqlite3 with WAL and synchronous=FULL: the durable peer."""

    def __init__(self, folder: str) -> None:
        self.db = sqlite3.connect(
            os.path.join(folder, "docs.db"), isolation_level=None
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL)"
        )

    def insert(self, doc_id: str, data: dict[str, object]) -> None:
        self.db.execute("BEGIN")
        self.db.execute(
            "INSERT OR REPLACE INTO docs VALUES (?, ?)",
            (doc_id, json.dumps(data)),
        )
        self.db.execute("COMMIT")

    def update(self, doc_id: str, patch: dict[str, object]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        (text,) = self.db.execute(
            "SELECT data FROM docs WHERE id = ?", (doc_id,)
        ).fetchone()
        data = json.loads(text)
        data.update(patch)
        self.db.execute(
            "UPDATE docs SET data = ? WHERE id = ?",
            (json.dumps(data), doc_id),
        )
        self.db.execute("COMMIT")

    def delete(self, doc_id: str) -> None:
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        self.db.execute("COMMIT")


def interleave(
    jobs: dict[str, Callable[[int], None]], count: int
) -> dict[str, float]:
    """Run `count` operations of each job, STEP at a time in turn;
    return operations per second for each."""
    spent = dict.fromkeys(jobs, 0.0)
    for start in range(0, count, STEP):
        for name, job in jobs.items():
            began = time.perf_counter()
            for index in range(start, min(start + STEP, count)):
                job(index)
            spent[name] += time.perf_counter() - began
    return {name: count / seconds for name, seconds in spent.items()}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--docs", type=int, default=2000)
    args.add_argument("--versions", type=int, default=1000)
    args.add_argument("--dir", default=None)
    options = args.parse_args()
    folder = tempfile.mkdtemp(prefix="sentinel-life-", dir=options.dir)
    try:
        run(folder, options.docs, options.versions)
    finally:
        shutil.rmtree(folder)


def run(folder: str, docs: int, versions: int) -> None:
    store = sentinel.Store.new(os.path.join(folder, "sentinel"))
    users = store.collection("users")
    peer = SqliteDocs(tempfile.mkdtemp(dir=folder))
    ids = [f"user-{n}" for n in range(docs)]
    users.bulk_insert((doc_id, make_doc(n)) for n, doc_id in enumerate(ids))
    for n, doc_id in enumerate(ids):
        peer.insert(doc_id, make_doc(n))

    print(f"durable operations on {docs:,} documents (ops/s)")
    updates = interleave(
        {
            "sentinel": lambda i: users.update(ids[i], {"age": i}),
            "sqlite3": lambda i: peer.update(ids[i], {"age": i}),
        },
        docs,
    )
    deletes = interleave(
        {
            "sentinel": lambda i: users.delete(ids[i]),
            "sqlite3": lambda i: peer.delete(ids[i]),
        },
        docs,
    )
    for label, rates in (("update", updates), ("delete", deletes)):
        ratio = rates["sentinel"] / rates["sqlite3"]
        print(
            f"  {label:7} sentinel {rates['sentinel']:8,.0f}  "
            f"sqlite3 {rates['sqlite3']:8,.0f}  ratio {ratio:.2f}x"
        )

    bulk_ids = [f"bulk-{n}" for n in range(docs)]
    single_ids = [f"single-{n}" for n in range(docs)]
    bulk_items = [(doc_id, make_doc(n)) for n, doc_id in enumerate(bulk_ids)]
    # Both sides get their documents built beforehand: building one
    # costs about 50 us, a fifth of a durable insert.
    single_items = [
        (doc_id, make_doc(n)) for n, doc_id in enumerate(single_ids)
    ]
    began = time.perf_counter()
    users.bulk_insert(bulk_items)
    bulk = time.perf_counter() - began
    began = time.perf_counter()
    for doc_id, data in single_items:
        users.insert(doc_id, data)
    single = time.perf_counter() - began
    print(
        f"\nbulk_insert of {docs:,}: {bulk:.3f} s; {docs:,} single "
        f"inserts: {single:.3f} s; bulk is {single / bulk:.1f}x faster"
    )
    # The bound on that ratio: however a batch shares the refs, the
    # write and the sync, each document still costs this much.
    least = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        least_work(bulk_items)
        least = min(least, time.perf_counter() - began)
    print(
        f"least work of a write (validate, encode, compress, hash; no "
        f"refs, no I/O): {least / docs * 1e6:.1f} us a document; a single "
        f"durable insert costs {single / docs * 1e6:.0f} us, "
        f"{single / least:.1f}x that, the most any bulk path could gain"
    )

    times = []
    for n in range(versions):
        times.append(users.insert("long", {"n": n, "pad": "x" * 200}))
    began = time.perf_counter()
    found = users.history("long")
    walk = time.perf_counter() - began
    print(
        f"\nhistory() of a {len(found):,}-version document: "
        f"{walk * 1000:.1f} ms"
    )
    rounds = 200
    rng = random.Random(7)
    moments = [
        times[rng.randrange(versions)].updated_at for _ in range(rounds)
    ]
    began = time.perf_counter()
    for moment in moments:
        users.get_at("long", moment)
    at = (time.perf_counter() - began) / rounds
    began = time.perf_counter()
    for _ in range(rounds):
        for number in range(1, 11):
            users.get("long", version=number)
    ten = (time.perf_counter() - began) / rounds
    print(
        f"get_at() on it: {at * 1e6:.0f} us; reading 10 versions: "
        f"{ten * 1e6:.0f} us ({ten / at:.1f}x the cost of get_at)"
    )
    store.close()


if __name__ == "__main__":
    main()
