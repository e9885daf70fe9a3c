"""Query benchmark: Sentinel's queries and indexes next to sqlite3 and
TinyDB.

Usage::

    python tools/bench_query.py                  # 100,000 documents
    python tools/bench_query.py --size 10000 --rounds 3
    python tools/bench_query.py --tiny-size 20000   # cap TinyDB

Every engine holds the same documents (about 300 bytes of JSON: name,
email, age, city, tags, a ``group`` shared by exactly 10 documents, a
copy of it in ``grp`` that is never indexed, a uniform ``score`` in
[0, 1) and a filler bio), and answers the same queries:

- scan: ``grp == g`` (10 matches), which no engine can answer from an
  index: every document is read and tested.  Reported as documents
  examined per second (N / time).
- equality: ``group == g`` (10 matches), from an index where there is
  one.
- range: ``score >= a and score < a + w`` with w chosen for about 100
  matches, from an index where there is one.
- sort + limit: the 10 documents of highest ``score``.

Engines: Sentinel (``durable=False``, loaded with ``bulk_insert``; the
indexes on ``group`` and ``score`` are made with ``create_index``);
sqlite3 from the standard library, JSON text in a table, once without
and once with expression indexes on ``json_extract(body, '$.group')``
and ``'$.score'``; TinyDB with its default JSON file storage (it parses
the whole file on every query, so ``--tiny-size`` can cap it, and the
table says so).  Every engine returns decoded documents (dicts).

The engines are interleaved: each round runs a batch of queries of one
kind on every engine in turn (the same queries for each), so a noisy
shared machine slows all of them alike, while each engine runs a few
queries in a row, as an application would, rather than each query right
after another engine's scan has flushed the CPU caches.  Garbage is
collected before each batch, not before each query.  The first round
checks that every engine returns the same ids.
Index build time is timed on a loaded store; memory per indexed document
is measured with `tracemalloc` while a fresh handle builds both indexes
(traced memory after minus before, divided by N).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import sentinel  # noqa: E402
from sentinel import QueryBuilder  # noqa: E402

SEED = 20240607
GROUP_SIZE = 10
RANGE_MATCHES = 100
CITIES = ("Lisbon", "Oslo", "Kyoto", "Austin", "Lyon", "Graz", "Leeds")
TAGS = ("admin", "beta", "billing", "ops", "pro", "support", "vip", "web")
WORDS = ("reads", "writes", "builds", "ships", "maps", "chess", "coffee")
# Queries per engine per turn, by kind: scans are slow, lookups quick.
PER_TURN = {"scan": 1, "equality": 20, "range": 10, "top10": 20}
KINDS = tuple(PER_TURN)
# TinyDB parses its whole file on every query: a couple per turn suffice.
TINY_PER_TURN = 2
Doc = dict[str, Any]
Answer = list[tuple[str, Doc]]


def make_document(number: int, groups: int) -> tuple[str, Doc]:
    """Document `number`, about 300 bytes of compact JSON."""
    rng = random.Random(f"{SEED}:{number}")
    group = f"g-{number % groups:06d}"
    doc: Doc = {
        "name": f"user {number}",
        "email": f"user{number}@example.com",
        "age": rng.randint(18, 80),
        "city": rng.choice(CITIES),
        "tags": rng.sample(TAGS, 3),
        "group": group,
        "grp": group,
        "score": rng.random(),
        "bio": "",
    }
    room = 300 - len(json.dumps(doc, separators=(",", ":")))
    words: list[str] = []
    while len(" ".join(words)) + 8 < room:
        words.append(rng.choice(WORDS))
    doc["bio"] = " ".join(words)
    return f"doc-{number:07d}", doc


# -- engines -----------------------------------------------------------------


class Engine:
    """One store under test: the four queries, each returning
    ``[(id, document)]``."""

    name = ""
    size = 0
    # At most this many queries of a kind per turn (None: all of them).
    per_turn: int | None = None

    def scan(self, group: str) -> Answer:
        raise NotImplementedError

    def equality(self, group: str) -> Answer:
        raise NotImplementedError

    def range(self, low: float, high: float) -> Answer:
        raise NotImplementedError

    def top10(self) -> Answer:
        raise NotImplementedError


class SentinelEngine(Engine):
    def __init__(self, folder: str, docs: list[tuple[str, Doc]]) -> None:
        self.name = "sentinel"
        self.size = len(docs)
        self.path = os.path.join(folder, "sentinel")
        self.store = sentinel.Store.new(self.path, durable=False)
        self.coll = self.store.collection("bench")
        started = time.perf_counter()
        for start in range(0, len(docs), 10_000):
            self.coll.bulk_insert(docs[start : start + 10_000])
        self.load_time = time.perf_counter() - started
        started = time.perf_counter()
        self.coll.create_index("group")
        self.coll.create_index("score")
        self.build_time = time.perf_counter() - started
        self.plans: dict[str, str] = {}

    def _run(self, kind: str, query: QueryBuilder) -> Answer:
        result = self.coll.query(query)
        if kind not in self.plans:
            explained = self.coll.query(query.explain()).plan
            self.plans[kind] = str(explained)
        return [(doc.id, doc.data) for doc in result.documents]

    def scan(self, group: str) -> Answer:
        return self._run("scan", QueryBuilder().filter("grp", "equals", group))

    def equality(self, group: str) -> Answer:
        query = QueryBuilder().filter("group", "equals", group)
        return self._run("equality", query)

    def range(self, low: float, high: float) -> Answer:
        query = (
            QueryBuilder()
            .filter("score", "greater_or_equal", low)
            .filter("score", "less_than", high)
        )
        return self._run("range", query)

    def top10(self) -> Answer:
        query = QueryBuilder().sort("score", "descending").limit(10)
        return self._run("top10", query)

    def index_memory(self) -> float:
        """Bytes per document that a fresh handle's two indexes hold."""
        with sentinel.Store.new(self.path, durable=False) as fresh:
            coll = fresh.collection("bench")
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                coll.query(QueryBuilder().filter("group", "equals", "x"))
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
        return (after - before) / self.size


