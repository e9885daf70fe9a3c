"""Peer benchmark: Sentinel next to sqlite3, TinyDB, JSON files and Git.

Usage::

    python tools/bench.py --sizes 1000,10000
    python tools/bench.py --quick                # smoke run, N = 200
    python tools/bench.py --sizes 1000,10000,100000 --plot
    make bench BENCH_ARGS="--sizes 1000,10000 --plot"
    python tools/bench.py --report bench-results/bench-TIME.json

Every engine stores the same documents (about 300 bytes of JSON each:
name, email, age, tags, a nested address and a bio, generated from a
seeded random per id) under the same ids, and is asked the same things:

- insert/s: the insert loop of the load.  Durable engines time the last
  ``--write-ops`` inserts (default 2,000) of the N, after the first ones
  were bulk-loaded without fsync and ``sync``-ed; buffered engines time
  all N.  The cost of the last 1,000 inserts is reported on its own (in
  microseconds per insert) so that runs at 1,000, 10,000 and 100,000
  documents show whether the cost of an insert grows with the store.
- update/s: replacing ``--write-ops`` existing ids picked at random
  (the same ids for every engine, so every store keeps the same history).
- get/s: reading random ids (each answer is checked against the source).
- scan docs/s, warm and cold: every document in id order (where the
  engine has one) from a freshly opened handle; cold first drops the page
  cache (``sync; echo 3 > /proc/sys/vm/drop_caches``, root only).
- count(): median of nine turns, each one call, or the mean of a batch
  of 100 calls when one takes under a millisecond; open: time to open
  the loaded store (median of five warm opens, and one cold open after
  dropping caches).  Timed phases start after a ``gc.collect()``.
- bytes on disk, right after the load: the sum of file sizes, and the
  blocks allocated (``st_blocks * 512``, folders included); the JSON
  also has both after the updates.
- peak RSS: ``VmHWM`` (peak resident set, from ``/proc/self/status``)
  of a child process that loads N documents through the engine's bulk
  path (no fsync), reopens the store and scans it; and its growth over
  the same child after imports.  Not ``ru_maxrss``: on Linux a child
  inherits its parent's high-water mark.  Durable and buffered variants
  of one engine share one child.
- fsyncs per insert: counted through the ``sentinel.fs`` seam for
  Sentinel, and by the JSON-file engine itself.
- 4-thread durable insert/s: four writer threads on one Sentinel handle
  (group commit) and on sqlite3 FULL (one connection per thread).

Caps, marked ``*`` in the tables: TinyDB re-reads and rewrites its whole
file per operation, so its inserts, updates and gets are limited to
about 2,000,000 / N operations (20 to 200); scans of the one-file-per-
document and Git stores stop at 20,000 documents.  Every engine still
holds all N documents.

Why interleaved: the disk under test drifts (fsync latency here moves by
up to 40x within minutes), so timing one engine after another would
compare disks, not engines.  Every timed phase therefore runs a few
operations of each engine in turn, round-robin, and adds each engine's
time up; engines with fewer operations (caps) spread theirs over the
whole phase.  Before and after each size a raw ``fdatasync`` probe is
recorded, so a run can be judged against the disk it ran on.

Ratios compare each engine with sqlite3: write figures with sqlite3 of
the same durability class (FULL for durable engines, NORMAL otherwise),
read and footprint figures with sqlite3 NORMAL.

Results go to stdout as tables and to ``bench-results/bench-<time>.json``
(or ``--out``); ``--plot`` also writes an SVG of each figure against N.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, REPO)
if TOOLS not in sys.path:
    sys.path.insert(1, TOOLS)

import sentinel  # noqa: E402
from sentinel import fs as sentinel_fs  # noqa: E402

log = logging.getLogger("bench")

Doc = dict[str, Any]

SEED = 20240601
DOC_BYTES = 300
DEFAULT_SIZES = (1000, 10000)
QUICK_SIZE = 200
WRITE_OPS = 2000
READ_OPS = 10000
THREADS = 4
PER_THREAD = 10
LAST_INSERTS = 1000
OPEN_REPEATS = 5
COUNT_REPEATS = 9
COUNT_BATCH = 100
COUNT_BATCH_BELOW = 1e-3
# Operations of each engine per round-robin turn, per kind of phase.
CHUNK_WRITE = 25
CHUNK_READ = 50
CHUNK_SCAN = 250
# TinyDB rewrites (and re-reads) its whole file on every operation, so its
# operation count is budgeted: about this many documents touched per
# phase, with at least TINY_MIN_OPS and at most TINY_MAX_OPS operations.
TINY_BUDGET = 2_000_000
TINY_MIN_OPS = 20
TINY_MAX_OPS = 200
# One file per document: scans of very large stores are capped.
FILES_SCAN_CAP = 20_000
COMPACT = {"separators": (",", ":"), "ensure_ascii": False}


# -- documents ----------------------------------------------------------------

FIRST_NAMES = (
    "Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances",
    "Grace", "Hedy", "John", "Ken", "Leslie", "Margaret", "Niklaus",
    "Radia", "Tony",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Turing", "Liskov", "Shannon", "Ritchie", "Dijkstra",
    "Allen", "Hopper", "Lamarr", "Backus", "Thompson", "Lamport",
    "Hamilton", "Wirth", "Perlman", "Hoare",
)  # fmt: skip
CITIES = (
    ("Lisbon", "PT"), ("Oslo", "NO"), ("Kyoto", "JP"), ("Austin", "US"),
    ("Lyon", "FR"), ("Graz", "AT"), ("Leeds", "GB"), ("Turin", "IT"),
)  # fmt: skip
STREETS = (
    "Main Street", "Oak Avenue", "Harbour Road", "Mill Lane",
    "Station Road", "Park Row",
)  # fmt: skip
TAGS = (
    "admin", "beta", "billing", "early", "mobile", "ops", "partner",
    "pro", "support", "trial", "vip", "web",
)  # fmt: skip
WORDS = (
    "reads", "writes", "builds", "tests", "ships", "reviews", "systems",
    "storage", "papers", "music", "maps", "gardens", "bikes", "chess",
    "coffee", "on", "and", "weekends", "with", "friends",
)  # fmt: skip


def doc_id(index: int) -> str:
    """The id of the `index`-th document: sortable, valid everywhere."""
    return f"doc-{index:07d}"


def id_number(identifier: str) -> int:
    """Inverse of `doc_id`, for engines that need integer keys."""
    return int(identifier.rsplit("-", 1)[1])


def make_document(identifier: str, rev: int = 0) -> Doc:
    """The document stored under `identifier` at revision `rev`.

    Deterministic (a `random.Random` seeded by the id), so every engine
    gets the same bytes and any read can be checked against its source.
    The bio is filled with words until the compact JSON is just under
    `DOC_BYTES`; a new revision changes age, rev and bio.
    """
    rng = random.Random(f"{SEED}:{identifier}")
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, country = rng.choice(CITIES)
    doc: Doc = {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randrange(1000)}"
        "@example.com",
        "age": rng.randint(18, 80) + rev,
        "tags": rng.sample(TAGS, rng.randint(2, 5)),
        "address": {
            "street": f"{rng.randint(1, 999)} {rng.choice(STREETS)}",
            "city": city,
            "zip": f"{rng.randrange(100000):05d}",
            "country": country,
        },
        "rev": rev,
        "bio": "",
    }
    budget = DOC_BYTES - len(json.dumps(doc, **COMPACT))
    words = random.Random(f"{SEED}:{identifier}:{rev}")
    bio: list[str] = []
    length = -1
    while True:
        word = words.choice(WORDS)
        if length + 1 + len(word) > budget:
            break
        bio.append(word)
        length += 1 + len(word)
    doc["bio"] = " ".join(bio)
    return doc


def encode(data: Doc) -> bytes:
    """Compact JSON bytes, as the non-Sentinel engines store them."""
    return json.dumps(data, **COMPACT).encode()


# -- counting fsyncs through the Sentinel I/O seam ----------------------------


class CountingOS(sentinel_fs.OS):
    """The real OS, counting ``fsync`` and ``fdatasync`` calls.

    Installed with `sentinel.fs.install` for the whole run; the adapters
    read `syncs` before and after their own operations, so the count
    of one engine is not mixed with another's.
    """

    def __init__(self) -> None:
        self.syncs = 0
        self._lock = threading.Lock()

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        with self._lock:
            self.syncs += 1

    def fdatasync(self, fd: int) -> None:
        super().fdatasync(fd)
        with self._lock:
            self.syncs += 1


# -- engines ------------------------------------------------------------------

Writer = Callable[[str, Doc], None]


class Adapter:
    """One engine under test, reduced to the operations that are timed.

    A store lives in folder `root`.  `open` and `close` bracket a handle;
    `bulk_load` fills a closed store as fast as the engine allows (no
    fsync), for the part of a load that is not timed.  `limit` lets an
    engine whose cost per operation grows with N cap its sample.
    """

    key = ""
    label = ""
    family = ""
    durable = False
    notes = ""

    def __init__(self, root: str, counter: CountingOS | None) -> None:
        self.root = root
        self.counter = counter
        self.is_open = False

    def open(self, bulk: bool = False) -> None:
        """Open (creating if needed); `bulk` skips syncs for loading."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the handle; the store stays on disk."""
        raise NotImplementedError

    def insert(self, identifier: str, data: Doc) -> None:
        """Insert or replace one document, as durably as the engine is."""
        raise NotImplementedError

    def get(self, identifier: str) -> Doc | None:
        """The document under `identifier`, or None."""
        raise NotImplementedError

    def count(self) -> int:
        """The number of documents."""
        raise NotImplementedError

    def scan(self) -> Iterator[Doc]:
        """Every document, streaming, in id order where possible."""
        raise NotImplementedError

    def bulk_load(self, items: Iterable[tuple[str, Doc]]) -> None:
        """Fill the (closed) store without syncs; leave it closed."""
        self.open(bulk=True)
        try:
            for identifier, data in items:
                self.insert(identifier, data)
        finally:
            self.close()

    def sync_count(self) -> int | None:
        """A running count of this engine's fsyncs, if it can be seen."""
        return None

    def writers(self, count: int) -> list[Writer] | None:
        """`count` insert functions for concurrent threads, or None."""
        return None

    def close_writers(self) -> None:
        """Release what `writers` opened."""

    def limit(self, phase: str, size: int, wanted: int) -> int:
        """How many operations of `phase` to time at store size `size`."""
        return wanted

    def ensure_closed(self) -> None:
        """Close if open, for cleanup paths."""
        if self.is_open:
            self.close()


