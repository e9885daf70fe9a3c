"""Where the time of an insert, a get and a scan goes, step by step.

    python tools/profile_paths.py [--docs 10000] [--rounds 5] [--dir DIR]

cProfile's own cost per call is close to the cost of the calls it times
on these paths, so this script times each step of the hot paths on its
own instead, over the same documents, and prints microseconds per
document beside sqlite3 doing the same job.  Every measurement runs once
per round, all of them in turn, and the best round is reported (the
least disturbed by other work on the machine; disk latency here drifts
within minutes).

- insert: a durable insert and the part of it spent in ``fdatasync``
  (timed through the `sentinel.fs` seam); a buffered insert, which is
  the same work without the sync; sqlite3 (WAL, one transaction per
  insert) with ``synchronous=FULL`` and ``NORMAL``.
- get: a whole `get`, then each of its steps alone: checking the id,
  `refresh` (one small ``pread`` to see other processes' writes), the
  head lookup, reading the stored bytes, decoding them (header, zstd,
  BLAKE3) and building the `Document` (JSON parse, field checks).
- scan: `all()`, the same steps in one flat loop over a pack held in
  memory (no layers, no windows, no reads), and sqlite3 returning a row
  plus ``json.loads``.
- bulk: a durable `bulk_insert` of 2,000 documents, per document, and
  the least work any write of a document must do (validate and encode
  it, build its version payload, compress and hash it), in a flat loop
  with no refs and no I/O.  The last line compares both with a single
  durable insert.

It reaches into private attributes of the store to time single steps;
it is a measuring tool, not an example of the API.
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
from typing import Any

import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _workload import least_work, make_doc  # noqa: E402

import sentinel  # noqa: E402
from sentinel import fs, names, objects, refs  # noqa: E402
from sentinel.document import Document  # noqa: E402

INSERTS_PER_ROUND = 200
BULK_PER_ROUND = 2000
LEAST_WORK = "  least work of a write (no refs, no I/O)"


class SyncClock(fs.OS):
    """The real operating system, with the time of each sync added up."""

    def __init__(self) -> None:
        self.spent = 0.0

    def fdatasync(self, fd: int) -> None:
        began = time.perf_counter()
        try:
            super().fdatasync(fd)
        finally:
            self.spent += time.perf_counter() - began


def sqlite_store(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
    return db


class Profile:
    """The stores, the documents and the timed steps of one run."""

    def __init__(self, folder: str, docs: int) -> None:
        self.ids = [f"user-{n:07}" for n in range(docs)]
        items = [(doc_id, make_doc(n)) for n, doc_id in enumerate(self.ids)]
        self.durable = sentinel.Store.new(os.path.join(folder, "durable"))
        self.buffered = sentinel.Store.new(
            os.path.join(folder, "buffered"), durable=False
        )
        for store in (self.durable, self.buffered):
            store.collection("users").bulk_insert(items)
        self.full = sqlite_store(os.path.join(folder, "full.db"), "FULL")
        self.normal = sqlite_store(os.path.join(folder, "normal.db"), "NORMAL")
        for db in (self.full, self.normal):
            # One transaction for the load: the connection autocommits.
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO docs VALUES (?, ?)",
                [(i, json.dumps(d)) for i, d in items],
            )
            db.execute("COMMIT")
        self.fresh = [make_doc(n) for n in range(INSERTS_PER_ROUND)]
        self.inserted = 0
        self.bulk_docs = [make_doc(n) for n in range(BULK_PER_ROUND)]
        self.bulked = 0
        self.sync_clock = SyncClock()
        self.sample = random.Random(1).choices(self.ids, k=min(docs, 5000))
        self.spent: dict[str, list[float]] = {}

    # -- timing ----------------------------------------------------------

    def timed(self, name: str, count: int, job: Callable[[], object]) -> None:
        """Run `job` (which does `count` operations); keep us per op."""
        began = time.perf_counter()
        job()
        elapsed = time.perf_counter() - began
        self.spent.setdefault(name, []).append(elapsed / count * 1e6)

    def each(
        self,
        name: str,
        calls: list[tuple[Any, ...]],
        step: Callable[..., object],
    ) -> None:
        """Time `step` once per argument tuple in `calls`, keeping no
        result (a kept result would make the collector run and charge
        its time to the step)."""

        def job() -> None:
            for arguments in calls:
                step(*arguments)

        self.timed(name, len(calls), job)

    def best(self, name: str) -> float:
        return min(self.spent[name])

    # -- insert ------------------------------------------------------------

    def inserts(self) -> None:
        start = self.inserted
        self.inserted += INSERTS_PER_ROUND
        keys = [f"new-{n:07}" for n in range(start, self.inserted)]
        pairs = list(zip(keys, self.fresh, strict=True))
        durable = self.durable.collection("users")
        buffered = self.buffered.collection("users")

        def sentinel_durable() -> None:
            for doc_id, data in pairs:
                durable.insert(doc_id, data)

        clock = self.sync_clock
        clock.spent = 0.0
        previous = fs.install(clock)
        try:
            self.timed("insert durable", len(pairs), sentinel_durable)
        finally:
            fs.install(previous)
        self.spent.setdefault("  of which fdatasync", []).append(
            clock.spent / len(pairs) * 1e6
        )
        self.each("insert buffered", pairs, buffered.insert)
        for label, db in (("FULL", self.full), ("NORMAL", self.normal)):

            def sqlite_insert(db: sqlite3.Connection = db) -> None:
                for doc_id, data in pairs:
                    db.execute(
                        "INSERT INTO docs VALUES (?, ?)",
                        (doc_id, json.dumps(data)),
                    )

            self.timed(f"sqlite3 {label} insert", len(pairs), sqlite_insert)

    # -- get ---------------------------------------------------------------

    def gets(self) -> None:
        users = self.buffered.collection("users")
        engine = users._engine
        heads = users._refs().heads
        ids = [(doc_id,) for doc_id in self.sample]
        chosen = [heads[doc_id] for doc_id in self.sample]
        address = refs.HEAD_ADDRESS
        places = [
            refs.place(engine.state.objects[head[address]]) for head in chosen
        ]
        stored = [
            (engine.journal.read(*place), head[address])
            for place, head in zip(places, chosen, strict=True)
        ]
        opened = [engine.codec.decode(*arguments) for arguments in stored]
        query = "SELECT data FROM docs WHERE id = ?"

        def sqlite_get(doc_id: str) -> object:
            row = self.normal.execute(query, (doc_id,)).fetchone()
            return json.loads(row[0])

        self.each("get", ids, users.get)
        self.each("  id check", ids, names.document_id)
        self.each("  refresh (pread)", [()] * len(ids), engine.refresh)
        self.each("  head lookup", ids, heads.get)
        self.each("  read bytes (pread)", places, engine.journal.read)
        self.each(
            "  decode (header, zstd, BLAKE3)", stored, engine.codec.decode
        )
        payloads = [found.payload for found in opened]
        self.each(
            "    of which zstd",
            [(raw[objects.HEADER_SIZE :],) for raw, _ in stored],
            objects._codecs.decompressor.decompress,
        )
        self.each(
            "    of which BLAKE3",
            [(objects.TYPE_VERSION, payload) for payload in payloads],
            objects.address_of,
        )
        self.each(
            "  Document (JSON, checks)",
            list(zip(self.sample, chosen, opened, strict=True)),
            users._opened_document,
        )
        self.each(
            "    of which orjson.loads",
            [(payload,) for payload in payloads],
            orjson.loads,
        )
        self.each("sqlite3 get + json.loads", ids, sqlite_get)

    # -- scan --------------------------------------------------------------

    def scans(self) -> None:
        users = self.buffered.collection("users")
        engine = users._engine
        heads = users._refs().heads
        count = len(heads)
        # The whole first pack in memory: the flat loop reads nothing.
        pack = engine.journal.read(1, 0, engine.journal.size(1))
        places = engine.state.objects
        if engine.state.position[0] != 1:
            raise SystemExit("the store outgrew one pack: use fewer --docs")

        def flat() -> None:
            for doc_id, head in heads.items():
                address = head[refs.HEAD_ADDRESS]
                _, offset, length = refs.place(places[address])
                kind, payload = objects.decode(
                    pack[offset : offset + length], address
                )
                fields = orjson.loads(payload)
                Document(
                    "users",
                    doc_id,
                    fields["version"],
                    fields["created_at"],
                    fields["updated_at"],
                    address.hex(),
                    fields["data"],
                    None,
                    fields["deleted"],
                    fields["parent"],
                    "",
                )

        def sqlite_scan() -> None:
            # The same rows as the buffered store holds: both took the
            # same inserts.
            rows = self.normal.execute("SELECT data FROM docs ORDER BY id")
            for (text,) in rows:
                json.loads(text)

        self.timed("scan all()", count, lambda: sum(1 for _ in users.all()))
        self.timed("  flat loop, same steps, pack in memory", count, flat)
        self.timed("sqlite3 scan + json.loads", count, sqlite_scan)

    # -- bulk --------------------------------------------------------------

    def bulks(self) -> None:
        users = self.durable.collection("users")
        start = self.bulked
        self.bulked += len(self.bulk_docs)
        items = [
            (f"bulk-{start + n:07}", data)
            for n, data in enumerate(self.bulk_docs)
        ]
        self.timed(
            "bulk_insert, durable",
            len(items),
            lambda: users.bulk_insert(items),
        )
        self.timed(LEAST_WORK, len(items), lambda: least_work(items))

    def close(self) -> None:
        self.durable.close()
        self.buffered.close()
        self.full.close()
        self.normal.close()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--docs", type=int, default=10000)
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--dir", default=None)
    options = args.parse_args()
    folder = tempfile.mkdtemp(prefix="sentinel-profile-", dir=options.dir)
    try:
        profile = Profile(folder, options.docs)
        try:
            for _ in range(options.rounds):
                profile.inserts()
                profile.gets()
                profile.scans()
                profile.bulks()
        finally:
            profile.close()
    finally:
        shutil.rmtree(folder)
    print(
        f"{options.docs:,} documents of about 300 bytes; best of "
        f"{options.rounds} interleaved rounds; us per document"
    )
    for name in profile.spent:
        print(f"  {name:42} {profile.best(name):8.2f}")
    single = profile.best("insert durable")
    print(
        f"a single durable insert costs "
        f"{single / profile.best('bulk_insert, durable'):.1f}x a document "
        f"of bulk_insert, and "
        f"{single / profile.best(LEAST_WORK):.1f}x the least work"
    )


if __name__ == "__main__":
    main()