class SqliteEngine(Engine):
    def __init__(
        self, folder: str, docs: list[tuple[str, Doc]], indexed: bool
    ) -> None:
        self.name = "sqlite3+index" if indexed else "sqlite3"
        self.size = len(docs)
        path = os.path.join(folder, f"{self.name}.db")
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, body TEXT)")
        started = time.perf_counter()
        with self.db:
            self.db.executemany(
                "INSERT INTO docs VALUES (?, ?)",
                (
                    (doc_id, json.dumps(doc, separators=(",", ":")))
                    for doc_id, doc in docs
                ),
            )
        self.load_time = time.perf_counter() - started
        self.build_time = None
        if indexed:
            started = time.perf_counter()
            with self.db:
                self.db.execute(
                    "CREATE INDEX by_group ON docs "
                    "(json_extract(body, '$.group'))"
                )
                self.db.execute(
                    "CREATE INDEX by_score ON docs "
                    "(json_extract(body, '$.score'))"
                )
            self.build_time = time.perf_counter() - started

    def _rows(self, sql: str, *args: object) -> Answer:
        return [
            (doc_id, json.loads(body))
            for doc_id, body in self.db.execute(sql, args)
        ]

    def scan(self, group: str) -> Answer:
        return self._rows(
            "SELECT id, body FROM docs WHERE json_extract(body, '$.grp') = ? "
            "ORDER BY id",
            group,
        )

    def equality(self, group: str) -> Answer:
        return self._rows(
            "SELECT id, body FROM docs "
            "WHERE json_extract(body, '$.group') = ? ORDER BY id",
            group,
        )

    def range(self, low: float, high: float) -> Answer:
        return self._rows(
            "SELECT id, body FROM docs "
            "WHERE json_extract(body, '$.score') >= ? "
            "AND json_extract(body, '$.score') < ? ORDER BY id",
            low,
            high,
        )

    def top10(self) -> Answer:
        return self._rows(
            "SELECT id, body FROM docs "
            "ORDER BY json_extract(body, '$.score') DESC LIMIT 10"
        )


