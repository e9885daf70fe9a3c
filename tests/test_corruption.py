"""Corruption and tampering: RELIABILITY.md T19, T20, T23 and the
"crafted object on read" rows of the bad-input catalogue.

One store is seeded per module and per kind, plain and encrypted (with
a passphrase, at the test-only KDF cost): three collections spread over
several pack files, ids with several versions and a tombstone, two
ref-table checkpoints (the bytes of the older one are kept) and writes
after the last checkpoint.  Every test runs on both seeds.  Every case
damages a fresh copy of that folder and reopens it, in two modes: with
the ref table as it is ("table": objects before the checkpoint are
found through it) and without it ("replay": every frame is read
again).  One oracle judges every outcome:

- *refused*: open raises a `CorruptionError` naming a pack and an offset
  (for the key file of an encrypted store: the typed error its
  documented checks give);
- *read errors*: every read (get, history) returns exactly what was
  written or raises a `CorruptionError` naming a damaged object, and
  `verify` lists the damage (a `Problem` whose address or offset
  matches);
- *found by verify*: as above, but no read needed the damaged bytes;
- *torn tail (by design)*: the damage hit the last frame of the journal,
  which cannot be told from a write torn by a crash; the write is cut,
  earlier versions stay intact, and the next write zeroes the remains.

Anything else is counted as wrong data, an untyped error, a misreported
error (a typed error of the wrong family, or one that does not name the
damage) or undetected damage; those counts must stay zero.

The same oracle holds for both kinds: accidental damage is caught by
the CRCs and hashes both kinds share, or by a sealed object's tag, and
both are `CorruptionError`s naming the object or the pack.  What only
an encrypted store has gets cases of its own: its key file, a sealed
table that passes its checksum but not its tag, and sealed names
changed with their CRCs recomputed, which only the names' tags can
catch.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import figures
import pytest
from conftest import PASSPHRASE, Opener

import sentinel
from sentinel import codec, crypto, journal, keyfile, objects, refs, table

SEED = 0x5E171E1
MODES = ("table", "replay")
KINDS = ("plain", "encrypted")
PACK = re.compile(r"pack-\d{8}\.pack")

# The seed rolls packs at this size instead of 64 MiB, so a small store
# spans several packs (seals, headers, a chain to follow), and grows packs
# 4 KiB at a time instead of 1 MiB, so copying a store per case is cheap.
# Neither changes the format: readers never look at either constant.
SEED_PACK_LIMIT = 2500
SEED_EXTEND_STEP = 4096

# The ref table's layout (objects_spec/README.md, section 14): a 20-byte
# header (in clear in a sealed table too), the body, then a BLAKE3-256
# of everything before it.
TABLE_HEADER_SIZE = 20
TABLE_CHECKSUM_SIZE = 32

REFUSED = "refused at open"
READ_ERRORS = "read errors"
VERIFY_ONLY = "found by verify"
TORN = "torn tail (by design)"
WRONG = "wrong data"
UNTYPED = "untyped errors"
MISREPORTED = "misreported"
UNDETECTED = "undetected"
DETECTED = (REFUSED, READ_ERRORS, VERIFY_ONLY, TORN)
FAILURES = (WRONG, UNTYPED, MISREPORTED, UNDETECTED)
ENCRYPTED_CASES = "on encrypted stores"


# -- the seeded store ---------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """One acknowledged write, as the caller saw it."""

    collection: str
    doc_id: str
    version: int
    address: str
    data: dict[str, Any]
    deleted: bool


@dataclass(frozen=True)
class Span:
    """Bytes `start` to `end` of a pack, inside the frame that runs from
    `frame` to `frame_end`.  `tail`: that frame is the last one of the
    journal.  `closing`: it is the last frame of its pack holding an
    object.  `checkpointed`: the seed's ref table covers it."""

    pack: int
    start: int
    end: int
    frame: int
    frame_end: int
    tail: bool
    closing: bool
    checkpointed: bool

    @property
    def name(self) -> str:
        return journal.pack_name(self.pack)


@dataclass(frozen=True)
class Stored:
    """An object of the seed: its address field and its stored bytes."""

    address: bytes
    record: Span
    stored: Span


@dataclass
class Seed:
    """The seeded store and where each of its records lies."""

    root: Path
    writes: list[Written]
    objects: list[Stored]
    moves: list[tuple[Span, refs.Move]]
    seals: list[Span]
    packs: list[int]
    end: tuple[int, int]
    old_table: bytes
    table_position: tuple[int, int]
    opener: Opener
    codec: objects.ObjectCodec
    names: refs.NameCodec
    keys: crypto.Keys | None
    ids: list[tuple[str, str]] = field(default_factory=list)
    collection_records: list[Span] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return self.keys is not None

    def decode_table(self, data: bytes) -> refs.State:
        """A ref table of the seed's kind (sealed when encrypted)."""
        key = None if self.keys is None else self.keys.sealing_key
        return table.decode(data, self.names, key)

    def open(self, root: Path) -> sentinel.Store:
        """Open a copy of the seed as the seed itself was opened: with
        the passphrase (and the test KDF cost) when it is encrypted."""
        return self.opener(root)

    def versions(
        self, collection: str, doc_id: str, *, cut: bool = False
    ) -> list[Written]:
        """The versions of one id, newest first; `cut` drops the write
        of the last frame."""
        writes = self.writes[:-1] if cut else self.writes
        found = [
            w
            for w in writes
            if (w.collection, w.doc_id) == (collection, doc_id)
        ]
        return found[::-1]

    def log(self, *, cut: bool = False) -> list[tuple[str, str, int, str]]:
        writes = self.writes[:-1] if cut else self.writes
        return [(w.collection, w.doc_id, w.version, w.address) for w in writes]


def _doc(doc_id: str, version: int) -> dict[str, Any]:
    # Equal shapes give equal stored sizes, so the "replace with another
    # valid object" mutation has partners of the same length.
    return {"id": doc_id, "v": version, "pad": "x" * 24, "ok": True}


def _seed_writes(
    store: sentinel.Store, root: Path
) -> tuple[bytes, list[Written]]:
    """Run the seed workload; return the older table and the writes."""
    writes: list[Written] = []
    names = ("users", "orders", "audit.log")
    cols = {name: store.collection(name) for name in names}
    counts: dict[tuple[str, str], int] = {}

    def put(name: str, doc_id: str) -> None:
        number = counts.get((name, doc_id), 0) + 1
        counts[(name, doc_id)] = number
        data = _doc(doc_id, number)
        doc = cols[name].insert(doc_id, data)
        assert doc.version == number
        writes.append(Written(name, doc_id, number, doc.hash, data, False))

    def delete(name: str, doc_id: str) -> None:
        assert cols[name].delete(doc_id)
        number = counts[(name, doc_id)] + 1
        counts[(name, doc_id)] = number
        head = cols[name].history(doc_id)[0]
        assert head.deleted and head.version == number
        writes.append(Written(name, doc_id, number, head.hash, {}, True))

    def checkpoint() -> None:
        with store._engine.state_lock:
            store._engine.checkpoint()

    for i in range(4):
        put("users", f"u{i}")
    for i in range(3):
        put("orders", f"o{i}")
    put("audit.log", "e0")
    checkpoint()
    old_table = (root / "refs" / "table").read_bytes()

    for i in range(4):
        put("users", f"u{i}")
    put("orders", "o0")
    delete("orders", "o1")
    put("audit.log", "e0")
    checkpoint()

    put("users", "u0")
    put("users", "u1")
    put("orders", "o1")
    put("audit.log", "e1")
    put("orders", "o2")
    put("users", "u3")
    # The last write: its frame is the journal's tail.
    put("users", "u2")
    return old_table, writes


def _pack_frames(root: Path, number: int) -> list[journal.Frame]:
    data = (root / "objects" / journal.pack_name(number)).read_bytes()
    body = data[journal.PACK_HEADER_SIZE :]
    return list(journal.parse_frames(body, number, journal.PACK_HEADER_SIZE))


def _span(
    frame: journal.Frame,
    start: int,
    end: int,
    tail: bool,
    closing: bool,
    position: tuple[int, int],
) -> Span:
    return Span(
        frame.pack,
        start,
        end,
        frame.offset,
        frame.end,
        tail,
        closing,
        (frame.pack, frame.end) <= position,
    )