class SentinelAdapter(Adapter):
    """Sentinel: one collection ``docs`` in one `sentinel.Store`."""

    family = "sentinel"

    def open(self, bulk: bool = False) -> None:
        durable = self.durable and not bulk
        self._store = sentinel.Store.new(self.root, durable=durable)
        self._docs = self._store.collection("docs")
        self.is_open = True

    def close(self) -> None:
        self._store.close()
        self.is_open = False

    def insert(self, identifier: str, data: Doc) -> None:
        self._docs.insert(identifier, data)

    def get(self, identifier: str) -> Doc | None:
        found = self._docs.get(identifier)
        return None if found is None else found.data

    def count(self) -> int:
        return self._docs.count()

    def scan(self) -> Iterator[Doc]:
        for found in self._docs.all():
            yield found.data

    def sync_count(self) -> int | None:
        return None if self.counter is None else self.counter.syncs

    def writers(self, count: int) -> list[Writer] | None:
        """Writers share this one handle, so their commits group."""
        if not self.durable:
            return None
        threads = self._store.collection("threads")

        def write(identifier: str, data: Doc) -> None:
            threads.insert(identifier, data)

        return [write] * count


class SentinelDurable(SentinelAdapter):
    """Sentinel, fdatasync on every write group."""

    key = "sentinel-durable"
    label = "sentinel durable"
    durable = True
    notes = "Store.new(durable=True): one fdatasync per write group"


class SentinelBuffered(SentinelAdapter):
    """Sentinel without fdatasync."""

    key = "sentinel-buffered"
    label = "sentinel buffered"
    notes = "Store.new(durable=False): no fdatasync"


