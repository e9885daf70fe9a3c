"""Streaming `ids()` and `all()` over 100,000 documents.

The documents are loaded with `bulk_insert` in chunks, in shuffled id
order, into a ``durable=False`` store (the sync is irrelevant to what is
measured here and would only slow the load); 500 more are inserted and
deleted, so tombstones are skipped along the way.

Memory is measured with `tracemalloc` (peak of Python allocations during
the iteration).  The reference is a list holding the first 10,000
documents, measured the same way: a list of all 100,000 would take at
least ten times as much, so a streaming peak below 20% of the reference
is below 2% of holding the collection in memory.  An absolute bound of
4 MiB backs this up (the 10,000-document reference alone takes several
MiB).
"""

from __future__ import annotations

import gc
import itertools
import pathlib
import random
import tracemalloc
from collections.abc import Callable, Iterable

import figures

import sentinel

DOCUMENTS = 100_000
DELETED = 500
CHUNK = 5_000
REFERENCE = 10_000
ABSOLUTE_LIMIT = 4 * 1024 * 1024


def doc_id(number: int) -> str:
    return f"doc-{number:06d}"


def peak_of(work: Callable[[], object]) -> tuple[object, int]:
    """Run `work` and return its result and the peak traced memory."""
    gc.collect()
    tracemalloc.start()
    try:
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def walk(
    docs: Iterable[sentinel.Document], keep: Callable[[int], bool]
) -> int:
    """Count `docs`, checking order and content as they stream by."""
    count = 0
    previous = ""
    for doc in docs:
        number = int(doc.id[4:])
        assert doc.id > previous, (previous, doc.id)
        assert keep(number), doc.id
        assert doc.data == {"n": number, "tag": f"t{number % 10}"}
        assert doc.version == 1 and not doc.deleted
        previous = doc.id
        count += 1
    return count


def test_streaming_100k_documents_with_bounded_memory(
    tmp_path: pathlib.Path,
) -> None:
    rng = random.Random(100_000)
    numbers = list(range(DOCUMENTS + DELETED))
    rng.shuffle(numbers)
    doomed = set(rng.sample(numbers, DELETED))
    with sentinel.Store.new(tmp_path / "s", durable=False) as store:
        c = store.collection("big")
        for start in range(0, len(numbers), CHUNK):
            c.bulk_insert(
                (doc_id(n), {"n": n, "tag": f"t{n % 10}"})
                for n in numbers[start : start + CHUNK]
            )
        with c.batch() as batch:
            for n in sorted(doomed):
                batch.delete(doc_id(n))
        assert c.count() == DOCUMENTS

        def live(n: int) -> bool:
            return n not in doomed

        count, stream_peak = peak_of(lambda: walk(c.all(), live))
        assert count == DOCUMENTS

        def count_ids() -> int:
            previous, seen = "", 0
            for key in c.ids():
                assert key > previous
                previous, seen = key, seen + 1
            return seen

        count, ids_peak = peak_of(count_ids)
        assert count == DOCUMENTS

        held, reference_peak = peak_of(
            lambda: list(itertools.islice(c.all(), REFERENCE))
        )
        assert isinstance(held, list) and len(held) == REFERENCE
        del held

    figures.record(
        "streaming all() on 100,000 documents",
        documents=DOCUMENTS,
        **{
            "all() peak KiB": stream_peak // 1024,
            "ids() peak KiB": ids_peak // 1024,
            "list of 10,000 docs KiB": reference_peak // 1024,
        },
    )
    for name, peak in (
        ("all()", stream_peak),
        ("ids()", ids_peak),
    ):
        assert peak < 0.2 * reference_peak, (name, peak, reference_peak)
        assert peak < ABSOLUTE_LIMIT, (name, peak)