class TinyEngine(Engine):
    def __init__(self, folder: str, docs: list[tuple[str, Doc]]) -> None:
        from tinydb import Query, TinyDB

        self.name = "tinydb"
        self.size = len(docs)
        self.per_turn = TINY_PER_TURN
        self.db = TinyDB(os.path.join(folder, "tiny.json"))
        self.q = Query()
        started = time.perf_counter()
        self.db.insert_multiple({"_id": doc_id, **doc} for doc_id, doc in docs)
        self.load_time = time.perf_counter() - started
        self.build_time = None

    def _answer(self, found: list[Doc]) -> Answer:
        rows = []
        for item in found:
            doc = dict(item)
            rows.append((doc.pop("_id"), doc))
        return sorted(rows, key=lambda row: row[0])

    def scan(self, group: str) -> Answer:
        return self._answer(self.db.search(self.q.grp == group))

    def equality(self, group: str) -> Answer:
        return self._answer(self.db.search(self.q.group == group))

    def range(self, low: float, high: float) -> Answer:
        condition = (self.q.score >= low) & (self.q.score < high)
        return self._answer(self.db.search(condition))

    def top10(self) -> Answer:
        best = heapq.nlargest(10, self.db.all(), key=lambda d: d["score"])
        rows = []
        for item in best:
            doc = dict(item)
            rows.append((doc.pop("_id"), doc))
        return rows


# -- timing ------------------------------------------------------------------


def workload(
    kind: str, rng: random.Random, groups: int, width: float
) -> Callable[[Engine], Answer]:
    """One query of `kind` with fresh parameters, the same for every
    engine of a turn (a cache of a previous answer cannot help)."""
    group = f"g-{rng.randrange(groups):06d}"
    low = rng.random() * (1 - width)
    if kind == "scan":
        return lambda engine: engine.scan(group)
    if kind == "equality":
        return lambda engine: engine.equality(group)
    if kind == "range":
        return lambda engine: engine.range(low, low + width)
    return lambda engine: engine.top10()


def same_ids(answers: dict[str, Answer], size_of: dict[str, int]) -> None:
    """Every engine holding all documents gave the same ids."""
    full = max(size_of.values())
    reference: list[str] | None = None
    for name, answer in answers.items():
        if size_of[name] != full:
            continue
        found = [doc_id for doc_id, _ in answer]
        if reference is None:
            reference = found
        elif found != reference:
            raise SystemExit(
                f"{name} disagrees: {found[:5]} vs {reference[:5]}"
            )


def run(
    engines: list[Engine], rounds: int, groups: int, width: float
) -> dict[str, dict[str, list[float]]]:
    """Each round, each kind: every engine runs the same batch of
    queries, one engine after the other; each query is timed alone."""
    times: dict[str, dict[str, list[float]]] = {
        engine.name: {kind: [] for kind in KINDS} for engine in engines
    }
    sizes = {engine.name: engine.size for engine in engines}
    rng = random.Random(SEED)
    for turn in range(rounds):
        for kind in KINDS:
            batch = [
                workload(kind, rng, groups, width)
                for _ in range(PER_TURN[kind])
            ]
            answers: list[dict[str, Answer]] = [{} for _ in batch]
            for engine in engines:
                # Collect garbage between batches, not before each query:
                # a full collection walks the whole heap and leaves the
                # caches cold, which would be charged to one query.
                gc.collect()
                for number, query in enumerate(batch[: engine.per_turn]):
                    started = time.perf_counter()
                    answers[number][engine.name] = query(engine)
                    elapsed = time.perf_counter() - started
                    times[engine.name][kind].append(elapsed)
            if turn == 0:
                for found in answers:
                    same_ids(found, sizes)
        print(f"  round {turn + 1}/{rounds} done", flush=True)
    return times