def _map_seed(
    root: Path,
    writes: list[Written],
    old_table: bytes,
    store: sentinel.Store,
    opener: Opener,
    keys: crypto.Keys | None,
) -> Seed:
    """Find every record of the seeded journal, and check it against the
    engine's own index (`store`, still open)."""
    engine = store._engine
    locations = dict(engine.state.objects)
    key = None if keys is None else keys.sealing_key
    checkpoint = (root / "refs" / "table").read_bytes()
    position = table.decode(checkpoint, engine.state.names, key).position
    packs = sorted(
        int(name[5:13])
        for name in os.listdir(root / "objects")
        if PACK.fullmatch(name)
    )
    frames = {number: _pack_frames(root, number) for number in packs}
    last = packs[-1]
    tail = frames[last][-1]
    found: list[Stored] = []
    moves: list[tuple[Span, refs.Move]] = []
    seals: list[Span] = []
    collections: list[Span] = []
    for number in packs:
        closing = max(
            f.offset
            for f in frames[number]
            if any(
                r.kind == journal.RECORD_OBJECT
                for r in journal.records(f.body, f.body_offset)
            )
        )
        for frame in frames[number]:
            flags = (frame is tail, frame.offset == closing, position)
            for item in journal.records(frame.body, frame.body_offset):
                stop = item.offset + len(item.content)
                if item.kind == journal.RECORD_OBJECT:
                    address = item.content[:32]
                    record = _span(
                        frame, item.offset, item.offset + 32, *flags
                    )
                    stored = _span(frame, item.offset + 32, stop, *flags)
                    assert refs.place(locations[address]) == (
                        number,
                        stored.start,
                        stored.end - stored.start,
                    )
                    found.append(Stored(address, record, stored))
                elif item.kind == journal.RECORD_REF:
                    move = refs.decode_move(item.content, engine.state.names)
                    moves.append(
                        (_span(frame, item.offset, stop, *flags), move)
                    )
                elif item.kind == journal.RECORD_SEAL:
                    seals.append(_span(frame, item.offset, stop, *flags))
                elif item.kind == journal.RECORD_COLLECTION:
                    collections.append(_span(frame, item.offset, stop, *flags))
    assert {s.address for s in found} == set(locations)
    assert len(moves) == len(writes) and len(seals) == len(packs) - 1
    seed = Seed(
        root,
        writes,
        found,
        moves,
        seals,
        packs,
        (last, tail.end),
        old_table,
        position,
        opener,
        engine.codec,
        engine.state.names,
        keys,
    )
    seed.ids = sorted({(w.collection, w.doc_id) for w in writes})
    seed.collection_records = collections
    return seed


@pytest.fixture(scope="module", params=KINDS)
def seed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Seed:
    """The seeded store, closed; cases copy it and never touch it.  Made
    twice: plain, and encrypted with `PASSPHRASE` at the test-only KDF
    cost (as test_passphrase.py does), so that opening one of the
    hundreds of copies costs no real Argon2id run."""
    encrypted = request.param == "encrypted"
    opener = Opener(encrypted)
    root = tmp_path_factory.mktemp(f"seed-{request.param}") / "store"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(journal, "PACK_LIMIT", SEED_PACK_LIMIT)
        patch.setattr(journal, "EXTEND_STEP", SEED_EXTEND_STEP)
        store = opener(root)
        try:
            assert store.encrypted == encrypted
            old_table, writes = _seed_writes(store, root)
            keys = (
                crypto.open_keyfile(keyfile.read(str(root)), PASSPHRASE)
                if encrypted
                else None
            )
            seed = _map_seed(root, writes, old_table, store, opener, keys)
        finally:
            store.close()

    # The workload must give every kind of case something to hit.
    assert len(seed.packs) >= 3
    assert any(s.stored.checkpointed for s in seed.objects)
    assert any(
        not s.stored.checkpointed and not s.stored.tail for s in seed.objects
    )
    assert sum(s.stored.tail for s in seed.objects) == 1
    assert seed.writes[-1].address == next(
        s.address.hex() for s in seed.objects if s.stored.tail
    )
    return seed


@dataclass(frozen=True)
class Stranger:
    """Files of another encrypted store, made with the same passphrase:
    valid in every way, but under other keys."""

    keys: bytes
    table: bytes


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Stranger:
    root = tmp_path_factory.mktemp("stranger") / "store"
    with Opener(True)(root) as store:
        store.collection("users").insert("u0", _doc("u0", 1))
        with store._engine.state_lock:
            store._engine.checkpoint()
    return Stranger(
        (root / keyfile.FILE_NAME).read_bytes(),
        (root / "refs" / "table").read_bytes(),
    )


def _copy(seed: Seed, target: Path, mode: str) -> Path:
    root = target / "store"
    shutil.copytree(seed.root, root)
    if mode == "replay":
        os.unlink(root / "refs" / "table")
    return root


def _pack_path(root: Path, number: int) -> Path:
    return root / "objects" / journal.pack_name(number)


def _flip(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes((byte ^ (1 << bit),)))


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


# -- the oracle ---------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One injected fault: what it does and what it may be blamed on."""

    label: str
    mutate: Callable[[Path], None]
    damaged: frozenset[str] = frozenset()
    places: frozenset[tuple[str, int]] = frozenset()
    torn: bool = False


@dataclass
class Verdict:
    category: str
    detail: str
    error: BaseException | None = None


def _names_a_pack(exc: sentinel.CorruptionError, root: Path) -> bool:
    if exc.path is None or exc.offset is None:
        return False
    path = Path(exc.path)
    return path.parent == root / "objects" and bool(PACK.fullmatch(path.name))


def _same(doc: sentinel.Document, written: Written) -> bool:
    return (
        doc.collection,
        doc.id,
        doc.version,
        doc.hash,
        doc.deleted,
        doc.data,
    ) == (
        written.collection,
        written.doc_id,
        written.version,
        written.address,
        written.deleted,
        written.data,
    )