class SqliteAdapter(Adapter):
    """sqlite3 (stdlib), WAL, one transaction per insert.

    ``docs(id TEXT PRIMARY KEY, data TEXT)`` holding JSON text; a get is
    a select plus `json.loads`.
    """

    family = "sqlite"
    synchronous = "NORMAL"

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        """A connection in WAL mode with the given synchronous level."""
        os.makedirs(self.root, exist_ok=True)
        con = sqlite3.connect(
            os.path.join(self.root, "docs.sqlite"),
            isolation_level=None,
            timeout=60.0,
            check_same_thread=False,
        )
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute(
            "CREATE TABLE IF NOT EXISTS docs(id TEXT PRIMARY KEY, data TEXT)"
        )
        return con

    def open(self, bulk: bool = False) -> None:
        self._con = self._connect("OFF" if bulk else self.synchronous)
        self._bulk = bulk
        if bulk:
            self._con.execute("BEGIN")
        self.is_open = True

    def close(self) -> None:
        if self._bulk:
            self._con.execute("COMMIT")
        self._con.close()
        self.is_open = False

    def insert(self, identifier: str, data: Doc) -> None:
        self._con.execute(
            "INSERT OR REPLACE INTO docs(id, data) VALUES (?, ?)",
            (identifier, json.dumps(data, **COMPACT)),
        )

    def get(self, identifier: str) -> Doc | None:
        row = self._con.execute(
            "SELECT data FROM docs WHERE id = ?", (identifier,)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def count(self) -> int:
        row = self._con.execute("SELECT count(*) FROM docs").fetchone()
        return int(row[0])

    def scan(self) -> Iterator[Doc]:
        cursor = self._con.execute("SELECT data FROM docs ORDER BY id")
        for (text,) in cursor:
            yield json.loads(text)

    def writers(self, count: int) -> list[Writer] | None:
        """One connection per writer, as sqlite3 requires for concurrency."""
        if not self.durable:
            return None
        self._writer_cons = [
            self._connect(self.synchronous) for _ in range(count)
        ]
        self._writer_cons[0].execute(
            "CREATE TABLE IF NOT EXISTS threads"
            "(id TEXT PRIMARY KEY, data TEXT)"
        )
        found: list[Writer] = []
        for con in self._writer_cons:

            def write(
                identifier: str, data: Doc, con: sqlite3.Connection = con
            ) -> None:
                con.execute(
                    "INSERT OR REPLACE INTO threads(id, data) VALUES (?, ?)",
                    (identifier, json.dumps(data, **COMPACT)),
                )

            found.append(write)
        return found

    def close_writers(self) -> None:
        for con in getattr(self, "_writer_cons", []):
            con.close()
        self._writer_cons = []


class SqliteFull(SqliteAdapter):
    """sqlite3 WAL with synchronous=FULL: durable per commit."""

    key = "sqlite-full"
    label = "sqlite3 FULL"
    durable = True
    synchronous = "FULL"
    notes = "WAL, synchronous=FULL: WAL fsync per commit"


class SqliteNormal(SqliteAdapter):
    """sqlite3 WAL with synchronous=NORMAL: not durable on power loss."""

    key = "sqlite-normal"
    label = "sqlite3 NORMAL"
    notes = "WAL, synchronous=NORMAL: fsync at checkpoints only"


class TinyAdapter(Adapter):
    """TinyDB with its default `JSONStorage`.

    Not durable: every write re-reads the whole file, then rewrites it in
    place (seek, write, fsync, truncate) with no atomic rename, so a
    crash mid-write can leave a torn file.  Document ids are TinyDB's
    integer ids (the number in our id, plus one).
    """

    key = "tinydb"
    label = "tinydb (not durable)"
    family = "tinydb"
    notes = (
        "default JSONStorage: rewrites the whole file in place per write "
        "(fsync, no atomic rename), re-reads it per read"
    )

    def open(self, bulk: bool = False) -> None:
        from tinydb import TinyDB
        from tinydb.table import Document

        os.makedirs(self.root, exist_ok=True)
        self._db = TinyDB(os.path.join(self.root, "db.json"))
        self._table = self._db.table("docs")
        self._document = Document
        self.is_open = True

    def close(self) -> None:
        self._db.close()
        self.is_open = False

    def insert(self, identifier: str, data: Doc) -> None:
        number = id_number(identifier) + 1
        try:
            self._table.insert(self._document(data, doc_id=number))
        except ValueError:
            self._table.update(data, doc_ids=[number])

    def get(self, identifier: str) -> Doc | None:
        found = self._table.get(doc_id=id_number(identifier) + 1)
        return None if found is None else dict(found)

    def count(self) -> int:
        return len(self._table)

    def scan(self) -> Iterator[Doc]:
        for found in self._table:
            yield dict(found)

    def bulk_load(self, items: Iterable[tuple[str, Doc]]) -> None:
        """One `insert_multiple`: a single rewrite instead of N."""
        self.open(bulk=True)
        try:
            self._table.insert_multiple(
                self._document(data, doc_id=id_number(identifier) + 1)
                for identifier, data in items
            )
        finally:
            self.close()

    def limit(self, phase: str, size: int, wanted: int) -> int:
        """Every operation costs O(N): budget them (see `TINY_BUDGET`)."""
        if phase == "scan":
            return wanted
        budget = max(TINY_MIN_OPS, min(TINY_MAX_OPS, TINY_BUDGET // size))
        return min(wanted, budget)


class FilesAdapter(Adapter):
    """One JSON file per document in ``<root>/docs/<id>.json``.

    Durable variant, as the Rust Sentinel lays documents out: write a
    temp file, fsync it, rename it over the target, fsync the folder.
    The buffered variant does the same without the two fsyncs.
    """

    family = "jsonfiles"

    def __init__(self, root: str, counter: CountingOS | None) -> None:
        super().__init__(root, counter)
        self.folder = os.path.join(root, "docs")
        self._syncs = 0

    def open(self, bulk: bool = False) -> None:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder)
        self._sync = self.durable and not bulk
        self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        self.is_open = True

    def close(self) -> None:
        os.close(self._dir_fd)
        self.is_open = False

    def insert(self, identifier: str, data: Doc) -> None:
        target = os.path.join(self.folder, identifier + ".json")
        temp = os.path.join(self.folder, "." + identifier + ".tmp")
        payload = memoryview(encode(data))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while payload:
                payload = payload[os.write(fd, payload) :]
            if self._sync:
                os.fsync(fd)
                self._syncs += 1
        finally:
            os.close(fd)
        os.replace(temp, target)
        if self._sync:
            os.fsync(self._dir_fd)
            self._syncs += 1

    def get(self, identifier: str) -> Doc | None:
        try:
            with open(
                os.path.join(self.folder, identifier + ".json"), "rb"
            ) as handle:
                found: Doc = json.loads(handle.read())
        except FileNotFoundError:
            return None
        return found

    def count(self) -> int:
        with os.scandir(self.folder) as entries:
            return sum(1 for entry in entries if entry.name.endswith(".json"))

    def scan(self) -> Iterator[Doc]:
        names = sorted(
            name for name in os.listdir(self.folder) if name.endswith(".json")
        )
        for name in names:
            with open(os.path.join(self.folder, name), "rb") as handle:
                yield json.loads(handle.read())

    def sync_count(self) -> int | None:
        return self._syncs

    def limit(self, phase: str, size: int, wanted: int) -> int:
        """Scans read one file per document: cap them at large N."""
        return min(wanted, FILES_SCAN_CAP) if phase == "scan" else wanted


class FilesDurable(FilesAdapter):
    """JSON files with file and folder fsync."""

    key = "jsonfiles-durable"
    label = "json-files durable"
    durable = True
    notes = "temp file, fsync, rename, fsync folder (Rust Sentinel layout)"


class FilesBuffered(FilesAdapter):
    """JSON files without fsync."""

    key = "jsonfiles-buffered"
    label = "json-files buffered"
    notes = "temp file, rename; no fsync"


class GitAdapter(Adapter):
    """A bare Git repository through dulwich: loose blobs, ref per id.

    Each insert adds the JSON as a loose (zlib) blob with
    `DiskObjectStore.add_object` and points ``refs/docs/<id>`` at it.
    dulwich fsyncs the object (``fsync_object_files``) and the ref file
    before renaming each into place, but never fsyncs a folder, so a
    power loss can still lose a rename.  There is no write mode without
    the ref fsync, so there is no buffered variant.  The bulk (untimed)
    part of a load writes unsynced objects and one packed-refs file,
    as ``git pack-refs`` would leave it.
    """

    key = "git-dulwich"
    label = "git (dulwich)"
    family = "git"
    durable = True
    notes = (
        "loose blobs + one loose ref per id; fsyncs object and ref files, "
        "not folders; bulk part uses packed-refs"
    )
    prefix = b"refs/docs/"

    def open(self, bulk: bool = False) -> None:
        from dulwich.objects import Blob
        from dulwich.repo import Repo

        if not os.path.exists(os.path.join(self.root, "HEAD")):
            Repo.init_bare(self.root, mkdir=True)
        self._repo = Repo(self.root)
        self._repo.object_store.fsync_object_files = not bulk
        self._blob = Blob
        self.is_open = True

    def close(self) -> None:
        self._repo.close()
        self.is_open = False

    def _add(self, data: Doc) -> bytes:
        """Store `data` as a loose blob; return its SHA-1."""
        blob = self._blob.from_string(encode(data))
        self._repo.object_store.add_object(blob)
        address: bytes = blob.id
        return address

    def insert(self, identifier: str, data: Doc) -> None:
        self._repo.refs[self.prefix + identifier.encode()] = self._add(data)

    def get(self, identifier: str) -> Doc | None:
        try:
            address = self._repo.refs[self.prefix + identifier.encode()]
        except KeyError:
            return None
        found: Doc = json.loads(self._repo.object_store[address].data)
        return found

    def count(self) -> int:
        return len(self._repo.refs.keys(base=self.prefix))

    def scan(self) -> Iterator[Doc]:
        names = sorted(self._repo.refs.keys(base=self.prefix))
        refs, store = self._repo.refs, self._repo.object_store
        for name in names:
            yield json.loads(store[refs[self.prefix + name]].data)

    def bulk_load(self, items: Iterable[tuple[str, Doc]]) -> None:
        """Unsynced loose blobs, then one packed-refs file for all ids."""
        self.open(bulk=True)
        try:
            packed = {
                self.prefix + identifier.encode(): self._add(data)
                for identifier, data in items
            }
            self._repo.refs.add_packed_refs(packed)
        finally:
            self.close()

    def limit(self, phase: str, size: int, wanted: int) -> int:
        """Scans open two files per document: cap them at large N."""
        return min(wanted, FILES_SCAN_CAP) if phase == "scan" else wanted


ADAPTERS: tuple[type[Adapter], ...] = (
    SentinelDurable,
    SentinelBuffered,
    SqliteFull,
    SqliteNormal,
    TinyAdapter,
    FilesDurable,
    FilesBuffered,
    GitAdapter,
)
ENGINE_KEYS = tuple(kind.key for kind in ADAPTERS)
BASELINE_DURABLE = "sqlite-full"
BASELINE_BUFFERED = "sqlite-normal"
# The variant whose bulk path measures a family's memory.
MEMORY_TWIN = {
    "sentinel": "sentinel-buffered",
    "sqlite": "sqlite-normal",
    "tinydb": "tinydb",
    "jsonfiles": "jsonfiles-buffered",
    "git": "git-dulwich",
}


def adapter_class(key: str) -> type[Adapter]:
    """The adapter class of engine `key`."""
    for kind in ADAPTERS:
        if kind.key == key:
            return kind
    raise ValueError(f"unknown engine {key!r}")


def make_adapter(key: str, root: str, counter: CountingOS | None) -> Adapter:
    """A fresh adapter of engine `key` with its store in `root`."""
    return adapter_class(key)(root, counter)


# -- timing machinery ---------------------------------------------------------


@dataclass
class Task:
    """A timed phase of one engine: `steps` calls of `step`.

    `step(i)` performs step number `i` and returns the seconds its timed
    part took (work outside the timer, such as building the document,
    is not counted).  `weight` is the number of operations per step.
    """

    key: str
    steps: int
    step: Callable[[int], float]
    weight: int = 1
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total timed seconds so far."""
        return math.fsum(self.times)

    @property
    def ops(self) -> int:
        """Operations timed so far."""
        return len(self.times) * self.weight

    def rate(self) -> float | None:
        """Operations per second, or None if nothing was timed."""
        seconds = self.seconds
        return self.ops / seconds if self.times and seconds > 0 else None


def interleave(tasks: list[Task], chunk: int) -> None:
    """Run the tasks' steps round-robin until all are done.

    The task with the most steps does `chunk` per turn; the others are
    spread evenly over the same rounds, so every engine is measured
    across the same stretch of wall-clock time.  The order of engines
    is shuffled (seeded) every round, so no engine always runs right
    after the same neighbour and inherits its cache or writeback state.
    """
    live = [task for task in tasks if task.steps > 0]
    if not live:
        return
    gc.collect()
    rounds = max(1, math.ceil(max(task.steps for task in live) / chunk))
    done = [0] * len(live)
    order = list(range(len(live)))
    shuffler = random.Random(SEED)
    for number in range(rounds):
        shuffler.shuffle(order)
        for position in order:
            task = live[position]
            target = math.ceil(task.steps * (number + 1) / rounds)
            while done[position] < target:
                task.times.append(task.step(done[position]))
                done[position] += 1


class Gang:
    """A fixed set of worker threads that run one job each per turn.

    Reusing the threads keeps thread start-up out of the timings; the
    time of a turn runs from releasing the workers to the last finish.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._start = threading.Barrier(size + 1)
        self._end = threading.Barrier(size + 1)
        self._jobs: list[Callable[[], None]] | None = None
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(index,), daemon=True)
            for index in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self, index: int) -> None:
        """Worker loop: wait, run this thread's job, report the end."""
        while True:
            self._start.wait()
            jobs = self._jobs
            if jobs is None:
                return
            try:
                jobs[index]()
            except BaseException as exc:  # reported by `run`
                self._errors.append(exc)
            self._end.wait()

    def run(self, jobs: list[Callable[[], None]]) -> float:
        """Run one job per thread; return the seconds until all ended."""
        self._jobs = jobs
        started = time.perf_counter()
        self._start.wait()
        self._end.wait()
        elapsed = time.perf_counter() - started
        if self._errors:
            raise self._errors[0]
        return elapsed

    def close(self) -> None:
        """Stop and join the workers."""
        self._jobs = None
        self._start.wait()
        for thread in self._threads:
            thread.join()