def micros(seconds: float) -> str:
    if seconds >= 0.1:
        return f"{seconds * 1e3:,.0f} ms"
    return f"{seconds * 1e6:,.0f} µs"


def report(
    engines: list[Engine], times: dict[str, dict[str, list[float]]]
) -> None:
    header = (
        f"{'engine':15} {'docs':>8} {'scan docs/s':>12} {'equality':>10} "
        f"{'range':>10} {'sort+lim10':>10} {'load s':>8} {'index s':>8}"
    )
    print()
    print("median per query (equality 10 docs, range ~100 docs):")
    print(header)
    print("-" * len(header))
    for engine in engines:
        kinds = times[engine.name]
        median = {kind: statistics.median(kinds[kind]) for kind in KINDS}
        build = (
            "-" if engine.build_time is None else f"{engine.build_time:.2f}"
        )
        print(
            f"{engine.name:15} {engine.size:>8,} "
            f"{engine.size / median['scan']:>12,.0f} "
            f"{micros(median['equality']):>10} {micros(median['range']):>10} "
            f"{micros(median['top10']):>10} {engine.load_time:>8.2f} "
            f"{build:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--tiny-size",
        type=int,
        default=None,
        help="documents given to TinyDB (default: --size)",
    )
    parser.add_argument("--dir", default=None, help="scratch folder")
    args = parser.parse_args()

    size = args.size
    groups = max(1, size // GROUP_SIZE)
    width = RANGE_MATCHES / size
    docs = [make_document(number, groups) for number in range(size)]
    mean = statistics.mean(
        len(json.dumps(doc, separators=(",", ":"))) for _, doc in docs[:1000]
    )
    print(f"{size:,} documents, {mean:.0f} bytes of JSON on average")
    folder = tempfile.mkdtemp(prefix="bench-query-", dir=args.dir)
    try:
        print("loading...", flush=True)
        ours = SentinelEngine(folder, docs)
        engines: list[Engine] = [
            ours,
            SqliteEngine(folder, docs, indexed=False),
            SqliteEngine(folder, docs, indexed=True),
        ]
        tiny_size = size if args.tiny_size is None else args.tiny_size
        if tiny_size > 0:
            engines.append(TinyEngine(folder, docs[:tiny_size]))
        print("querying, interleaved...", flush=True)
        times = run(engines, args.rounds, groups, width)
        report(engines, times)

        scan = statistics.median(times["sentinel"]["scan"])
        lookup = statistics.median(times["sentinel"]["equality"])
        sqlite_lookup = statistics.median(times["sqlite3+index"]["equality"])
        print()
        print("sentinel plans:")
        for kind, plan in ours.plans.items():
            print(f"  {kind:9} {plan}")
        print()
        print(
            f"sentinel indexed equality vs its own scan: "
            f"{scan / lookup:,.0f}x faster (target >= 100x)"
        )
        print(
            f"sentinel indexed equality vs sqlite3 with index: "
            f"{lookup / sqlite_lookup:.1f}x the time (target <= 3x)"
        )
        if tiny_size == 0:
            print("tinydb skipped (--tiny-size 0)")
        elif tiny_size != size:
            print(f"tinydb capped at {tiny_size:,} documents")
        if tiny_size:
            print(
                f"tinydb ran at most {TINY_PER_TURN} queries of each kind "
                "per turn (it parses its whole file on every query)"
            )
        memory = ours.index_memory()
        print(
            f"index memory (tracemalloc): {memory:,.0f} bytes per document "
            f"for 2 indexes (group: str, score: float), "
            f"{memory / 2:,.0f} per index"
        )
        ours.store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