class _Reads:
    """Runs every read of the seeded ids and sorts what comes back."""

    def __init__(self, seed: Seed, store: sentinel.Store, case: Case):
        self.seed = seed
        self.store = store
        self.case = case
        self.issues: list[tuple[str, str]] = []
        self.failed = False

    def attempt(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except sentinel.CorruptionError as exc:
            named = exc.address in self.case.damaged or (
                exc.address is None
                and _names_a_pack(exc, Path(self.store.path))
            )
            if not named:
                self.issues.append(
                    (MISREPORTED, f"{what}: {exc!r} names no damage")
                )
            self.failed = True
        except sentinel.SentinelError as exc:
            self.issues.append((MISREPORTED, f"{what}: {exc!r}"))
        except Exception as exc:
            self.issues.append((UNTYPED, f"{what}: {exc!r}"))
        return None

    def run(self, *, cut: bool, log: bool = False) -> None:
        seed, store = self.seed, self.store
        present = store.list_collections()
        for name in sorted({c for c, _ in seed.ids}):
            if name not in present:
                self.issues.append((WRONG, f"collection {name} is gone"))
        for name, doc_id in seed.ids:
            if name not in present:
                continue
            self._one(store.collection(name), doc_id, cut)
        if log:
            self.log(self.seed.log(cut=cut))

    def _one(self, col: sentinel.Collection, doc_id: str, cut: bool) -> None:
        where = f"{col.name()}/{doc_id}"
        expected = self.seed.versions(col.name(), doc_id, cut=cut)
        got = self.attempt(f"get {where}", lambda: (col.get(doc_id),))
        if got is not None:
            doc = got[0]
            if not expected or expected[0].deleted:
                if doc is not None:
                    self.issues.append((WRONG, f"get {where} gave {doc!r}"))
            elif doc is None or not _same(doc, expected[0]):
                self.issues.append((WRONG, f"get {where} gave {doc!r}"))
        docs = self.attempt(f"history {where}", lambda: col.history(doc_id))
        if docs is not None:
            if len(docs) != len(expected) or not all(
                _same(d, w) for d, w in zip(docs, expected, strict=False)
            ):
                self.issues.append(
                    (WRONG, f"history {where} gave {docs!r}, not {expected}")
                )

    def log(self, expected: list[tuple[str, str, int, str]]) -> None:
        """`Store.log` lists every committed write, or raises."""
        entries = self.attempt("log", lambda: list(self.store.log()))
        if entries is None:
            return
        moves = [
            (e.collection, e.id, e.version, e.hash)
            for e in entries
            if e.action in ("write", "delete")
        ]
        if moves != expected:
            self.issues.append(
                (
                    WRONG,
                    f"log lists {len(moves)} writes, not the "
                    f"{len(expected)} committed ones",
                )
            )


def _verify(
    store: sentinel.Store, case: Case, issues: list[tuple[str, str]]
) -> sentinel.VerifyReport | None:
    try:
        return store.verify()
    except sentinel.SentinelError as exc:
        issues.append((MISREPORTED, f"verify raised {exc!r}"))
    except Exception as exc:
        issues.append((UNTYPED, f"verify raised {exc!r}"))
    return None


def _lists(report: sentinel.VerifyReport, case: Case) -> bool:
    """Whether `report` points at the damage of `case`: by address, by
    pack and offset, or (offset 0, a pack header) by a bad-pack
    problem of that pack."""
    for problem in report.problems:
        if problem.address is not None and problem.address in case.damaged:
            return True
        name = os.path.basename(problem.path)
        if (name, problem.offset) in case.places:
            return True
        if problem.kind == "bad-pack" and (name, 0) in case.places:
            return True
    return False


def judge(seed: Seed, root: Path, case: Case) -> Verdict:
    """Reopen a damaged copy and sort the outcome into one category."""
    try:
        store = seed.open(root)
    except sentinel.CorruptionError as exc:
        if case.torn:
            return Verdict(MISREPORTED, f"torn tail refused: {exc!r}", exc)
        if not _names_a_pack(exc, root):
            return Verdict(MISREPORTED, f"open: {exc!r} names no pack", exc)
        return Verdict(REFUSED, str(exc), exc)
    except sentinel.SentinelError as exc:
        return Verdict(MISREPORTED, f"open raised {exc!r}", exc)
    except Exception as exc:
        return Verdict(UNTYPED, f"open raised {exc!r}", exc)

    try:
        reads = _Reads(seed, store, case)
        reads.run(cut=case.torn)
        issues = reads.issues
        report = _verify(store, case, issues)
    finally:
        store.close()
    if report is not None:
        if case.torn:
            if report.problems:
                issues.append(
                    (MISREPORTED, f"torn tail reported as {report.problems}")
                )
            if report.torn_tail_bytes <= 0:
                issues.append((UNDETECTED, "verify saw no torn tail"))
        elif report.ok:
            issues.append((UNDETECTED, "verify finds nothing"))
        elif not _lists(report, case):
            issues.append(
                (MISREPORTED, f"verify names other things: {report.problems}")
            )
    if case.torn and not issues:
        _check_cut(seed, root, case, issues)

    for category in FAILURES:
        for found, detail in issues:
            if found == category:
                return Verdict(category, detail)
    if case.torn:
        return Verdict(TORN, "the last write was cut")
    if reads.failed:
        return Verdict(READ_ERRORS, "reads of the damage failed")
    return Verdict(VERIFY_ONLY, "reads were intact; verify found it")


def _check_cut(
    seed: Seed, root: Path, case: Case, issues: list[tuple[str, str]]
) -> None:
    """After a torn tail: the next write zeroes its remains, and a
    reopened store is clean and holds everything else."""
    try:
        with seed.open(root) as store:
            store.collection("users").insert("after-cut", {"n": 1})
        with seed.open(root) as store:
            reads = _Reads(seed, store, case)
            reads.run(cut=True)
            after = store.collection("users").get("after-cut")
            if after is None or after.data != {"n": 1}:
                issues.append((WRONG, "the write after the cut is lost"))
            else:
                again = ("users", "after-cut", 1, after.hash)
                reads.log([*seed.log(cut=True), again])
            issues.extend(reads.issues)
            report = store.verify()
            if not report.ok or report.torn_tail_bytes:
                issues.append(
                    (
                        MISREPORTED,
                        f"after the cut: {report.problems}, "
                        f"{report.torn_tail_bytes} torn bytes",
                    )
                )
    except sentinel.SentinelError as exc:
        issues.append((MISREPORTED, f"after the cut: {exc!r}"))
    except Exception as exc:
        issues.append((UNTYPED, f"after the cut: {exc!r}"))


def record_figure(seed: Seed, counts: dict[str, int]) -> None:
    """Add one test's verdicts to the "corruptions" figure, every
    category listed so the line reads the same whatever ran.  The line
    covers both kinds of store; `ENCRYPTED_CASES` says how many of the
    injected faults hit an encrypted one."""
    tally = dict.fromkeys(DETECTED + FAILURES, 0)
    tally.update(counts)
    injected = sum(tally.values())
    figures.record(
        "corruptions",
        zero=FAILURES,
        injected=injected,
        **{ENCRYPTED_CASES: injected if seed.encrypted else 0},
        detected=sum(tally[c] for c in DETECTED),
        **tally,
    )


def run_cases(
    seed: Seed,
    tmp_path: Path,
    mode: str,
    cases: list[Case],
    allowed: Callable[[Case], tuple[str, ...]],
    expect_error: type[sentinel.CorruptionError] | None = None,
) -> None:
    """Judge every case on its own copy; record the figure; fail with
    every unexpected verdict listed."""
    assert cases, "the seed gave this mutation nothing to hit"
    tally = dict.fromkeys(DETECTED + FAILURES, 0)
    unexpected: list[str] = []
    for number, case in enumerate(cases):
        root = _copy(seed, tmp_path / f"case-{number}", mode)
        case.mutate(root)
        verdict = judge(seed, root, case)
        tally[verdict.category] += 1
        wanted = allowed(case)
        wrong_type = (
            verdict.category == REFUSED
            and expect_error is not None
            and not isinstance(verdict.error, expect_error)
        )
        if verdict.category not in wanted or wrong_type:
            unexpected.append(
                f"{case.label} [{mode}]: {verdict.category} "
                f"(wanted {' or '.join(wanted)}): {verdict.detail}"
            )
        shutil.rmtree(root.parent)
    record_figure(seed, tally)
    assert not unexpected, (
        f"{len(unexpected)} of {len(cases)} cases:\n" + "\n".join(unexpected)
    )


def _usual(case: Case) -> tuple[str, ...]:
    if case.torn:
        return (TORN,)
    return (REFUSED, READ_ERRORS, VERIFY_ONLY)


# -- T19: object mutations ----------------------------------------------------


def _object_case(seed: Seed, kind: str, item: Stored) -> Iterator[Case]:
    """The cases of one mutation `kind` against one object."""
    stored = item.stored
    hexa = item.address.hex()
    rng = random.Random(f"{SEED}:{kind}:{hexa}")
    label = f"{kind} {hexa[:12]} ({stored.name}@{stored.start})"
    places = frozenset(
        {(stored.name, stored.frame), (stored.name, stored.start)}
    )
    length = stored.end - stored.start

    def pack_of(root: Path) -> Path:
        return _pack_path(root, stored.pack)

    if kind == "bit flip":
        where = stored.start + rng.randrange(length)
        bit = rng.randrange(8)
        yield Case(
            f"{label} byte {where} bit {bit}",
            lambda root: _flip(pack_of(root), where, bit),
            frozenset({hexa}),
            places,
            stored.tail,
        )
    elif kind == "zero fill":
        yield Case(
            label,
            lambda root: _write_at(pack_of(root), stored.start, bytes(length)),
            frozenset({hexa}),
            places,
            stored.tail,
        )
    elif kind == "replace":
        twins = [
            other
            for other in seed.objects
            if other.address != item.address
            and other.stored.end - other.stored.start == length
        ]
        if twins:
            twin = rng.choice(twins)

            def replace(root: Path) -> None:
                source = _pack_path(root, twin.stored.pack)
                data = _read_at(source, twin.stored.start, length)
                _write_at(pack_of(root), stored.start, data)

            yield Case(
                f"{label} with {twin.address.hex()[:12]}",
                replace,
                frozenset({hexa}),
                places,
                stored.tail,
            )
        else:
            # No valid object of the same length: put another object's
            # address on this one's record instead.
            other = rng.choice(
                [o for o in seed.objects if o.address != item.address]
            )
            yield Case(
                f"{label} renamed {other.address.hex()[:12]}",
                lambda root: _write_at(
                    pack_of(root), item.record.start, other.address
                ),
                frozenset({hexa, other.address.hex()}),
                places | {(stored.name, item.record.start)},
                stored.tail,
            )
    elif kind == "delete":
        bogus = rng.randbytes(32)
        yield Case(
            label,
            lambda root: _write_at(pack_of(root), item.record.start, bogus),
            frozenset({hexa}),
            places | {(stored.name, item.record.start)},
            stored.tail,
        )
    elif kind == "truncate" and stored.closing:
        # Cutting a file only makes sense at its end: the closing object
        # of each pack.  In a sealed pack that also cuts the seal; the
        # cut right after the object's frame removes the seal alone, as
        # a file system that loses the tail of a file would.
        cuts = {"start": stored.start, "half": stored.start + length // 2}
        if not stored.tail:
            cuts["seal"] = stored.frame_end
        for cut, size in cuts.items():
            yield Case(
                f"{label} cut at {cut} ({size})",
                lambda root, size=size: os.truncate(pack_of(root), size),
                frozenset({hexa}),
                places | {(stored.name, stored.frame_end)},
                stored.tail,
            )


OBJECT_MUTATIONS = ("bit flip", "zero fill", "replace", "delete", "truncate")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", OBJECT_MUTATIONS)
def test_object_damage_is_detected(
    seed: Seed, tmp_path: Path, kind: str, mode: str
) -> None:
    """T19: each mutation of each object of the seed is refused at open,
    fails every read that needs it, or (last frame only) is cut as a
    torn write; never wrong data, and verify lists it."""
    cases = [
        case
        for item in seed.objects
        for case in _object_case(seed, kind, item)
    ]
    run_cases(seed, tmp_path, mode, cases, _usual)


@pytest.mark.parametrize("mode", MODES)
def test_log_does_not_end_early_at_damage(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """`Store.log` reads the packs itself.  After damage the store
    salvages at open (a flipped bit in an object of a middle frame), the
    log raises a `CorruptionError` naming the pack, or still lists every
    committed write: it never just ends early, as if the rest of the
    history did not exist."""
    failures = []
    hits = [
        next(s for s in seed.objects if s.stored.pack == number)
        for number in seed.packs
    ]
    for number, item in enumerate(hits):
        stored = item.stored
        root = _copy(seed, tmp_path / f"case-{number}", mode)
        _flip(_pack_path(root, stored.pack), stored.start + 20, 0)
        case = Case("log", lambda root: None, frozenset({item.address.hex()}))
        with seed.open(root) as store:
            reads = _Reads(seed, store, case)
            reads.log(seed.log())
        failures += [
            f"flip in {stored.name}@{stored.start}: {detail}"
            for _, detail in reads.issues
        ]
    record_figure(
        seed, {WRONG: len(failures), READ_ERRORS: len(hits) - len(failures)}
    )
    assert not failures, "\n".join(failures)


# -- T20: journal structure and ref moves -------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_damaged_ref_move_refuses_open(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """A bit flip in a ref-move record of a frame that valid frames
    follow is damage to an acknowledged write: `CorruptJournalError` at
    open.  In table mode a frame the table already covers is not read
    at open; verify must then list the damaged frame."""
    cases: list[Case] = []
    covered: set[str] = set()
    for span, move in seed.moves:
        rng = random.Random(f"{SEED}:move:{span.pack}:{span.start}")
        where = span.start + rng.randrange(span.end - span.start)
        bit = rng.randrange(8)
        label = (
            f"ref move {move.collection}/{move.id} v{move.version} "
            f"({span.name}@{span.frame}) byte {where} bit {bit}"
        )
        if mode == "table" and span.checkpointed:
            covered.add(label)
        cases.append(
            Case(
                label,
                lambda root, s=span, w=where, b=bit: _flip(
                    _pack_path(root, s.pack), w, b
                ),
                frozenset(),
                frozenset({(span.name, span.frame)}),
                span.tail,
            )
        )

    def allowed(case: Case) -> tuple[str, ...]:
        if case.torn:
            return (TORN,)
        if case.label in covered:
            return (VERIFY_ONLY,)
        return (REFUSED,)

    run_cases(
        seed, tmp_path, mode, cases, allowed, sentinel.CorruptJournalError
    )


@pytest.mark.parametrize("mode", MODES)
def test_damaged_seal_refuses_open(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """A seal is the last frame of a full pack, but never a torn tail:
    the next pack holds frames.  Damage to it is `CorruptJournalError`
    naming the pack and the seal's offset (or, when the ref table covers
    it, something verify lists by that offset)."""
    cases: list[Case] = []
    covered: set[str] = set()
    for span in seed.seals:
        rng = random.Random(f"{SEED}:seal:{span.pack}")
        where = span.start + rng.randrange(span.end - span.start)
        bit = rng.randrange(8)
        label = f"seal of {span.name} ({span.frame}) byte {where} bit {bit}"
        if mode == "table" and span.checkpointed:
            covered.add(label)
        cases.append(
            Case(
                label,
                lambda root, s=span, w=where, b=bit: _flip(
                    _pack_path(root, s.pack), w, b
                ),
                frozenset(),
                frozenset({(span.name, span.frame)}),
            )
        )

    def allowed(case: Case) -> tuple[str, ...]:
        if case.label in covered:
            return (REFUSED, VERIFY_ONLY)
        return (REFUSED,)

    run_cases(
        seed, tmp_path, mode, cases, allowed, sentinel.CorruptJournalError
    )


@pytest.mark.parametrize("mode", MODES)
def test_damaged_pack_header_refuses_open(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """Every pack header (magic, format, number, CRC) is checked when the
    store opens: a flipped bit is `CorruptJournalError` at offset 0."""
    cases = []
    for number in seed.packs:
        rng = random.Random(f"{SEED}:header:{number}")
        where = rng.randrange(journal.PACK_HEADER_SIZE)
        bit = rng.randrange(8)
        name = journal.pack_name(number)
        cases.append(
            Case(
                f"header of {name} byte {where} bit {bit}",
                lambda root, n=number, w=where, b=bit: _flip(
                    _pack_path(root, n), w, b
                ),
                frozenset(),
                frozenset({(name, 0)}),
            )
        )
    run_cases(
        seed,
        tmp_path,
        mode,
        cases,
        lambda case: (REFUSED,),
        sentinel.CorruptJournalError,
    )


# -- T20: the ref table -------------------------------------------------------


def _table_cases(
    seed: Seed, stranger: Stranger
) -> list[tuple[str, Callable[[Path], None]]]:
    rng = random.Random(f"{SEED}:table")
    size = len((seed.root / "refs" / "table").read_bytes())
    where, bit = rng.randrange(size), rng.randrange(8)

    def flip(root: Path) -> None:
        _flip(root / "refs" / "table", where, bit)

    def half(root: Path) -> None:
        os.truncate(root / "refs" / "table", size // 2)

    def empty(root: Path) -> None:
        os.truncate(root / "refs" / "table", 0)

    def garbage(root: Path) -> None:
        (root / "refs" / "table").write_bytes(rng.randbytes(size))

    cases = [
        (f"bit flip at byte {where} bit {bit}", flip),
        (f"truncated to {size // 2} bytes", half),
        ("truncated to 0 bytes", empty),
        ("replaced by random bytes", garbage),
    ]
    if not seed.encrypted:
        return cases
    # A sealed table (encryption.md, section 10) adds a check behind the
    # checksum: its box must open under the store's sealing key.  These
    # two cases pass the checksum and reach it: a changed box byte with
    # the checksum recomputed (anyone can recompute a BLAKE3), and the
    # valid table of another store.  A plain table has no such check (a
    # plain table with a recomputed checksum is believed, as the cache
    # it is), so they exist for encrypted stores only.
    box = rng.randrange(TABLE_HEADER_SIZE, size - TABLE_CHECKSUM_SIZE)
    box_bit = rng.randrange(8)

    def sealed_box(root: Path) -> None:
        path = root / "refs" / "table"
        _flip(path, box, box_bit)
        _rehash_table(path)

    def foreign(root: Path) -> None:
        (root / "refs" / "table").write_bytes(stranger.table)

    return [
        *cases,
        (f"box byte {box} bit {box_bit}, checksum recomputed", sealed_box),
        ("another store's valid table", foreign),
    ]


def _rehash_table(path: Path) -> None:
    """Recompute the trailing BLAKE3-256 of a ref table."""
    data = path.read_bytes()[:-TABLE_CHECKSUM_SIZE]
    path.write_bytes(data + blake3.blake3(data).digest())


def test_damaged_ref_table_is_rebuilt(
    seed: Seed, stranger: Stranger, tmp_path: Path
) -> None:
    """A table that fails its checksum (or, sealed, its tag) is ignored:
    the store opens, every read is rebuilt from the journal, and verify
    reports the table."""
    table_cases = _table_cases(seed, stranger)
    failures = []
    for number, (label, mutate) in enumerate(table_cases):
        root = _copy(seed, tmp_path / f"case-{number}", "table")
        mutate(root)
        case = Case(label, mutate)
        with seed.open(root) as store:
            reads = _Reads(seed, store, case)
            reads.run(cut=False)
            report = _verify(store, case, reads.issues)
        kinds = [p.kind for p in report.problems] if report else []
        if reads.issues or reads.failed or kinds != ["ref-table"]:
            failures.append(f"{label}: {reads.issues} {kinds}")
    passed = len(table_cases) - len(failures)
    record_figure(seed, {VERIFY_ONLY: passed, MISREPORTED: len(failures)})
    assert not failures, "\n".join(failures)


def test_rolled_back_ref_table_is_brought_up_to_date(
    seed: Seed, tmp_path: Path
) -> None:
    """An older, valid table (refs/table rolled back alone) is a valid
    checkpoint of an earlier position: replaying the journal from there
    brings every ref up to date, so the newest data is read and verify
    finds nothing wrong."""
    root = _copy(seed, tmp_path, "table")
    (root / "refs" / "table").write_bytes(seed.old_table)
    older = seed.decode_table(seed.old_table).position
    assert older < seed.table_position
    with seed.open(root) as store:
        reads = _Reads(seed, store, Case("old table", lambda root: None))
        reads.run(cut=False)
        report = store.verify()
    assert reads.issues == [] and not reads.failed
    assert report.ok, report.problems


# -- encrypted stores: the key file and sealed names --------------------------

# The key file's fields (encryption.md, section 6): offset and size.
KEY_FILE_FIELDS = {
    "magic": (0, 4),
    "format": (4, 1),
    "KDF": (5, 1),
    "AEAD": (6, 1),
    "reserved": (7, 1),
    "memory": (8, 4),
    "iterations": (12, 4),
    "lanes": (16, 4),
    "salt": (20, 16),
    "public key": (36, 32),
    "wrapped master key": (68, 60),
    "sealed seed": (128, 60),
    "checksum": (188, 32),
}
FORMAT_BYTE = KEY_FILE_FIELDS["format"][0]
ENCRYPTED_ONLY = pytest.mark.parametrize("seed", ["encrypted"], indirect=True)


@dataclass(frozen=True)
class KeyCase:
    """One fault of the key file, and the error open must raise."""

    label: str
    mutate: Callable[[Path], None]
    expected: type[sentinel.SentinelError]


def _key_file_cases(seed: Seed, stranger: Stranger) -> list[KeyCase]:
    """Every byte flipped (one bit each), each field and the whole file
    zeroed, cuts, deletion, and another store's valid key file.

    The expected errors follow the reader's documented order of checks
    (encryption.md, section 6): the magic, then the format byte, then
    the size, then the checksum.  So damage is `CorruptKeyFileError`,
    except where it hits the format byte first: a format other than 1
    is `UnsupportedFormatError`, since a reader cannot tell a flipped
    format from a newer one.  Neither is ever `WrongPassphraseError`:
    the checksum exists to tell damage from a wrong passphrase.
    """
    good = (seed.root / keyfile.FILE_NAME).read_bytes()
    assert len(good) == crypto.KEYFILE_SIZE
    rng = random.Random(f"{SEED}:keys")
    cases = []

    def write(data: bytes) -> Callable[[Path], None]:
        def mutate(root: Path) -> None:
            (root / keyfile.FILE_NAME).write_bytes(data)

        return mutate

    for where in range(len(good)):
        bit = rng.randrange(8)
        data = bytearray(good)
        data[where] ^= 1 << bit
        cases.append(
            KeyCase(
                f"bit flip at byte {where} bit {bit}",
                write(bytes(data)),
                sentinel.UnsupportedFormatError
                if where == FORMAT_BYTE
                else sentinel.CorruptKeyFileError,
            )
        )
    for name, (start, size) in KEY_FILE_FIELDS.items():
        if not any(good[start : start + size]):
            continue  # already zero (the reserved byte): nothing to damage
        data = bytearray(good)
        data[start : start + size] = bytes(size)
        cases.append(
            KeyCase(
                f"{name} zeroed",
                write(bytes(data)),
                sentinel.UnsupportedFormatError
                if name == "format"
                else sentinel.CorruptKeyFileError,
            )
        )
    cases.append(
        KeyCase(
            "whole file zeroed",
            write(bytes(len(good))),
            sentinel.CorruptKeyFileError,
        )
    )
    half = len(good) // 2
    checksum = KEY_FILE_FIELDS["checksum"][0]
    for cut in sorted({0, 4, FORMAT_BYTE + 1, half, checksum, len(good) - 1}):
        cases.append(
            KeyCase(
                f"cut to {cut} bytes",
                write(good[:cut]),
                sentinel.CorruptKeyFileError,
            )
        )
    cases.append(
        KeyCase(
            "deleted",
            lambda root: os.unlink(root / keyfile.FILE_NAME),
            sentinel.CorruptKeyFileError,
        )
    )
    # Another store's key file, valid for the same passphrase: nothing
    # at open can tell it from the right one.  It unwraps another master
    # key, so the sealed table fails its tag and is ignored, and replay
    # refuses the first record, whose sealed collection name does not
    # open: `CorruptJournalError` naming pack 1, before any read.
    assert stranger.keys != good
    cases.append(
        KeyCase(
            "replaced by another store's valid key file",
            write(stranger.keys),
            sentinel.CorruptJournalError,
        )
    )
    return cases


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` and its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _judge_key_case(seed: Seed, root: Path, case: KeyCase) -> tuple[str, str]:
    """Open a copy whose key file `case` damaged: category and detail."""
    try:
        store = seed.open(root)
    except case.expected as exc:
        if type(exc) is not case.expected:
            return MISREPORTED, f"{exc!r} is a subclass of {case.expected}"
        if isinstance(exc, sentinel.CorruptJournalError) and not (
            _names_a_pack(exc, root)
        ):
            return MISREPORTED, f"{exc!r} names no pack"
        if isinstance(exc, sentinel.CorruptKeyFileError) and (
            exc.path != str(root / "keys")
        ):
            return MISREPORTED, f"{exc!r} names {exc.path}, not the key file"
        return REFUSED, repr(exc)
    except sentinel.SentinelError as exc:
        return MISREPORTED, f"open raised {exc!r}"
    except Exception as exc:
        return UNTYPED, f"open raised {exc!r}"
    # Opened: every read must still be right, but the damage was missed.
    with store:
        reads = _Reads(seed, store, Case(case.label, case.mutate))
        reads.run(cut=False)
    wrong = [detail for found, detail in reads.issues if found == WRONG]
    if wrong:
        return WRONG, wrong[0]
    return UNDETECTED, "the store opened"


@ENCRYPTED_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_damaged_key_file_refuses_open(
    seed: Seed, stranger: Stranger, tmp_path: Path, mode: str
) -> None:
    """Every fault of the key file of an encrypted store is refused at
    open with the typed error the key file's documented checks give,
    never wrong data, and a refused open writes nothing (encryption.md,
    section 11.2)."""
    cases = _key_file_cases(seed, stranger)
    tally = dict.fromkeys(DETECTED + FAILURES, 0)
    unexpected = []
    for number, case in enumerate(cases):
        root = _copy(seed, tmp_path / f"case-{number}", mode)
        case.mutate(root)
        before = _tree(root)
        category, detail = _judge_key_case(seed, root, case)
        tally[category] += 1
        if category != REFUSED:
            unexpected.append(f"{case.label} [{mode}]: {category}: {detail}")
        elif _tree(root) != before:
            unexpected.append(f"{case.label} [{mode}]: refused, but wrote")
        shutil.rmtree(root.parent)
    record_figure(seed, tally)
    assert not unexpected, (
        f"{len(unexpected)} of {len(cases)} cases:\n" + "\n".join(unexpected)
    )


def _patch_record(path: Path, span: Span, where: int, bit: int) -> None:
    """Flip one bit of the record content that `span` holds and recompute
    the record's and the frame's CRC-32, as anyone who can edit the
    folder can (encryption.md, section 12: frames carry CRCs, not a
    MAC).  Only what the CRCs do not cover is left to catch it."""
    _flip(path, where, bit)
    content = _read_at(path, span.start, span.end - span.start)
    _write_at(path, span.start - 4, struct.pack(">I", zlib.crc32(content)))
    body_start = span.frame + journal.FRAME_HEADER_SIZE
    body_end = span.frame_end - journal.FRAME_TRAILER.size
    body = _read_at(path, body_start, body_end - body_start)
    _write_at(path, body_end, struct.pack(">I", zlib.crc32(body)))


def _sealed_name_cases(seed: Seed) -> list[tuple[Case, Span]]:
    """A flipped bit in each sealed name of the journal: both names of
    every ref move, and the name of every collection record; CRCs
    recomputed."""
    found: list[tuple[Span, str, int, int]] = []
    for span, move in seed.moves:
        content = _read_at(
            _pack_path(seed.root, span.pack),
            span.start,
            span.end - span.start,
        )
        collection = 1 + content[0]
        found.append((span, f"collection of {move.collection}", 1, content[0]))
        found.append(
            (
                span,
                f"id of {move.collection}/{move.id} v{move.version}",
                collection + 1,
                content[collection],
            )
        )
    for span in seed.collection_records:
        # The operation byte, then the sealed collection name.
        found.append((span, "collection record", 1, span.end - span.start - 1))
    cases = []
    for span, what, at, size in found:
        rng = random.Random(f"{SEED}:name:{span.start}:{at}")
        where = span.start + at + rng.randrange(size)
        bit = rng.randrange(8)
        cases.append(
            (
                Case(
                    f"sealed {what} ({span.name}@{span.frame}) "
                    f"byte {where} bit {bit}",
                    lambda root, s=span, w=where, b=bit: _patch_record(
                        _pack_path(root, s.pack), s, w, b
                    ),
                    frozenset(),
                    frozenset({(span.name, span.frame)}),
                ),
                span,
            )
        )
    return cases


@ENCRYPTED_ONLY
@pytest.mark.parametrize("mode", MODES)
def test_tampered_sealed_name_is_detected(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """A sealed name changed with its CRCs recomputed: the CRCs pass, so
    this reaches the check only an encrypted store has, the name's tag.
    Replay refuses the record with `CorruptJournalError` naming the pack
    and frame (even in the last frame: its CRCs are whole, so it is no
    torn write); a frame the ref table covers is not replayed at open,
    so verify must list it by that frame's offset.

    Plain stores are left out on purpose: their names carry no tag, and
    a changed plain name that is still a valid name is, by the threat
    model (encryption.md, section 12), a record nothing can refuse."""
    named = _sealed_name_cases(seed)
    covered = {
        case.label
        for case, span in named
        if mode == "table" and span.checkpointed
    }

    def allowed(case: Case) -> tuple[str, ...]:
        if case.label in covered:
            return (VERIFY_ONLY,)
        return (REFUSED,)

    run_cases(
        seed,
        tmp_path,
        mode,
        [case for case, _ in named],
        allowed,
        sentinel.CorruptJournalError,
    )


def _names_size(content: bytes) -> int:
    """Bytes taken by the two length-prefixed names that open a ref-move
    record (plain or sealed)."""
    collection = 1 + content[0]
    return collection + 1 + content[collection]


def _forge_move(
    seed: Seed, collection: str, doc_id: str, new: bytes
) -> tuple[bytes, Written]:
    """A ref-move record that moves `doc_id` from its head to `new`, with
    correct CRCs: tampering, not accidental damage.

    Built from the id's last real move by the documented layout (names,
    new head, previous head, version number, then the rest unchanged), so
    it passes every check replay makes on a move.  The names are copied
    as they are stored: in an encrypted store they are sealed, and
    copying them is all someone without the key can do (encryption.md,
    section 12: frames carry CRCs, not a MAC).
    """
    span, move = [
        (s, m)
        for s, m in seed.moves
        if (m.collection, m.id) == (collection, doc_id)
    ][-1]
    content = _read_at(
        _pack_path(seed.root, span.pack), span.start, span.end - span.start
    )
    names = _names_size(content)
    forged = (
        content[:names]
        + new
        + move.new
        + struct.pack(">Q", move.version + 1)
        + content[names + 72 :]
    )
    assert refs.decode_move(forged, seed.names).new == new
    return forged, seed.versions(collection, doc_id)[0]


def _append_frame(root: Path, seed: Seed, records: list[bytes]) -> None:
    pack, end = seed.end
    _write_at(_pack_path(root, pack), end, journal.frame(records, end))


def _forged(
    seed: Seed, tmp_path: Path, doc_id: str, new: bytes
) -> sentinel.Store:
    root = _copy(seed, tmp_path, "table")
    forged, _ = _forge_move(seed, "users", doc_id, new)
    _append_frame(root, seed, [journal.record(journal.RECORD_REF, forged)])
    return seed.open(root)


def test_ref_moved_to_another_documents_object(
    seed: Seed, tmp_path: Path
) -> None:
    """A ref moved (with correct CRCs) onto another document's valid
    object: the identity check makes get and history raise
    `CorruptObjectError` naming that object, verify lists a bad ref, and
    the other document still reads."""
    other = seed.versions("users", "u1")[0]
    target = bytes.fromhex(other.address)
    with _forged(seed, tmp_path, "u0", target) as store:
        users = store.collection("users")
        with pytest.raises(sentinel.CorruptObjectError) as got:
            users.get("u0")
        assert got.value.address == other.address
        with pytest.raises(sentinel.CorruptObjectError) as walked:
            users.history("u0")
        assert walked.value.address == other.address
        doc = users.get("u1")
        assert doc is not None and _same(doc, other)
        report = store.verify()
    assert any(
        p.kind == "bad-ref" and p.address == other.address
        for p in report.problems
    ), report.problems
    record_figure(seed, {READ_ERRORS: 1})


def test_ref_rolled_back_by_a_forged_move(seed: Seed, tmp_path: Path) -> None:
    """A forged move of u0 back onto its own first version: the ref says
    version n + 1, the object says version 1, so reads refuse it."""
    first = seed.versions("users", "u0")[-1]
    with _forged(seed, tmp_path, "u0", bytes.fromhex(first.address)) as store:
        with pytest.raises(sentinel.CorruptObjectError) as got:
            store.collection("users").get("u0")
        assert got.value.address == first.address
        report = store.verify()
    assert any(
        p.kind == "bad-ref" and p.address == first.address
        for p in report.problems
    ), report.problems
    record_figure(seed, {READ_ERRORS: 1})


def _forge_chain(
    seed: Seed, doc_id: str, targets: list[bytes], time: int
) -> list[bytes]:
    """Ref-move records moving users/`doc_id` through `targets`, each
    stamped `time` (u64 microseconds, after the version number in the
    documented layout), with correct CRCs."""
    first, head = _forge_move(seed, "users", doc_id, targets[0])
    names = _names_size(first)
    moves = []
    previous, version = bytes.fromhex(head.address), head.version
    for target in targets:
        version += 1
        moves.append(
            first[:names]
            + target
            + previous
            + struct.pack(">QQ", version, time)
            + first[names + 80 :]
        )
        previous = target
    return moves


def test_forged_move_with_a_time_past_int64(
    seed: Seed, tmp_path: Path
) -> None:
    """Two forged moves of u0 (correct CRCs, existing objects) stamped
    with a time of 2**63 microseconds or more, which the u64 field can
    hold: opening the store raises a typed error (or opens and reads
    refuse u0), never an untyped exception from applying the frame."""
    others = [
        bytes.fromhex(seed.versions("users", i)[0].address)
        for i in ("u1", "u3")
    ]
    moves = _forge_chain(seed, "u0", others, 2**63 + 1)
    root = _copy(seed, tmp_path, "table")
    _append_frame(
        root, seed, [journal.record(journal.RECORD_REF, m) for m in moves]
    )
    error: BaseException | None = None
    try:
        with seed.open(root) as store:
            with pytest.raises(sentinel.CorruptionError):
                store.collection("users").get("u0")
        category = READ_ERRORS
    except sentinel.CorruptionError as exc:
        category = REFUSED if _names_a_pack(exc, root) else MISREPORTED
        error = exc
    except Exception as exc:
        category = (
            MISREPORTED if isinstance(exc, sentinel.SentinelError) else UNTYPED
        )
        error = exc
    record_figure(seed, {category: 1})
    assert category in DETECTED, f"open raised {error!r}"


# -- crafted objects on read (bad-input catalogue) ----------------------------


def _zstd_frame(content_size: int | None, total: int) -> bytes:
    """A zstd frame of RLE blocks holding `total` spaces and declaring
    `content_size` (None: the frame declares no size).  A few bytes per
    128 KiB block: a decompression bomb."""
    magic = b"\x28\xb5\x2f\xfd"
    if content_size is None:
        head = magic + b"\x00\x38"  # no size field, 128 KiB window
    else:
        head = magic + b"\xe0" + struct.pack("<Q", content_size)
    blocks = []
    left = total
    while True:
        size = min(left, 128 * 1024)
        left -= size
        header = int(left == 0) | (1 << 1) | (size << 3)
        blocks.append(struct.pack("<I", header)[:3] + b" ")
        if left == 0:
            return head + b"".join(blocks)


def _crafted_payload(seed: Seed, doc_id: str, data: bytes) -> bytes:
    """The payload of a next version of users/`doc_id` whose data is the
    raw JSON text `data`, made from the head's own payload."""
    head = seed.versions("users", doc_id)[0]
    item = next(s for s in seed.objects if s.address.hex() == head.address)
    stored = _read_at(
        _pack_path(seed.root, item.stored.pack),
        item.stored.start,
        item.stored.end - item.stored.start,
    )
    payload = seed.codec.decode(stored, item.address).payload
    old = b'"data":' + codec.canonical(head.data)
    assert payload.count(old) == 1
    payload = payload.replace(old, b'"data":' + data)
    payload, found = re.subn(
        rb'"version":\d+', b'"version":%d' % (head.version + 1), payload
    )
    assert found == 1
    payload, found = re.subn(
        rb'"parent":("[0-9a-f]{64}"|null)',
        b'"parent":"%s"' % head.address.encode(),
        payload,
    )
    assert found == 1
    return payload


DEEP = 100_000
LIMIT = codec.MAX_DEPTH
CRAFTED_DATA = {
    "duplicate key in data": b'{"a":1,"a":2}',
    "duplicate top-level key": b'{"a":1},"data":{"a":2}',
    "NaN literal": b'{"a":NaN}',
    "-Infinity literal": b'{"a":-Infinity}',
    "number overflowing to infinity": b'{"a":1e400}',
    "lone surrogate": b'{"a":"\\ud800"}',
    "nesting 100,000 deep": b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "nesting past MAX_DEPTH": b'{"a":' + b"[" * LIMIT + b"]" * LIMIT + b"}",
}
# README, Caveats: "Non-canonical objects are found by verify(), not by
# get": duplicate keys, or nesting that parses but that no write could
# have produced, may be returned by get; verify must list them.  (The
# bad-input catalogue of RELIABILITY.md asks get to refuse duplicate keys
# too; the README records the decision not to.)
NON_CANONICAL = frozenset(
    {
        "duplicate key in data",
        "duplicate top-level key",
        "nesting past MAX_DEPTH",
    }
)
BOMB_SIZE = 4 << 30
HEADER_LIES = "header declares 4 GiB"
CRAFTED_STORED = {
    # Stored objects whose header or zstd frame lie about their size.
    "frame declares 4 GiB": (1000, _zstd_frame(BOMB_SIZE, 1000)),
    HEADER_LIES: (BOMB_SIZE, _zstd_frame(BOMB_SIZE, 0)),
    "frame without a size inflates to 4 GiB": (
        1000,
        _zstd_frame(None, BOMB_SIZE),
    ),
    "frame at the size limit is spaces": (
        objects.MAX_PAYLOAD,
        _zstd_frame(objects.MAX_PAYLOAD, objects.MAX_PAYLOAD),
    ),
}
MEMORY_BOUND = 64 << 20


def _crafted_object(seed: Seed, label: str) -> tuple[bytes, bytes]:
    """Address and stored bytes of the crafted object `label`.

    A crafted payload gets its true address, so only parsing can refuse
    it.  A lying frame gets an arbitrary address: it must be refused
    before it is inflated past the size limit (the frame at the limit is
    inflated, within bounds, and then fails its hash check).

    In an encrypted store both are sealed with the store's keys, as
    only a writer holding them (a bug, or a process that has the
    passphrase) could: without the keys the tag fails first, and the
    checks behind it would never be reached.
    """
    if label in CRAFTED_DATA:
        payload = _crafted_payload(seed, "u3", CRAFTED_DATA[label])
        encoded = seed.codec.encode(objects.TYPE_VERSION, payload)
        return encoded.address, encoded.stored
    length, body = CRAFTED_STORED[label]
    address = hashlib.sha256(label.encode()).digest()
    if seed.keys is not None:
        return address, _sealed_crafted(seed.keys, address, label, body)
    header = objects.HEADER.pack(
        objects.MAGIC,
        objects.TYPE_VERSION,
        objects.ENCODING_ZSTD,
        0,
        0,
        min(length, 0xFFFFFFFF),
    )
    return address, header + body


def _sealed_crafted(
    keys: crypto.Keys, address: bytes, label: str, frame: bytes
) -> bytes:
    """A sealed object (encryption.md, section 7) around the zstd frame
    `frame`, authenticated for `address`, so its tag passes.

    A sealed header's length is that of the sealed body, not of the
    payload: only "header declares 4 GiB" lies there (and must be
    refused before anything is decrypted); the others tell the truth
    and leave the lie to the frame inside.  The trailer's signature is
    zeros: every check of the frame and address comes before it.
    """
    plaintext = (
        frame
        + crypto.signer_id(keys.public_key)
        + bytes(crypto.SIGNATURE_SIZE)
    )
    body = len(plaintext) + crypto.SEAL_OVERHEAD
    header = objects.HEADER.pack(
        objects.MAGIC,
        objects.TYPE_VERSION,
        objects.ENCODING_SEALED,
        objects.FLAG_SIGNED,
        0,
        min(BOMB_SIZE, 0xFFFFFFFF) if label == HEADER_LIES else body,
    )
    return header + crypto.seal(keys.sealing_key, plaintext, header + address)


@pytest.mark.parametrize("label", [*CRAFTED_DATA, *CRAFTED_STORED])
def test_crafted_object_on_read(
    seed: Seed, tmp_path: Path, label: str
) -> None:
    """Catalogue row "crafted object on read": an object whose address
    matches its bytes (or whose frame lies about its size), placed with
    correct CRCs under the ref of users/u3.  get and history raise
    `CorruptObjectError` naming it (non-canonical JSON excepted, see
    `NON_CANONICAL`), verify lists it, and reading it stays under 64 MiB
    of traced memory."""
    address, stored = _crafted_object(seed, label)
    forged, _ = _forge_move(seed, "users", "u3", address)
    root = _copy(seed, tmp_path, "table")
    _append_frame(
        root,
        seed,
        [
            journal.record(journal.RECORD_OBJECT, address + stored),
            journal.record(journal.RECORD_REF, forged),
        ],
    )
    with seed.open(root) as store:
        users = store.collection("users")
        tracemalloc.start()
        try:
            got = _refusal(lambda: users.get("u3"), address)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        walked = _refusal(lambda: users.history("u3"), address)
        report = store.verify()
    listed = any(
        p.address == address.hex() and p.kind in ("corrupt-object", "bad-ref")
        for p in report.problems
    )
    lenient = label in NON_CANONICAL
    category = _crafted_verdict((got, walked), listed, lenient)
    record_figure(seed, {category: 1})
    if not lenient:
        assert (got, walked) == ("refused", "refused"), (
            f"get: {got}; history: {walked}"
        )
    assert category in DETECTED, f"{category}: get {got}; history {walked}"
    assert peak < MEMORY_BOUND, f"decoding peaked at {peak / 2**20:.1f} MiB"


def _crafted_verdict(
    outcomes: tuple[str, str], listed: bool, lenient: bool
) -> str:
    returned = any(o.startswith("returned") for o in outcomes)
    if any(o.startswith("raised") for o in outcomes):
        return UNTYPED
    if any(o.startswith("misnamed") for o in outcomes):
        return MISREPORTED
    if returned and not lenient:
        return WRONG
    if not listed:
        return UNDETECTED
    return VERIFY_ONLY if returned else READ_ERRORS


def _refusal(call: Callable[[], Any], address: bytes) -> str:
    """How a read of the crafted object at `address` ended."""
    try:
        value = call()
    except sentinel.CorruptObjectError as exc:
        if exc.address == address.hex():
            return "refused"
        return f"misnamed: {exc!r}"
    except Exception as exc:
        return f"raised {exc!r}"
    if isinstance(value, list):
        value = value[0] if value else None
    data = value.data if isinstance(value, sentinel.Document) else value
    return f"returned {str(data)[:80]}"


# -- T23: stray files ---------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    for _ in range(10):
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            return child.pid
    raise AssertionError("every reaped pid was reused at once")


def _snapshot(folder: Path) -> dict[str, tuple[bool, bytes, int]]:
    """Every entry under `folder`, without following links."""
    found = {}
    for entry in sorted(folder.rglob("*")):
        info = entry.lstat()
        if entry.is_symlink():
            found[str(entry)] = (True, os.readlink(entry).encode(), 0)
        elif entry.is_file():
            found[str(entry)] = (False, entry.read_bytes(), info.st_mtime_ns)
        else:
            found[str(entry)] = (False, b"", 0)
    return found


@dataclass
class Strays:
    """A copy of the seed with stray files planted in every folder."""

    root: Path
    outside: Path
    victim: Path
    stale: list[Path]
    live: Path
    backups: list[Path]
    links: list[Path]


def _plant_strays(seed: Seed, tmp_path: Path) -> Strays:
    root = _copy(seed, tmp_path, "table")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.bin"
    victim.write_bytes(b"not the store's to touch\n" * 8)
    dead = _dead_pid()
    # Temps of the exact form writers use (`fs.temp_name`), left by a
    # writer that is gone.
    stale = [
        root / f".sentinel.json.{dead}.0a1b2c3d.tmp",
        root / "refs" / f".table.{dead}.deadbeef.tmp",
        root / "objects" / f".x.{dead}.0123abcd.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a write")
    # A stale temp that is a link out of the store: removing it must
    # remove the link, never the file it points to.
    stale.append(root / "refs" / f".table.{dead}.0badf00d.tmp")
    stale[-1].symlink_to(victim)
    live = root / "refs" / f".table.{os.getpid()}.cafef00d.tmp"
    live.write_bytes(b"a live writer's temp")
    # Files that are not the store's: editor backups, and names that
    # merely look like temps (no writer token), which are the user's.
    backups = [
        root / "sentinel.json~",
        root / "#sentinel.json#",
        root / "refs" / "table.bak",
        root / "refs" / ".notes.tmp",
        root / "objects" / "pack-00000001.pack~",
        root / "objects" / ".pack-00000001.pack.swp",
        root / "objects" / ".x.123.tmp",
    ]
    for path in backups:
        path.write_bytes(b"an editor's copy")
    links = [root / "escape", root / "objects" / "notes", root / "refs" / "x"]
    links[0].symlink_to(outside, target_is_directory=True)
    links[1].symlink_to(victim)
    links[2].symlink_to(outside / "missing")
    return Strays(root, outside, victim, stale, live, backups, links)


def test_stray_files_are_ignored_and_stale_temps_swept(
    seed: Seed, tmp_path: Path
) -> None:
    """T23: temps of dead writers, editor backups and links out of the
    store do not change what the store lists or reads; verify removes
    the stale temps (and only those) and lists them; no link is ever
    followed, so nothing outside the store changes."""
    strays = _plant_strays(seed, tmp_path)
    outside_before = _snapshot(strays.outside)
    with seed.open(strays.root) as store:
        reads = _Reads(seed, store, Case("strays", lambda root: None))
        reads.run(cut=False)
        listed = store.list_collections()
        assert listed == sorted({c for c, _ in seed.ids})
        for name in listed:
            ids = list(store.collection(name).ids())
            live = sorted(
                doc_id
                for c, doc_id in seed.ids
                if c == name and not seed.versions(c, doc_id)[0].deleted
            )
            assert ids == live
        report = store.verify()
    assert reads.issues == [] and not reads.failed
    assert sorted(report.temp_files_removed) == sorted(map(str, strays.stale))
    assert not any(os.path.lexists(path) for path in strays.stale)
    assert strays.live.exists(), "a live writer's temp was removed"
    for path in strays.backups:
        assert path.read_bytes() == b"an editor's copy"
    for path in strays.links:
        assert path.is_symlink()
    assert _snapshot(strays.outside) == outside_before
    assert not (strays.outside / "missing").exists()
    assert [p for p in report.problems if p.kind != "stray-file"] == []


def test_verify_reports_unknown_files(seed: Seed, tmp_path: Path) -> None:
    """verify's docstring and T23: files that are not the store's
    (backups, links) are reported as ``stray-file`` problems, so an
    operator learns of them; they are never deleted."""
    strays = _plant_strays(seed, tmp_path)
    with seed.open(strays.root) as store:
        report = store.verify()
    reported = {p.path for p in report.problems if p.kind == "stray-file"}
    missing = [
        str(path)
        for path in strays.backups + strays.links
        if str(path) not in reported
    ]
    assert not missing, f"verify does not report: {missing}"


def test_pack_named_link_is_never_followed(
    seed: Seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link named like the next pack, pointing out of the store: when
    the store rolls to that pack it must not write through the link, and
    verify must not open it (it may report it)."""
    root = _copy(seed, tmp_path, "table")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.bin"
    victim.write_bytes(b"precious bytes outside the store\n" * 4)
    following = seed.packs[-1] + 1
    (_pack_path(root, following)).symlink_to(victim)
    before = _snapshot(outside)

    monkeypatch.setattr(journal, "PACK_LIMIT", SEED_PACK_LIMIT)
    written: list[str] = []
    error: BaseException | None = None
    try:
        with seed.open(root) as store:
            users = store.collection("users")
            for number in range(40):
                users.insert(f"roll{number}", _doc("roll", number))
                written.append(f"roll{number}")
                if store._engine.state.position[0] > following:
                    break
    except sentinel.SentinelError as exc:
        error = exc
    assert _snapshot(outside) == before, (
        f"the store wrote through {journal.pack_name(following)} "
        f"into {victim} (after {len(written)} writes, error {error!r})"
    )
    with seed.open(root) as store:
        users = store.collection("users")
        for doc_id in written:
            assert users.get(doc_id) is not None
        store.verify()


def test_verify_survives_a_dangling_pack_named_link(
    seed: Seed, tmp_path: Path
) -> None:
    """A dangling link named like a pack off the chain: verify reports a
    stray file instead of failing on the missing target, and does not
    create it."""
    root = _copy(seed, tmp_path, "table")
    target = tmp_path / "nowhere" / "pack"
    link = _pack_path(root, 99)
    link.symlink_to(target)
    with seed.open(root) as store:
        report = store.verify()
    assert not target.exists()
    assert any(p.path == str(link) for p in report.problems), report


@pytest.mark.parametrize("mode", MODES)
def test_missing_config_never_destroys_data(
    seed: Seed, tmp_path: Path, mode: str
) -> None:
    """sentinel.json lost (deleted, or a directory entry damaged): opening
    must not take the folder for an unfinished creation and recreate the
    first pack over acknowledged data.  It refuses with a typed error or
    opens with every write intact; the packs are unchanged.  In an
    encrypted store the key file is data too: creation replaces the key
    file an unfinished creation left (encryption.md, 11.1), and a new
    master key would make every sealed byte unreadable for ever."""
    root = _copy(seed, tmp_path, mode)
    os.unlink(root / "sentinel.json")
    kept = [root / "objects" / name for name in os.listdir(root / "objects")]
    if seed.encrypted:
        kept.append(root / keyfile.FILE_NAME)
    before = {path.name: path.read_bytes() for path in kept}
    try:
        store = seed.open(root)
    except sentinel.SentinelError:
        store = None
    changed = sorted(
        path.name
        for path in kept
        if not path.exists() or path.read_bytes() != before[path.name]
    )
    if store is not None:
        with store:
            reads = _Reads(seed, store, Case("no config", lambda root: None))
            reads.run(cut=False)
    assert not changed, f"opening without a config rewrote {changed}"
    if store is not None:
        assert reads.issues == [] and not reads.failed


# -- a forged ref table ------------------------------------------------------


def test_forged_ref_table_is_reported_by_verify(tmp_path: Path) -> None:
    """A plain store's table is checksummed, not authenticated: anyone
    who can write the folder can forge one with a valid checksum that
    claims the current position.  Open trusts it (it is only a cache
    of the journal), so reads serve the forged refs; verify replays the
    journal and must report that the refs in use differ from it."""
    path = tmp_path / "store"
    with sentinel.Store.new(path) as store:
        users = store.collection("users")
        users.insert("u1", {"n": 1})
        users.insert("u2", {"n": 2})
        store._engine.checkpoint()
        refs_of = store._engine.state.collections["users"]
        # The forgery hides u2, as if it had never been written.
        honest = refs_of.heads.pop("u2")
        refs_of.live -= 1
        forged = table.encode(store._engine.state)
        refs_of.heads["u2"] = honest
        refs_of.live += 1
        assert store.verify().ok
    (path / "refs" / "table").write_bytes(forged)
    with sentinel.Store.new(path) as store:
        assert store.collection("users").get("u2") is None
        report = store.verify()
    assert [(p.kind, p.path) for p in report.problems] == [
        ("ref-table", str(path / "refs" / "table"))
    ], report.problems
    assert "the refs of users" in report.problems[0].detail
    # Without the table the journal's truth comes back.
    (path / "refs" / "table").unlink()
    with sentinel.Store.new(path) as store:
        assert store.collection("users").get("u2").data == {"n": 2}
        assert store.verify().ok