def drop_caches() -> bool:
    """Flush dirty pages and drop the page cache; False if not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def disk_usage(root: str) -> tuple[int, int]:
    """(sum of file sizes, bytes allocated to files and folders)."""
    size = allocated = 0
    for folder, _, names in os.walk(root):
        allocated += os.lstat(folder).st_blocks * 512
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            size += info.st_size
            allocated += info.st_blocks * 512
    return size, allocated


def probe_fdatasync(folder: str, count: int = 50) -> float:
    """Median milliseconds of a 300-byte overwrite plus ``fdatasync``.

    A reference for how fast the disk was at the time of a phase.
    """
    path = os.path.join(folder, "probe.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, bytes(64 * 1024), 0)
        os.fsync(fd)
        times = []
        for index in range(count):
            os.pwrite(fd, b"x" * DOC_BYTES, (index * DOC_BYTES) % 60000)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1e3


def percentiles(times: list[float]) -> dict[str, float]:
    """p50, p99 and max of per-operation times, in milliseconds."""
    if not times:
        return {}
    ordered = sorted(times)
    last = len(ordered) - 1
    return {
        "p50_ms": ordered[last // 2] * 1e3,
        "p99_ms": ordered[min(last, math.ceil(0.99 * last))] * 1e3,
        "max_ms": ordered[last] * 1e3,
    }


# -- one store size -----------------------------------------------------------


@dataclass
class Settings:
    """What to run, from the command line."""

    sizes: list[int]
    write_ops: int
    read_ops: int
    engines: list[str]
    workdir: str
    memory: bool = True


@dataclass
class EngineResult:
    """Figures and sampling details of one engine at one size."""

    figures: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    capped: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        """The result as plain JSON types."""
        return {
            "figures": self.figures,
            "samples": self.samples,
            "latency": self.latency,
            "capped": sorted(self.capped),
        }


class SizeRun:
    """Every phase for every engine at one store size N."""

    def __init__(
        self,
        size: int,
        settings: Settings,
        folder: str,
        counter: CountingOS,
    ) -> None:
        self.size = size
        self.settings = settings
        self.folder = folder
        self.counter = counter
        self.adapters = [
            make_adapter(key, os.path.join(folder, key), counter)
            for key in settings.engines
        ]
        self.results = {key: EngineResult() for key in settings.engines}
        self.rng = random.Random(SEED + size)
        self.order_rng = random.Random(SEED - size)
        self.updated: dict[str, set[str]] = {
            key: set() for key in settings.engines
        }
        self.notes: list[str] = []
        self.cold_ok = False

    # -- helpers --------------------------------------------------------------

    def _record(
        self, adapter: Adapter, phase: str, wanted: int
    ) -> tuple[EngineResult, int]:
        """The engine's result and its op count for `phase`."""
        ops = min(wanted, adapter.limit(phase, self.size, wanted))
        result = self.results[adapter.key]
        result.samples[phase] = ops
        if ops < wanted:
            result.capped.add(phase)
        return result, ops

    def _expected(self, adapter: Adapter, identifier: str) -> Doc:
        """What `identifier` must read back as from this engine now."""
        rev = 1 if identifier in self.updated[adapter.key] else 0
        return make_document(identifier, rev)

    def _check(self, adapter: Adapter, identifier: str, got: Any) -> None:
        """Fail the run when an engine answers wrongly: a fast wrong
        answer is not a result."""
        if got != self._expected(adapter, identifier):
            raise RuntimeError(
                f"{adapter.key} returned wrong data for {identifier}: "
                f"{got!r:.200}"
            )

    def _shuffled(self) -> list[Adapter]:
        """The adapters in a fresh (seeded) order, for one-off timings."""
        order = list(self.adapters)
        self.order_rng.shuffle(order)
        return order

    # -- phases ---------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run all phases; return the JSON-ready results of this size."""
        started = time.monotonic()
        probe_before = probe_fdatasync(self.folder)
        try:
            self.load()
            self.footprint("", reopen=True)
            self.update()
            self.gets()
            self.footprint("_after_updates", reopen=False)
            self.scans()
            self.threaded()
        finally:
            for adapter in self.adapters:
                adapter.ensure_closed()
        probe_after = probe_fdatasync(self.folder)
        for adapter in self.adapters:
            shutil.rmtree(adapter.root, ignore_errors=True)
        if self.settings.memory:
            self.memory()
        return {
            "size": self.size,
            "seconds": time.monotonic() - started,
            "fdatasync_probe_ms": {
                "before": probe_before,
                "after": probe_after,
            },
            "cold_cache_dropped": self.cold_ok,
            "notes": self.notes,
            "engines": {
                key: result.as_json() for key, result in self.results.items()
            },
        }

    def load(self) -> None:
        """Load N documents; time the tail (all of it when buffered)."""
        log.info("N=%d: load", self.size)
        tasks = []
        for adapter in self.adapters:
            wanted = self.settings.write_ops if adapter.durable else self.size
            _, ops = self._record(adapter, "insert", min(wanted, self.size))
            first = self.size - ops
            if first:
                adapter.bulk_load(
                    (doc_id(index), make_document(doc_id(index)))
                    for index in range(first)
                )
            adapter.open()
            tasks.append(self._insert_task(adapter, first, ops))
        os.sync()
        interleave(tasks, CHUNK_WRITE)
        for adapter, task in zip(self.adapters, tasks, strict=True):
            result = self.results[adapter.key]
            tail = task.times[-LAST_INSERTS:]
            result.figures["insert_per_s"] = task.rate()
            result.figures["insert_us_last_1k"] = (
                math.fsum(tail) / len(tail) * 1e6 if tail else None
            )
            result.samples["insert_last"] = len(tail)
            result.latency["insert"] = percentiles(task.times)

    def _insert_task(self, adapter: Adapter, first: int, ops: int) -> Task:
        """Timed inserts of ids ``first .. first + ops - 1``, counting the
        engine's fsyncs outside the timer where it exposes them."""
        result = self.results[adapter.key]
        syncs = [0]

        def step(index: int) -> float:
            identifier = doc_id(first + index)
            data = make_document(identifier)
            before = adapter.sync_count()
            started = time.perf_counter()
            adapter.insert(identifier, data)
            elapsed = time.perf_counter() - started
            if before is not None:
                syncs[0] += (adapter.sync_count() or 0) - before
                result.figures["fsyncs_per_insert"] = syncs[0] / (index + 1)
            return elapsed

        return Task(adapter.key, ops, step)

    def update(self) -> None:
        """Replace existing documents, picked at random without repeats."""
        log.info("N=%d: update", self.size)
        most = min(self.size, self.settings.write_ops)
        order = [
            doc_id(index) for index in self.rng.sample(range(self.size), most)
        ]
        tasks = []
        for adapter in self.adapters:
            _, ops = self._record(adapter, "update", most)
            chosen = order[:ops]
            self.updated[adapter.key].update(chosen)

            def step(
                index: int,
                adapter: Adapter = adapter,
                chosen: list[str] = chosen,
            ) -> float:
                identifier = chosen[index]
                data = make_document(identifier, 1)
                started = time.perf_counter()
                adapter.insert(identifier, data)
                return time.perf_counter() - started

            tasks.append(Task(adapter.key, ops, step))
        interleave(tasks, CHUNK_WRITE)
        for adapter, task in zip(self.adapters, tasks, strict=True):
            result = self.results[adapter.key]
            result.figures["update_per_s"] = task.rate()
            result.latency["update"] = percentiles(task.times)

    def gets(self) -> None:
        """Read random ids; every answer is compared with its source."""
        log.info("N=%d: get", self.size)
        order = [
            doc_id(self.rng.randrange(self.size))
            for _ in range(self.settings.read_ops)
        ]
        tasks = []
        for adapter in self.adapters:
            _, ops = self._record(adapter, "get", self.settings.read_ops)

            def step(index: int, adapter: Adapter = adapter) -> float:
                identifier = order[index]
                started = time.perf_counter()
                got = adapter.get(identifier)
                elapsed = time.perf_counter() - started
                self._check(adapter, identifier, got)
                return elapsed

            tasks.append(Task(adapter.key, ops, step))
        interleave(tasks, CHUNK_READ)
        for adapter, task in zip(self.adapters, tasks, strict=True):
            result = self.results[adapter.key]
            result.figures["get_per_s"] = task.rate()
            result.latency["get"] = percentiles(task.times)

    def footprint(self, suffix: str, reopen: bool) -> None:
        """Close every store and measure what it holds on disk.

        Measured once right after the load (every engine then holds the
        same N documents, one version each: the figures in the table)
        and once after the updates (``..._after_updates``, in the JSON;
        Sentinel keeps every version, the others only the newest).
        """
        for adapter in self.adapters:
            adapter.close()
            size, allocated = disk_usage(adapter.root)
            figures = self.results[adapter.key].figures
            figures["disk_mb" + suffix] = size / 1e6
            figures["disk_alloc_mb" + suffix] = allocated / 1e6
            if reopen:
                adapter.open()

    def _scan_tasks(self) -> list[Task]:
        """One streaming scan per engine, checked for length."""
        tasks = []
        for adapter in self.adapters:
            _, ops = self._record(adapter, "scan", self.size)
            stream = adapter.scan()

            def step(
                index: int,
                adapter: Adapter = adapter,
                stream: Iterator[Doc] = stream,
                ops: int = ops,
            ) -> float:
                started = time.perf_counter()
                got = next(stream, None)
                elapsed = time.perf_counter() - started
                if got is None:
                    raise RuntimeError(
                        f"{adapter.key} scan ended after {index} of "
                        f"{self.size} documents"
                    )
                if index == ops - 1 and ops == self.size:
                    if next(stream, None) is not None:
                        raise RuntimeError(f"{adapter.key} scan is too long")
                return elapsed

            tasks.append(Task(adapter.key, ops, step))
        return tasks

    def scans(self) -> None:
        """Cold open and scan, then warm opens, count() and warm scan."""
        log.info("N=%d: open, count, scan", self.size)
        gc.collect()
        self.cold_ok = drop_caches()
        if self.cold_ok:
            for adapter in self._shuffled():
                started = time.perf_counter()
                adapter.open()
                elapsed = time.perf_counter() - started
                self.results[adapter.key].figures["open_cold_ms"] = (
                    elapsed * 1e3
                )
            tasks = self._scan_tasks()
            interleave(tasks, CHUNK_SCAN)
            for adapter, task in zip(self.adapters, tasks, strict=True):
                figures = self.results[adapter.key].figures
                figures["scan_cold_per_s"] = task.rate()
        else:
            self.notes.append(
                "cold scan and cold open: n/a (cannot drop caches)"
            )
        opens: dict[str, list[float]] = {key: [] for key in self.results}
        gc.collect()
        for _ in range(OPEN_REPEATS):
            for adapter in self._shuffled():
                adapter.ensure_closed()
                started = time.perf_counter()
                adapter.open()
                opens[adapter.key].append(time.perf_counter() - started)
        counts: dict[str, list[float]] = {key: [] for key in self.results}
        for _ in range(COUNT_REPEATS):
            for adapter in self._shuffled():
                counts[adapter.key].append(self._time_count(adapter))
        tasks = self._scan_tasks()
        interleave(tasks, CHUNK_SCAN)
        for adapter, task in zip(self.adapters, tasks, strict=True):
            figures = self.results[adapter.key].figures
            figures["open_warm_ms"] = (
                statistics.median(opens[adapter.key]) * 1e3
            )
            figures["count_us"] = statistics.median(counts[adapter.key]) * 1e6
            figures["scan_warm_per_s"] = task.rate()

    def _time_count(self, adapter: Adapter) -> float:
        """Seconds per `count()` call, checking the answer.

        One call is timed; when it takes under `COUNT_BATCH_BELOW`, a
        batch of `COUNT_BATCH` calls is timed and averaged instead, since
        a single call of a few microseconds measures mostly the cold CPU
        caches left by the engine that ran before.
        """
        started = time.perf_counter()
        found = adapter.count()
        elapsed = time.perf_counter() - started
        if found != self.size:
            raise RuntimeError(
                f"{adapter.key} counts {found}, not {self.size}"
            )
        if elapsed >= COUNT_BATCH_BELOW:
            return elapsed
        started = time.perf_counter()
        for _ in range(COUNT_BATCH):
            adapter.count()
        return (time.perf_counter() - started) / COUNT_BATCH

    def threaded(self) -> None:
        """Durable inserts from `THREADS` threads sharing one handle."""
        log.info("N=%d: %d writer threads", self.size, THREADS)
        pairs = []
        for adapter in self.adapters:
            writers = adapter.writers(THREADS)
            if writers is not None:
                pairs.append((adapter, writers))
        if not pairs:
            return
        gang = Gang(THREADS)
        tasks = []
        try:
            for adapter, writers in pairs:
                ops = min(self.size, self.settings.write_ops)
                steps = max(1, ops // (THREADS * PER_THREAD))
                self.results[adapter.key].samples["threads"] = (
                    steps * THREADS * PER_THREAD
                )
                tasks.append(self._thread_task(adapter, writers, gang, steps))
            interleave(tasks, max(1, CHUNK_WRITE // PER_THREAD))
        finally:
            gang.close()
            for adapter, _ in pairs:
                adapter.close_writers()
        for (adapter, _), task in zip(pairs, tasks, strict=True):
            self.results[adapter.key].figures["threads_insert_per_s"] = (
                task.rate()
            )

    def _thread_task(
        self, adapter: Adapter, writers: list[Writer], gang: Gang, steps: int
    ) -> Task:
        """Each step: every writer thread inserts `PER_THREAD` new ids
        at once; the step's time runs until the last thread is done."""
        result = self.results[adapter.key]
        syncs = [0]
        weight = THREADS * PER_THREAD

        def step(index: int) -> float:
            jobs = []
            for thread, write in enumerate(writers):
                batch = []
                for number in range(PER_THREAD):
                    identifier = f"t{thread}-{index:06d}-{number:03d}"
                    batch.append((identifier, make_document(identifier)))

                def job(
                    write: Writer = write,
                    batch: list[tuple[str, Doc]] = batch,
                ) -> None:
                    for identifier, data in batch:
                        write(identifier, data)

                jobs.append(job)
            before = adapter.sync_count()
            elapsed = gang.run(jobs)
            if before is not None:
                syncs[0] += (adapter.sync_count() or 0) - before
                result.figures["threads_fsyncs_per_insert"] = syncs[0] / (
                    (index + 1) * weight
                )
            return elapsed

        return Task(adapter.key, steps, step, weight)

    def memory(self) -> None:
        """Peak RSS of a child process loading each engine family."""
        families: dict[str, list[str]] = {}
        for key in self.results:
            family = adapter_class(key).family
            families.setdefault(family, []).append(key)
        for family, keys in families.items():
            log.info("N=%d: memory of %s", self.size, family)
            root = os.path.join(self.folder, "memory-" + family)
            try:
                found = subprocess.run(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        "--memory-child",
                        f"{MEMORY_TWIN[family]},{self.size},{root}",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                figures = json.loads(found.stdout)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            for key in keys:
                self.results[key].figures.update(figures)


def peak_rss_kb() -> int:
    """Peak resident set of this process image, in KiB.

    ``VmHWM`` from ``/proc/self/status``: unlike ``ru_maxrss``, which on
    Linux carries the parent's high-water mark across fork and exec (so
    every child of a big parent reports the parent's size), it starts
    afresh with the new image.  Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(spec: str) -> dict[str, float]:
    """In a child process: bulk-load, reopen and scan one store.

    Returns ``peak_rss_mb`` (the process's peak resident set, see
    `peak_rss_kb`) and ``rss_growth_mb`` (peak minus the high-water mark
    after imports and creating the empty store).
    """
    key, size_text, root = spec.split(",", 2)
    size = int(size_text)
    adapter = make_adapter(key, root, None)
    adapter.open()
    adapter.close()
    base = peak_rss_kb()
    adapter.bulk_load(
        (doc_id(index), make_document(doc_id(index))) for index in range(size)
    )
    adapter.open()
    scanned = sum(1 for _ in adapter.scan())
    adapter.close()
    if scanned != size:
        raise RuntimeError(f"{key}: scanned {scanned} of {size}")
    peak = peak_rss_kb()
    return {"peak_rss_mb": peak / 1024, "rss_growth_mb": (peak - base) / 1024}


# -- the whole run ------------------------------------------------------------


def run_benchmark(settings: Settings) -> dict[str, Any]:
    """Run every size; return the results as one JSON-ready dict.

    Installs the fsync-counting OS into `sentinel.fs` for the run and
    restores the previous one afterwards; all stores live in a temp
    folder under `settings.workdir`, removed at the end.
    """
    counter = CountingOS()
    previous = sentinel_fs.install(counter)
    folder = tempfile.mkdtemp(prefix="sentinel-bench-", dir=settings.workdir)
    sizes: dict[str, Any] = {}
    started = time.time()
    try:
        for size in settings.sizes:
            sizes[str(size)] = SizeRun(size, settings, folder, counter).run()
    finally:
        sentinel_fs.install(previous)
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "meta": environment(settings, started),
        "engines": {
            kind.key: {
                "label": kind.label,
                "family": kind.family,
                "durable": kind.durable,
                "notes": kind.notes,
            }
            for kind in ADAPTERS
            if kind.key in settings.engines
        },
        "sizes": sizes,
    }


def environment(settings: Settings, started: float) -> dict[str, Any]:
    """What the numbers depend on: versions, machine, settings."""
    versions = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sentinel": sentinel.__version__,
    }
    for name in ("tinydb", "dulwich"):
        try:
            module = __import__(name)
            version = getattr(module, "__version__", "?")
            if isinstance(version, tuple):
                version = ".".join(str(part) for part in version)
            versions[name] = str(version)
        except ImportError:
            versions[name] = "missing"
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": time.time() - started,
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "settings": {
            "sizes": settings.sizes,
            "write_ops": settings.write_ops,
            "read_ops": settings.read_ops,
            "threads": THREADS,
            "doc_bytes": DOC_BYTES,
            "workdir": settings.workdir,
            "memory": "peak RSS (VmHWM) of a child process per engine family",
        },
    }


# -- report -------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A column of the report: key, header, unit and direction."""

    key: str
    header: str
    legend: str
    write: bool = False
    higher: bool = True


TABLES: tuple[tuple[str, tuple[Figure, ...]], ...] = (
    (
        "writes",
        (
            Figure("insert_per_s", "insert/s", "inserts per second", True),
            Figure(
                "update_per_s", "update/s", "replacements per second", True
            ),
            Figure(
                "insert_us_last_1k",
                "us/ins@N",
                "microseconds per insert, last 1,000 of the load",
                True,
                False,
            ),
            Figure(
                "threads_insert_per_s",
                "4thr ins/s",
                "durable inserts per second, 4 threads, one handle",
                True,
            ),
        ),
    ),
    (
        "reads",
        (
            Figure("get_per_s", "get/s", "random gets per second"),
            Figure("scan_warm_per_s", "scan warm/s", "docs/s, warm cache"),
            Figure("scan_cold_per_s", "scan cold/s", "docs/s, dropped cache"),
            Figure("count_us", "count() us", "us per call", higher=False),
        ),
    ),
    (
        "open and footprint",
        (
            Figure(
                "open_warm_ms", "open ms", "ms, warm, median", higher=False
            ),
            Figure(
                "open_cold_ms", "open cold", "ms, cold cache", higher=False
            ),
            Figure("disk_mb", "disk MB", "sum of file sizes", higher=False),
            Figure("disk_alloc_mb", "alloc MB", "st_blocks*512", higher=False),
        ),
    ),
    (
        "memory and syncs",
        (
            Figure("peak_rss_mb", "peak RSS MB", "child VmHWM", higher=False),
            Figure(
                "rss_growth_mb", "RSS grow MB", "over imports", higher=False
            ),
            Figure(
                "fsyncs_per_insert",
                "fsync/ins",
                "fsync+fdatasync per insert (load)",
                True,
                False,
            ),
            Figure(
                "threads_fsyncs_per_insert",
                "fsync/ins 4t",
                "same, 4 threads",
                True,
                False,
            ),
        ),
    ),
)
LABEL_WIDTH = 20
CELL_WIDTH = 14


def fmt_number(value: float) -> str:
    """Three significant digits with k/M suffixes, at most 5 chars."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return _three(value / 1e6) + "M"
    if magnitude >= 1e4:
        return _three(value / 1e3) + "k"
    return _three(value)


def _three(value: float) -> str:
    """Three significant digits, without a suffix."""
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio like ``1.23x``; empty when there is nothing to compare."""
    if value is None:
        return ""
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    if value >= 0.1:
        return f"{value:.2f}x"
    return f"{value:.3f}x"


def baseline_of(figure: Figure, durable: bool) -> str:
    """The sqlite3 variant a figure of an engine is compared with."""
    return BASELINE_DURABLE if figure.write and durable else BASELINE_BUFFERED


def report_size(results: dict[str, Any], size_result: dict[str, Any]) -> str:
    """The tables of one size, as text of at most 79 columns."""
    engines = results["engines"]
    found = size_result["engines"]
    size = size_result["size"]
    probe = size_result["fdatasync_probe_ms"]
    lines = [
        "",
        f"=== N = {size:,} documents (~{DOC_BYTES} bytes of JSON each) ===",
        f"raw fdatasync p50: {probe['before']:.2f} ms before, "
        f"{probe['after']:.2f} ms after; "
        f"{size_result['seconds']:.0f} s for this size",
    ]
    for title, figures in TABLES:
        lines.append("")
        header = f"{title:<{LABEL_WIDTH}}" + "".join(
            f"{figure.header:>{CELL_WIDTH}}" for figure in figures
        )
        lines.append(header)
        lines.append("-" * len(header))
        for key, info in engines.items():
            cells = []
            for figure in figures:
                value = found[key]["figures"].get(figure.key)
                base_key = baseline_of(figure, info["durable"])
                base = (
                    found.get(base_key, {}).get("figures", {}).get(figure.key)
                )
                cells.append(_cell(figure, value, base, found[key]))
            lines.append(
                f"{info['label']:<{LABEL_WIDTH}}"
                + "".join(f"{cell:>{CELL_WIDTH}}" for cell in cells)
            )
    lines.extend(_footnotes(results, size_result))
    return "\n".join(lines)


def _cell(
    figure: Figure,
    value: float | None,
    base: float | None,
    engine: dict[str, Any],
) -> str:
    """One table cell: value (``*`` when capped) and ratio to `base`."""
    if value is None:
        return "n/a"
    mark = ""
    phase = {
        "insert_per_s": "insert",
        "insert_us_last_1k": "insert",
        "update_per_s": "update",
        "get_per_s": "get",
        "scan_warm_per_s": "scan",
        "scan_cold_per_s": "scan",
    }.get(figure.key)
    if phase is not None and phase in engine["capped"]:
        mark = "*"
    if figure.key == "insert_us_last_1k":
        if engine["samples"].get("insert_last", 0) < LAST_INSERTS:
            mark = "*"
    ratio = value / base if base else None
    text = fmt_number(value) + mark
    if ratio is not None:
        text += " " + fmt_ratio(ratio)
    return text


def _footnotes(
    results: dict[str, Any], size_result: dict[str, Any]
) -> list[str]:
    """Legend, sample sizes and caveats under the tables of one size."""
    size = size_result["size"]
    lines = [""]
    lines.extend(
        _wrap(
            "Each cell: value, then value / sqlite3 (write figures: FULL "
            "for durable engines, NORMAL for the others; read, open, disk "
            "and memory figures: NORMAL).  Figures per second: higher is "
            "better; us, ms, MB and fsync/ins: lower is better.  "
            "* = sampled under a cap (see below)."
        )
    )
    for title, figures in TABLES:
        legend = "; ".join(f"{f.header}: {f.legend}" for f in figures)
        lines.extend(_wrap(f"{title}: {legend}."))
    samples = []
    for key, info in results["engines"].items():
        engine = size_result["engines"][key]
        parts = [
            f"{phase} {count:,}"
            for phase, count in engine["samples"].items()
            if phase not in ("insert_last",)
        ]
        mark = " (* capped)" if engine["capped"] else ""
        samples.append(f"{info['label']}{mark}: " + ", ".join(parts))
    lines.extend(
        _wrap(
            "Timed operations per engine.  insert = the last inserts of the "
            f"load of {size:,}; any earlier ones were bulk-loaded without "
            "fsync, then sync-ed, before the timed ones began:"
        )
    )
    for sample in samples:
        lines.extend(_wrap(sample, "  "))
    for note in size_result["notes"]:
        lines.extend(_wrap(note))
    return lines


def _wrap(text: str, indent: str = "") -> list[str]:
    """Wrap `text` to 79 columns."""
    return textwrap.wrap(
        text, 79, initial_indent=indent, subsequent_indent=indent + "  "
    )


def report_costs(results: dict[str, Any]) -> str:
    """Microseconds per insert over the last 1,000 inserts, per size.

    Each cell also gives the ratio to sqlite3 of the same class at that
    size.  The sizes run minutes apart, so the disk may have drifted in
    between: ``growth`` is the raw last/first change, ``vs sqlite`` the
    same change divided by sqlite3's, which cancels the drift that both
    engines saw.  A flat cost shows as about 1.00x in ``vs sqlite``.
    """
    sizes = list(results["sizes"])
    if not sizes:
        return ""
    width, narrow = 13, 10
    header = f"{'us/insert, last 1k':<{LABEL_WIDTH}}" + "".join(
        f"{f'N={int(size):,}':>{width}}" for size in sizes
    )
    if len(sizes) > 1:
        header += f"{'growth':>{narrow}}{'vs sqlite':>{narrow}}"
    lines = [
        "",
        "=== cost per insert as the store grows ===",
        header,
        "-" * len(header),
    ]
    figure = TABLES[0][1][2]
    for key, info in results["engines"].items():
        values: list[float | None] = []
        bases: list[float | None] = []
        cells = []
        for size in sizes:
            found = results["sizes"][size]["engines"]
            engine = found[key]
            value = engine["figures"].get(figure.key)
            base_key = baseline_of(figure, info["durable"])
            base = found.get(base_key, {}).get("figures", {}).get(figure.key)
            values.append(value)
            bases.append(base)
            cells.append(_cell(figure, value, base, engine))
        line = f"{info['label']:<{LABEL_WIDTH}}" + "".join(
            f"{cell:>{width}}" for cell in cells
        )
        first, last = values[0], values[-1]
        if len(sizes) > 1 and first and last:
            growth = last / first
            line += f"{fmt_ratio(growth):>{narrow}}"
            if bases[0] and bases[-1]:
                relative = growth / (bases[-1] / bases[0])
                line += f"{fmt_ratio(relative):>{narrow}}"
        lines.append(line)
    lines.extend(
        _wrap(
            "* fewer than 1,000 timed inserts at that size (the figure is "
            "the mean of all of them).  Cells: value, then value / sqlite3 "
            "(FULL for durable engines, NORMAL for the others) at that size."
        )
    )
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    """The whole text report."""
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    parts = [
        "Sentinel peer benchmark",
        f"{meta['started']}, {meta['machine']['cpus']} CPUs, "
        f"{meta['seconds']:.0f} s",
    ]
    parts.extend(_wrap(versions))
    parts.append("engines:")
    for info in results["engines"].values():
        durable = "durable" if info["durable"] else "not durable"
        parts.extend(
            _wrap(f"{info['label']} [{durable}]: {info['notes']}", "  ")
        )
    for size_result in results["sizes"].values():
        parts.append(report_size(results, size_result))
    parts.append(report_costs(results))
    return "\n".join(parts)


# -- command line -------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Benchmark Sentinel against peer document stores."
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(size) for size in DEFAULT_SIZES),
        help="comma-separated store sizes (default 1000,10000)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run at N={QUICK_SIZE}"
    )
    parser.add_argument(
        "--write-ops",
        type=int,
        default=WRITE_OPS,
        help="timed durable inserts, updates (all engines) and threaded "
        "inserts per size (default 2,000)",
    )
    parser.add_argument(
        "--read-ops",
        type=int,
        default=READ_OPS,
        help="timed random gets per size (default 10,000)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINE_KEYS),
        help="comma-separated engines: " + ", ".join(ENGINE_KEYS),
    )
    parser.add_argument(
        "--dir",
        default=tempfile.gettempdir(),
        help="folder for the temporary stores (default: the temp dir)",
    )
    parser.add_argument(
        "--out", help="JSON output (default bench-results/bench-TIME.json)"
    )
    parser.add_argument(
        "--plot", action="store_true", help="also write an SVG plot"
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory child processes",
    )
    parser.add_argument(
        "--report",
        metavar="JSON",
        help="print the tables of a saved run (with --plot: its SVG) "
        "instead of running",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Validate the command line into `Settings`."""
    sizes = (
        [QUICK_SIZE]
        if args.quick
        else [int(part) for part in args.sizes.split(",") if part]
    )
    engines = [part for part in args.engines.split(",") if part]
    unknown = sorted(set(engines) - set(ENGINE_KEYS))
    if unknown:
        raise SystemExit(f"unknown engines: {', '.join(unknown)}")
    if not sizes or min(sizes) < 1:
        raise SystemExit("sizes must be positive")
    write_ops, read_ops = args.write_ops, args.read_ops
    if args.quick:
        write_ops, read_ops = min(write_ops, 100), min(read_ops, 200)
    return Settings(
        sizes=sizes,
        write_ops=write_ops,
        read_ops=read_ops,
        engines=[key for key in ENGINE_KEYS if key in engines],
        workdir=os.path.abspath(args.dir),
        memory=not args.no_memory,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report, write JSON (and SVG)."""
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr
    )
    if args.report:
        with open(args.report) as handle:
            results = json.load(handle)
        print(report(results))
        out = args.report
    else:
        results = run_benchmark(settings_from(args))
        print(report(results))
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = args.out or os.path.join(
            REPO, "bench-results", f"bench-{stamp}.json"
        )
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")
        print(f"\nresults: {out}")
    if args.plot:
        import bench_plot

        svg = os.path.splitext(out)[0] + ".svg"
        with open(svg, "w") as handle:
            handle.write(bench_plot.render(results))
        print(f"plot: {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
