"""Document lifecycle and history, through the public API (issue 3).

Update (deep merge), upsert, delete (tombstones), restore, revert,
bulk inserts and batches, time travel, diff, parent links, optimistic
concurrency, collection drop and restore, and the ref log.

Most checks run three ways (the `mode` fixture): on the live store, after
closing and reopening it (the state is replayed from the journal), and
after a forced checkpoint and reopen (the state is read from the ref
table).  Each path rebuilds versions, times and tombstones differently,
so each must give the same answers.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import pathlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentinel
from sentinel import (
    ConflictError,
    Document,
    InvalidCollectionError,
    InvalidDocumentError,
    InvalidIdError,
    InvalidInputError,
    NotFoundError,
    SentinelError,
)

MODES = ("live", "reopen", "checkpoint")
Json = Any


# -- fixtures and helpers -----------------------------------------------------


class Reopener:
    """One store folder, reopened on demand the way `mode` says."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.store = sentinel.Store.new(path)

    def settle(self, mode: str) -> sentinel.Store:
        """Return the store to read back from: the same one (``live``),
        a reopened one (``reopen``), or one reopened from a freshly
        written ref table (``checkpoint``)."""
        if mode == "live":
            return self.store
        if mode == "checkpoint":
            engine = self.store._engine
            with engine.state_lock:
                engine.checkpoint()
        self.store.close()
        self.store = sentinel.Store.new(self.path)
        if mode == "checkpoint":
            # The state really came from the table, and the table was
            # accepted.
            assert self.store._engine.table_problem is None
            assert self.store._engine._table_size > 0
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def reopener(store_path: pathlib.Path) -> Iterator[Reopener]:
    opened = Reopener(store_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def disk(root: pathlib.Path) -> dict[str, str]:
    """Every file under `root` with a digest of its content."""
    return {
        str(path.relative_to(root)): hashlib.blake2b(
            path.read_bytes()
        ).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def strict(left: Json, right: Json) -> bool:
    """JSON equality that tells 1 from 1.0 and True from 1."""
    if type(left) is not type(right):
        return False
    if type(left) is dict:
        return left.keys() == right.keys() and all(
            strict(left[key], right[key]) for key in left
        )
    if type(left) is list:
        return len(left) == len(right) and all(
            strict(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


def moment(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None
    return parsed


def hashes(docs: list[Document | None]) -> list[str | None]:
    return [None if doc is None else doc.hash for doc in docs]


def oldest_first(
    collection: sentinel.Collection, doc_id: str
) -> list[Document]:
    return list(reversed(collection.history(doc_id)))


def pause() -> None:
    """Let the clock move on, so successive versions get distinct
    microsecond times (a durable write alone nearly always does)."""
    time.sleep(0.002)


# -- update: the merge --------------------------------------------------------

BASE: dict[str, Json] = {
    "name": "Alice",
    "address": {
        "city": "Paris",
        "zip": "75001",
        "geo": {"lat": 48.85, "lon": 2.35},
    },
    "tags": ["a", "b", "c"],
    "n": 1,
    "keep": True,
    "obj": {"x": 1},
    "scalar": 5,
    "arr": [1, 2],
}


def test_update_merges_nested_objects(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    v1 = c.insert("u", BASE)
    patch = {
        "address": {"city": "Lyon", "geo": {"lat": 45.76}, "street": "S"},
        "tags": ["z"],
        "n": None,
        "new": {"k": [1, {"deep": True}]},
        "obj": [1, 2],
        "scalar": {"now": "object"},
        "arr": {"was": "array"},
    }
    v2 = c.update("u", patch)
    expected = {
        "name": "Alice",
        "address": {
            "city": "Lyon",
            "zip": "75001",
            "geo": {"lat": 45.76, "lon": 2.35},
            "street": "S",
        },
        "tags": ["z"],
        "n": None,
        "keep": True,
        "obj": [1, 2],
        "scalar": {"now": "object"},
        "arr": {"was": "array"},
        "new": {"k": [1, {"deep": True}]},
    }
    assert strict(v2.data, expected)
    assert v2.version == 2
    assert v2.created_at == v1.created_at
    assert moment(v2.updated_at) > moment(v1.updated_at)
    assert v2.parent == v1.hash

    c = reopener.settle(mode).collection("docs")
    got = c.get("u")
    assert got is not None and got.hash == v2.hash
    assert strict(got.data, expected)
    # null sets the field to null, it does not remove it
    assert "n" in got.data and got.data["n"] is None
    # the old version is untouched by the merge
    first = c.get("u", version=1)
    assert first is not None and strict(first.data, BASE)
    assert c.count() == 1


def test_update_with_empty_objects(store: sentinel.Store) -> None:
    c = store.collection("docs")
    c.insert("e", BASE)
    # an empty nested object merges into the object: nothing changes
    v2 = c.update("e", {"address": {}})
    assert strict(v2.data, BASE)
    # an empty patch still writes a new version with the same data
    v3 = c.update("e", {})
    assert v3.version == 3 and strict(v3.data, BASE)
    assert v3.hash != v2.hash
    # an empty object replaces a non-object
    v4 = c.update("e", {"tags": {}})
    assert v4.data["tags"] == {}
    # an empty array replaces an object, it does not merge
    v5 = c.update("e", {"address": []})
    assert v5.data["address"] == []
    got = c.get("e")
    assert got is not None and strict(got.data, v5.data)


def test_update_does_not_alias_the_patch(store: sentinel.Store) -> None:
    c = store.collection("docs")
    c.insert("p", {"a": {"b": 1}})
    patch: dict[str, Json] = {"a": {"c": [1]}, "d": {"e": 2}}
    c.update("p", patch)
    patch["a"]["c"].append(2)
    patch["d"]["e"] = 99
    patch["z"] = 1
    got = c.get("p")
    assert got is not None
    assert got.data == {"a": {"b": 1, "c": [1]}, "d": {"e": 2}}


@pytest.mark.parametrize(
    "patch, error",
    [
        ({"x": float("nan")}, InvalidDocumentError),
        ({"x": float("inf")}, InvalidDocumentError),
        ({"x": (1, 2)}, InvalidDocumentError),
        ({"x": {1: "int key"}}, InvalidDocumentError),
        ({"x": {"y": {1, 2}}}, InvalidDocumentError),
        ({"x": 2**64}, InvalidDocumentError),
        ({"x": b"bytes"}, InvalidDocumentError),
        ([("x", 1)], InvalidDocumentError),
        ("not a dict", InvalidDocumentError),
        (None, InvalidDocumentError),
    ],
)
def test_invalid_patch_raises_before_writing(
    store: sentinel.Store, store_path: pathlib.Path, patch: Any, error: type
) -> None:
    c = store.collection("docs")
    c.insert("v", {"x": 1})
    before = disk(store_path)
    with pytest.raises(error):
        c.update("v", patch)
    with pytest.raises(error):
        c.upsert("v", patch)
    with pytest.raises(error):
        c.upsert("absent", patch)
    # validation comes before the existence check
    with pytest.raises(error):
        c.update("absent", patch)
    assert disk(store_path) == before
    got = c.get("v")
    assert got is not None and got.version == 1 and got.data == {"x": 1}


def test_patch_with_a_cycle_is_refused(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    c.insert("v", {"x": 1})
    looped: dict[str, Any] = {"a": {}}
    looped["a"]["self"] = looped
    before = disk(store_path)
    with pytest.raises(InvalidDocumentError):
        c.update("v", looped)
    assert disk(store_path) == before


def test_update_that_merges_too_large_writes_nothing(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    """Base and patch are each within the limit; their merge is not."""
    from sentinel import codec

    c = store.collection("docs")
    half = codec.MAX_DOCUMENT // 2 + 1024
    c.insert("big", {"a": "x" * half})
    before = disk(store_path)
    with pytest.raises(sentinel.DocumentTooLargeError):
        c.update("big", {"b": "y" * half})
    with pytest.raises(sentinel.DocumentTooLargeError):
        c.upsert("big", {"b": "y" * half})
    assert disk(store_path) == before
    got = c.get("big")
    assert got is not None and got.version == 1 and set(got.data) == {"a"}


def test_update_missing_or_deleted_is_not_found(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    c.insert("gone", {"a": 1})
    assert c.delete("gone") is True
    before = disk(store_path)
    with pytest.raises(NotFoundError):
        c.update("never", {"a": 1})
    with pytest.raises(NotFoundError):
        c.update("gone", {"a": 2})
    with pytest.raises(InvalidIdError):
        c.update("bad id", {"a": 1})
    assert disk(store_path) == before
    assert c.get("gone") is None and c.get("never") is None
    assert len(c.history("gone")) == 2


# -- upsert, delete, restore, insert after delete -----------------------------


def test_upsert(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    assert c.upsert("u", {"a": {"b": 1}, "l": [1]}) is True
    first = c.get("u")
    assert first is not None and first.version == 1
    pause()
    assert c.upsert("u", {"a": {"c": 2}, "l": [2]}) is False
    second = c.get("u")
    assert second is not None and second.version == 2
    assert second.data == {"a": {"b": 1, "c": 2}, "l": [2]}
    assert second.created_at == first.created_at
    assert c.delete("u") is True
    pause()
    # upsert of a deleted id inserts afresh: no merge with the old data
    assert c.upsert("u", {"z": 1}) is True

    c = reopener.settle(mode).collection("docs")
    third = c.get("u")
    assert third is not None
    assert third.version == 4 and third.data == {"z": 1}
    assert moment(third.created_at) > moment(first.created_at)
    assert third.created_at == third.updated_at
    assert [d.version for d in c.history("u")] == [4, 3, 2, 1]
    assert c.count() == 1


def test_delete(reopener: Reopener, mode: str) -> None:
    store = reopener.store
    c = store.collection("docs")
    c.insert("a", {"n": 1})
    c.insert("b", {"n": 2})
    c.update("a", {"m": 1})
    assert c.count() == 2
    assert c.delete("a") is True
    before = disk(reopener.path)
    # deleting again, or an id that never existed, writes nothing
    assert c.delete("a") is False
    assert c.delete("never") is False
    assert disk(reopener.path) == before

    c = reopener.settle(mode).collection("docs")
    assert c.get("a") is None
    assert c.count() == 1
    assert list(c.ids()) == ["b"]
    assert [d.id for d in c.all()] == ["b"]
    assert c.get_many(["a", "b"])[0] is None
    history = c.history("a")
    assert [(d.version, d.deleted) for d in history] == [
        (3, True),
        (2, False),
        (1, False),
    ]
    tombstone = history[0]
    assert tombstone.data == {}
    assert tombstone.parent == history[1].hash
    assert moment(tombstone.updated_at) >= moment(history[1].updated_at)
    # live versions are not marked deleted, whatever their source
    assert not any(d.deleted for d in c.history("b"))
    got = c.get("b")
    assert got is not None and got.deleted is False


def test_restore_after_delete_and_delete_after_restore(
    reopener: Reopener, mode: str
) -> None:
    c = reopener.store.collection("docs")
    v1 = c.insert("r", {"a": 1, "nested": {"x": [1, 2]}})
    pause()
    v2 = c.update("r", {"nested": {"y": True}})
    pause()
    assert c.delete("r") is True
    pause()
    v4 = c.restore("r")
    assert v4.version == 4
    assert v4.data == v2.data
    assert v4.created_at == v1.created_at
    assert moment(v4.updated_at) > moment(v2.updated_at)
    assert c.count() == 1
    pause()
    assert c.delete("r") is True
    assert c.count() == 0
    pause()
    v6 = c.restore("r")

    c = reopener.settle(mode).collection("docs")
    got = c.get("r")
    assert got is not None and got.hash == v6.hash
    assert got.version == 6 and got.data == v2.data
    assert got.created_at == v1.created_at
    assert [(d.version, d.deleted) for d in c.history("r")] == [
        (6, False),
        (5, True),
        (4, False),
        (3, True),
        (2, False),
        (1, False),
    ]
    # an update after a restore keeps the restored created_at
    v7 = c.update("r", {"a": 2})
    assert v7.created_at == v1.created_at
    assert c.count() == 1


def test_restore_errors_write_nothing(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    c.insert("live", {"a": 1})
    before = disk(store_path)
    with pytest.raises(NotFoundError):
        c.restore("never")
    with pytest.raises(ConflictError):
        c.restore("live")
    with pytest.raises(InvalidIdError):
        c.restore("no/slash")
    assert disk(store_path) == before


def test_insert_after_delete(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    v1 = c.insert("i", {"life": 1})
    pause()
    c.update("i", {"more": True})
    pause()
    c.delete("i")
    tombstone = c.history("i")[0]
    pause()
    v4 = c.insert("i", {"life": 2})
    assert v4.version == 4
    assert v4.parent == tombstone.hash
    assert v4.created_at == v4.updated_at
    assert moment(v4.created_at) > moment(v1.created_at)
    pause()
    v5 = c.update("i", {"x": 1})
    pause()
    c.delete("i")
    pause()
    # restore brings back the second life, with the second created_at
    v7 = c.restore("i")

    c = reopener.settle(mode).collection("docs")
    got = c.get("i")
    assert got is not None and got.hash == v7.hash
    assert got.data == v5.data == {"life": 2, "x": 1}
    assert got.created_at == v4.created_at != v1.created_at
    assert [d.deleted for d in c.history("i")] == [
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def test_insert_replaces_without_merging(store: sentinel.Store) -> None:
    c = store.collection("docs")
    v1 = c.insert("x", {"a": {"b": 1}, "c": 1})
    v2 = c.insert("x", {"a": {"d": 2}})
    assert v2.data == {"a": {"d": 2}}
    assert v2.version == 2 and v2.created_at == v1.created_at


# -- history and parent links -------------------------------------------------


def test_history_and_parent_links(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    written = [c.insert("h", {"n": 1})]
    written.append(c.update("h", {"n": 2}))
    c.delete("h")
    written.append(c.history("h")[0])
    written.append(c.restore("h"))
    written.append(c.insert("h", {"n": 5}))

    c = reopener.settle(mode).collection("docs")
    history = c.history("h")
    assert [d.version for d in history] == [5, 4, 3, 2, 1]
    assert [d.hash for d in history] == [d.hash for d in reversed(written)]
    assert [d.deleted for d in history] == [False, False, True, False, False]
    assert len({d.hash for d in history}) == 5
    for newer, older in itertools.pairwise(history):
        assert newer.parent == older.hash
        parent = c.parent(newer)
        assert parent is not None and parent.hash == older.hash
        assert parent.deleted == older.deleted
        assert moment(newer.updated_at) >= moment(older.updated_at)
    assert history[-1].parent is None
    assert c.parent(history[-1]) is None
    # the parent of a restored version is the tombstone
    restored = c.get("h", version=4)
    assert restored is not None
    tomb = c.parent(restored)
    assert tomb is not None and tomb.deleted and tomb.version == 3
    assert all(d.collection == "docs" and d.id == "h" for d in history)
    assert c.history("unknown") == []


# -- time travel --------------------------------------------------------------


def _time_travel_fixture(c: sentinel.Collection) -> None:
    steps: list[Callable[[], object]] = [
        lambda: c.insert("t", {"v": 1}),
        lambda: c.update("t", {"v": 2}),
        lambda: c.delete("t"),
        lambda: c.insert("t", {"v": 4}),
        lambda: c.delete("t"),
        lambda: c.restore("t"),
        lambda: c.update("t", {"v": 7}),
    ]
    for step in steps:
        step()
        pause()


def test_time_travel_at_exact_version_boundaries(
    reopener: Reopener, mode: str
) -> None:
    c = reopener.store.collection("docs")
    _time_travel_fixture(c)
    c = reopener.settle(mode).collection("docs")
    versions = oldest_first(c, "t")
    assert [v.deleted for v in versions] == [
        False,
        False,
        True,
        False,
        True,
        False,
        False,
    ]
    times = [moment(v.updated_at) for v in versions]
    assert times == sorted(times) and len(set(times)) == len(times)

    previous: Document | None = None
    for doc in versions:
        expected = None if doc.deleted else doc.hash
        exact = moment(doc.updated_at)
        for when in (
            doc.updated_at,
            exact,
            exact.astimezone(timezone(timedelta(hours=-5))),
            exact.astimezone(timezone(timedelta(hours=5, minutes=30))),
            doc.updated_at.replace("+00:00", "Z"),
            exact.astimezone(timezone(timedelta(hours=9))).isoformat(),
        ):
            got = c.get_at("t", when)
            assert (got.hash if got else None) == expected, (doc, when)
        before = exact - timedelta(microseconds=1)
        got = c.get_at("t", before)
        wanted = (
            None if previous is None or previous.deleted else previous.hash
        )
        assert (got.hash if got else None) == wanted, (doc, before)
        assert (c.get_at("t", before.isoformat()) or got) == got
        previous = doc

    # between two versions: the older one
    middle = times[0] + (times[1] - times[0]) / 2
    got = c.get_at("t", middle)
    assert got is not None and got.version == 1 and got.data == {"v": 1}
    # long after: the newest
    got = c.get_at("t", datetime.now(UTC) + timedelta(days=365))
    assert got is not None and got.version == 7 and got.data == {"v": 7}
    # long before, or an unknown id: None
    assert c.get_at("t", datetime(1970, 1, 2, tzinfo=UTC)) is None
    assert c.get_at("t", times[0] - timedelta(days=1)) is None
    assert c.get_at("unknown", datetime.now(UTC)) is None
    # data at a moment is the data of that version
    restored = c.get_at("t", versions[5].updated_at)
    assert restored is not None and restored.data == {"v": 4}


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 1, 1, 12, 0, 0),
        "2024-01-01T12:00:00",
        "2024-01-01",
        "yesterday",
        "",
        1700000000,
        None,
        b"2024-01-01T12:00:00+00:00",
    ],
)
def test_get_at_refuses_naive_and_malformed_times(
    store: sentinel.Store, when: Any
) -> None:
    c = store.collection("docs")
    c.insert("t", {"v": 1})
    with pytest.raises(InvalidInputError):
        c.get_at("t", when)


def test_get_version_n(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    _time_travel_fixture(c)
    c = reopener.settle(mode).collection("docs")
    versions = oldest_first(c, "t")
    assert len(versions) == 7
    for doc in versions:
        got = c.get("t", version=doc.version)
        if doc.deleted:
            assert got is None
        else:
            assert got is not None and got.hash == doc.hash
            assert got.data == doc.data and got.version == doc.version
    assert c.get("t", version=8) is None
    assert c.get("t", version=10**9) is None
    assert c.get("t", version=2**70) is None
    assert c.get("unknown", version=1) is None
    for bad in (0, -1, True, 1.0, "1", None):
        if bad is None:
            continue
        with pytest.raises(InvalidInputError):
            c.get("t", version=bad)


def test_get_version_of_a_deleted_document(store: sentinel.Store) -> None:
    c = store.collection("docs")
    c.insert("d", {"a": 1})
    c.delete("d")
    assert c.get("d") is None
    got = c.get("d", version=1)
    assert got is not None and got.data == {"a": 1}
    assert c.get("d", version=2) is None


def test_clock_stepping_back_keeps_history_ordered(
    store: sentinel.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wall clock that steps back (NTP, VM resume) must not make a
    document's history run backwards.  The store keeps each version's
    time at least its parent's; a new life after a tombstone starts with
    created_at equal to its own updated_at, as any first version does."""
    import sentinel.engine as engine_module

    c = store.collection("docs")
    v1 = c.insert("k", {"n": 1})
    early = datetime.now(UTC) - timedelta(hours=1)

    def stepped_back() -> tuple[str, int]:
        return (
            early.isoformat(timespec="microseconds"),
            engine_module.to_micros(early),
        )

    monkeypatch.setattr(engine_module, "now_and_micros", stepped_back)
    v2 = c.update("k", {"n": 2})
    assert moment(v2.updated_at) >= moment(v1.updated_at)
    assert v2.created_at == v1.created_at
    c.delete("k")
    tombstone = c.history("k")[0]
    assert moment(tombstone.updated_at) >= moment(v2.updated_at)
    times = [e.time for e in store.log("docs") if e.time is not None]
    assert times == sorted(times, key=moment)

    v4 = c.insert("k", {"n": 4})
    assert moment(v4.updated_at) >= moment(tombstone.updated_at)
    # The new life must not start before the tombstone that ended the
    # previous one, and its first version's created_at is its
    # updated_at.
    assert moment(v4.created_at) >= moment(tombstone.updated_at)
    assert v4.created_at == v4.updated_at


# -- revert -------------------------------------------------------------------


def test_revert(reopener: Reopener, mode: str) -> None:
    store = reopener.store
    c = store.collection("docs")
    v1 = c.insert("rv", {"a": 1, "b": {"c": 1}})
    c.update("rv", {"b": {"d": 2}})
    v3 = c.update("rv", {"a": 2})
    v4 = c.revert("rv", 1)
    assert v4.version == 4
    assert v4.data == v1.data
    assert v4.created_at == v1.created_at
    assert v4.parent == v3.hash
    assert v4.hash != v1.hash
    c.delete("rv")
    before = disk(reopener.path)
    with pytest.raises(NotFoundError):
        c.revert("rv", 5)  # a tombstone
    with pytest.raises(NotFoundError):
        c.revert("rv", 6)  # does not exist yet
    with pytest.raises(NotFoundError):
        c.revert("never", 1)
    for bad in (0, -3, True, 1.5, "1"):
        with pytest.raises(InvalidInputError):
            c.revert("rv", bad)  # type: ignore[arg-type]
    assert disk(reopener.path) == before

    c = reopener.settle(mode).collection("docs")
    got = c.get("rv", version=4)
    assert got is not None and got.hash == v4.hash
    # reverting a deleted document to a live version brings it back
    v6 = c.revert("rv", 2)
    assert v6.version == 6
    got = c.get("rv")
    assert got is not None and got.data == {"a": 1, "b": {"c": 1, "d": 2}}
    assert c.count() == 1


# -- diff ---------------------------------------------------------------------

OLD: dict[str, Json] = {
    "a/b": {"c~d": 1, "keep": 1, "gone": [1, 2, 3]},
    "list": [1, {"x": 1}],
    "t": 1,
    "obj": {"k": 1},
    "drop": "me",
    "~1": 0,
}
NEW: dict[str, Json] = {
    "a/b": {"c~d": 2, "keep": 1, "gone": [1]},
    "list": [1, {"x": 2}, 3],
    "t": 1.0,
    "obj": [1],
    "new": {"k": None},
    "~": True,
    "~1": 5,
}


def test_diff_of_nested_changes(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    v1 = c.insert("df", OLD)
    v2 = c.insert("df", NEW)
    c.delete("df")
    tomb = c.history("df")[0]

    c = reopener.settle(mode).collection("docs")
    result = c.diff("df", 1, 2)
    assert result == {
        "id": "df",
        "from": {"version": 1, "hash": v1.hash},
        "to": {"version": 2, "hash": v2.hash},
        "added": [
            {"path": "/list/2", "value": 3},
            {"path": "/new", "value": {"k": None}},
            {"path": "/~0", "value": True},
        ],
        "removed": [
            {"path": "/a~1b/gone/1", "value": 2},
            {"path": "/a~1b/gone/2", "value": 3},
            {"path": "/drop", "value": "me"},
        ],
        "changed": [
            {"path": "/a~1b/c~0d", "old": 1, "new": 2},
            {"path": "/list/1/x", "old": 1, "new": 2},
            {"path": "/obj", "old": {"k": 1}, "new": [1]},
            {"path": "/t", "old": 1, "new": 1.0},
            {"path": "/~01", "old": 0, "new": 5},
        ],
    }
    t_change = [e for e in result["changed"] if e["path"] == "/t"][0]
    assert type(t_change["old"]) is int and type(t_change["new"]) is float
    json.dumps(result)  # JSON-friendly

    back = c.diff("df", 2, 1)
    assert back["added"] == [
        {"path": p["path"], "value": p["value"]} for p in result["removed"]
    ]
    assert back["removed"] == result["added"]
    assert back["changed"] == [
        {"path": e["path"], "old": e["new"], "new": e["old"]}
        for e in result["changed"]
    ]
    same = c.diff("df", 2, 2)
    assert same["added"] == same["removed"] == same["changed"] == []
    # a tombstone counts as an empty document
    gone = c.diff("df", 2, 3)
    assert gone["to"] == {"version": 3, "hash": tomb.hash}
    assert gone["added"] == [] and gone["changed"] == []
    assert [e["path"] for e in gone["removed"]] == sorted(
        "/" + key.replace("~", "~0").replace("/", "~1") for key in NEW
    )
    with pytest.raises(NotFoundError):
        c.diff("df", 1, 4)
    with pytest.raises(NotFoundError):
        c.diff("never", 1, 1)
    with pytest.raises(InvalidInputError):
        c.diff("df", 0, 1)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _path(pointer: str, root: Json) -> list[str | int]:
    """Parse a JSON Pointer, reading tokens as indexes inside arrays."""
    assert pointer.startswith("/")
    steps: list[str | int] = []
    here = root
    for raw in pointer[1:].split("/"):
        token = _unescape(raw)
        step: str | int = int(token) if type(here) is list else token
        steps.append(step)
        if type(here) in (list, dict):
            try:
                here = here[step]  # type: ignore[index]
            except (IndexError, KeyError):
                here = None
    return steps


def _container(root: Json, steps: list[str | int]) -> Json:
    for step in steps[:-1]:
        root = root[step]
    return root


def apply_diff(old: dict[str, Json], diff: dict[str, Any]) -> Json:
    """Apply a diff to `old` the way a client would: changes in place,
    removals from the last index back, additions from the first."""
    doc = copy.deepcopy(old)
    for entry in diff["changed"]:
        steps = _path(entry["path"], doc)
        _container(doc, steps)[steps[-1]] = copy.deepcopy(entry["new"])
    removals = [_path(e["path"], doc) for e in diff["removed"]]
    for steps in sorted(removals, key=_order, reverse=True):
        del _container(doc, steps)[steps[-1]]
    additions = [(_path(e["path"], doc), e["value"]) for e in diff["added"]]
    for steps, value in sorted(additions, key=lambda item: _order(item[0])):
        holder = _container(doc, steps)
        if type(holder) is list:
            assert steps[-1] == len(holder)
            holder.append(copy.deepcopy(value))
        else:
            holder[steps[-1]] = copy.deepcopy(value)
    return doc


def _order(steps: list[str | int]) -> list[tuple[int, str | int]]:
    return [(0, s) if type(s) is int else (1, s) for s in steps]


KEYS = st.sampled_from(["a", "b", "~", "/", "a/b", "~1", "0", ""])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=3)
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4)
    ),
    max_leaves=12,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=5)


def test_diff_applies_back_property(tmp_path: pathlib.Path) -> None:
    """Applying diff(a, b) to version a gives exactly version b."""
    with sentinel.Store.new(tmp_path / "s", durable=False) as store:
        c = store.collection("docs")
        counter = itertools.count()

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(old=DOCS, new=DOCS)
        def check(old: dict[str, Json], new: dict[str, Json]) -> None:
            doc_id = f"d{next(counter)}"
            c.insert(doc_id, old)
            c.insert(doc_id, new)
            forward = c.diff(doc_id, 1, 2)
            assert strict(apply_diff(old, forward), new)
            backward = c.diff(doc_id, 2, 1)
            assert strict(apply_diff(new, backward), old)
            for kind in ("added", "removed", "changed"):
                paths = [e["path"] for e in forward[kind]]
                assert paths == sorted(paths)
            if strict(old, new):
                assert forward["added"] == forward["removed"] == []
                assert forward["changed"] == []

        check()


# -- optimistic concurrency ---------------------------------------------------

BAD_HASHES: list[Any] = [
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "",
    b"a" * 32,
    bytes(32),
    1,
    " " + "a" * 63,
]


def test_expected_hash_on_insert(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    v1 = c.insert("o", {"n": 1})
    v2 = c.insert("o", {"n": 2}, expected_hash=v1.hash)
    assert v2.version == 2 and v2.parent == v1.hash
    before = disk(store_path)
    with pytest.raises(ConflictError):
        c.insert("o", {"n": 3}, expected_hash=v1.hash)  # stale
    with pytest.raises(ConflictError):
        c.insert("fresh", {"n": 1}, expected_hash=v1.hash)  # absent
    assert disk(store_path) == before
    got = c.get("o")
    assert got is not None and got.hash == v2.hash
    assert c.get("fresh") is None


def test_expected_hash_on_update_and_upsert(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    v1 = c.insert("o", {"n": 1, "m": {"x": 1}})
    v2 = c.update("o", {"m": {"y": 2}}, expected_hash=v1.hash)
    assert v2.data == {"n": 1, "m": {"x": 1, "y": 2}}
    assert c.upsert("o", {"n": 5}, expected_hash=v2.hash) is False
    v3 = c.get("o")
    assert v3 is not None and v3.version == 3
    before = disk(store_path)
    with pytest.raises(ConflictError):
        c.update("o", {"n": 9}, expected_hash=v2.hash)
    with pytest.raises(ConflictError):
        c.upsert("o", {"n": 9}, expected_hash=v1.hash)
    with pytest.raises(ConflictError):
        c.upsert("absent", {"n": 9}, expected_hash=v1.hash)
    # the existence check wins over the hash check for update
    with pytest.raises((NotFoundError, ConflictError)):
        c.update("absent", {"n": 9}, expected_hash=v1.hash)
    assert disk(store_path) == before
    got = c.get("o")
    assert got is not None and got.hash == v3.hash and got.data["n"] == 5


def test_expected_hash_on_delete(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    v1 = c.insert("o", {"n": 1})
    v2 = c.update("o", {"n": 2})
    before = disk(store_path)
    with pytest.raises(ConflictError):
        c.delete("o", expected_hash=v1.hash)
    with pytest.raises(ConflictError):
        c.delete("absent", expected_hash=v1.hash)
    assert disk(store_path) == before
    assert c.count() == 1
    assert c.delete("o", expected_hash=v2.hash) is True
    assert c.get("o") is None
    tomb = c.history("o")[0]
    before = disk(store_path)
    # a deleted document has no current version to expect
    with pytest.raises(ConflictError):
        c.delete("o", expected_hash=v2.hash)
    with pytest.raises(ConflictError):
        c.delete("o", expected_hash=tomb.hash)
    # (update of a deleted id may report either problem)
    with pytest.raises((NotFoundError, ConflictError)):
        c.update("o", {"n": 3}, expected_hash=v2.hash)
    assert disk(store_path) == before


@pytest.mark.parametrize("bad", BAD_HASHES, ids=repr)
def test_malformed_expected_hash_is_invalid_input(
    store: sentinel.Store, store_path: pathlib.Path, bad: Any
) -> None:
    c = store.collection("docs")
    c.insert("o", {"n": 1})
    before = disk(store_path)
    calls: list[Callable[[], object]] = [
        lambda: c.insert("o", {"n": 2}, expected_hash=bad),
        lambda: c.update("o", {"n": 2}, expected_hash=bad),
        lambda: c.upsert("o", {"n": 2}, expected_hash=bad),
        lambda: c.delete("o", expected_hash=bad),
        lambda: c.batch().insert("o", {"n": 2}, expected_hash=bad),
        lambda: store.batch().delete("docs", "o", expected_hash=bad),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError):
            call()
    assert disk(store_path) == before


def test_expected_hash_from_another_document_conflicts(
    store: sentinel.Store,
) -> None:
    c = store.collection("docs")
    other = store.collection("other")
    a = c.insert("a", {"n": 1})
    c.insert("b", {"n": 1})
    twin = other.insert("a", {"n": 1})
    with pytest.raises(ConflictError):
        c.update("b", {"n": 2}, expected_hash=a.hash)
    # equal data in another collection is a different version object
    assert twin.hash != a.hash
    with pytest.raises(ConflictError):
        c.update("a", {"n": 2}, expected_hash=twin.hash)
    assert c.update("a", {"n": 2}, expected_hash=a.hash).version == 2


# -- get_many, ids, all, filter, count ----------------------------------------


def test_get_many(reopener: Reopener, mode: str) -> None:
    c = reopener.store.collection("docs")
    for name in ("a", "b", "c"):
        c.insert(name, {"id": name})
    c.delete("b")
    c = reopener.settle(mode).collection("docs")
    found = c.get_many(["c", "missing", "a", "b", "a"])
    assert [d.id if d else None for d in found] == [
        "c",
        None,
        "a",
        None,
        "a",
    ]
    assert found[0] is not None and found[0].data == {"id": "c"}
    assert c.get_many([]) == []
    assert c.get_many(iter(["a"]))[0] is not None
    with pytest.raises(InvalidIdError):
        c.get_many(["a", "bad id"])


def test_ids_all_filter_with_tombstones_across_windows(
    reopener: Reopener, mode: str
) -> None:
    c = reopener.store.collection("docs")
    names = [f"k{n:05d}" for n in range(2600)]
    shuffled = sorted(names, key=lambda s: hashlib.md5(s.encode()).digest())
    c.bulk_insert((name, {"n": int(name[1:])}) for name in shuffled)
    with c.batch() as b:
        for name in names[::3]:
            b.delete(name)
    live = [name for name in names if int(name[1:]) % 3]

    c = reopener.settle(mode).collection("docs")
    assert list(c.ids()) == live
    assert c.count() == len(live)
    assert [d.id for d in c.all()] == live
    odd = [d.id for d in c.filter(lambda d: d.data["n"] % 2 == 1)]
    assert odd == [name for name in live if int(name[1:]) % 2]
    assert list(c.filter(lambda d: False)) == []


# -- bulk_insert and batches --------------------------------------------------


def _frames(entries: list[sentinel.LogEntry]) -> set[tuple[int, int]]:
    return {(e.pack, e.offset) for e in entries}


def test_bulk_insert(reopener: Reopener, mode: str) -> None:
    store = reopener.store
    c = store.collection("docs")
    c.insert("old", {"v": 1})
    seen = len(list(store.log()))
    docs = c.bulk_insert((f"b{n}", {"n": n}) for n in range(50))  # a generator
    assert [d.id for d in docs] == [f"b{n}" for n in range(50)]
    assert all(d.version == 1 for d in docs)
    more = c.bulk_insert([("old", {"v": 2}), ("dup", {"x": 1}), ("dup", {})])
    assert [(d.id, d.version) for d in more] == [
        ("old", 2),
        ("dup", 1),
        ("dup", 2),
    ]
    assert more[2].parent == more[1].hash
    new_entries = list(store.log())[seen:]
    assert len(new_entries) == 53
    assert len(_frames(new_entries[:50])) == 1  # one frame each
    assert len(_frames(new_entries[50:])) == 1
    assert c.bulk_insert([]) == []

    c = reopener.settle(mode).collection("docs")
    assert c.count() == 52
    got = c.get("dup")
    assert got is not None and got.data == {} and got.version == 2
    got = c.get("old")
    assert got is not None and got.data == {"v": 2}


@pytest.mark.parametrize(
    "bad",
    [
        ("bad id", {"a": 1}),
        ("ok", {"a": float("nan")}),
        ("ok", ["not", "a", "dict"]),
        ("ok", {"a": (1,)}),
    ],
)
def test_bulk_insert_with_bad_item_writes_nothing(
    store: sentinel.Store, store_path: pathlib.Path, bad: tuple[Any, Any]
) -> None:
    c = store.collection("docs")
    before = disk(store_path)
    with pytest.raises(InvalidInputError):
        c.bulk_insert([("first", {"a": 1}), bad, ("last", {"a": 2})])
    assert disk(store_path) == before
    assert c.count() == 0 and c.get("first") is None


def test_collection_batch_all_operations(
    reopener: Reopener, mode: str
) -> None:
    store = reopener.store
    c = store.collection("docs")
    c.insert("upd", {"a": {"b": 1}})
    c.insert("del", {"x": 1})
    c.insert("res", {"r": 1})
    c.delete("res")
    seen = len(list(store.log()))
    with c.batch() as b:
        b.insert("new", {"n": 1})
        b.update("upd", {"a": {"c": 2}})
        b.upsert("ups", {"u": 1})
        b.upsert("upd", {"z": True})
        b.delete("del")
        b.delete("nothing-here")
        b.restore("res")
    results = b.results
    assert isinstance(results[0], Document) and results[0].id == "new"
    assert isinstance(results[1], Document) and results[1].version == 2
    assert results[2:4] == [True, False]
    assert results[4:6] == [True, False]
    assert isinstance(results[6], Document) and results[6].data == {"r": 1}
    entries = list(store.log())[seen:]
    assert len(entries) == 6 and len(_frames(entries)) == 1
    assert len({e.time for e in entries}) == 1

    c = reopener.settle(mode).collection("docs")
    assert sorted(c.ids()) == ["new", "res", "upd", "ups"]
    got = c.get("upd")
    assert got is not None and got.version == 3
    assert got.data == {"a": {"b": 1, "c": 2}, "z": True}
    assert c.get("del") is None
    assert c.count() == 4


def test_batch_sees_its_own_earlier_writes(reopener: Reopener) -> None:
    c = reopener.store.collection("docs")
    with c.batch() as b:
        b.insert("s", {"a": 1})
        b.update("s", {"b": 2})
        b.delete("s")
        b.restore("s")
        b.upsert("s", {"c": 3})
    assert [type(r).__name__ for r in b.results] == [
        "Document",
        "Document",
        "bool",
        "Document",
        "bool",
    ]
    history = oldest_first(c, "s")
    assert [d.deleted for d in history] == [False, False, True, False, False]
    assert [d.data for d in history] == [
        {"a": 1},
        {"a": 1, "b": 2},
        {},
        {"a": 1, "b": 2},
        {"a": 1, "b": 2, "c": 3},
    ]
    for newer, older in itertools.pairwise(reversed(history)):
        assert newer.parent == older.hash


@pytest.mark.parametrize(
    "add_bad",
    [
        lambda b: b.insert("x", {"a": float("nan")}),
        lambda b: b.update("bad id", {"a": 1}),
        lambda b: b.upsert("x", "not a dict"),
        lambda b: b.delete("x", expected_hash="nope"),
        lambda b: b.restore(""),
        lambda b: b.insert("x", {"a": 1}, expected_hash="F" * 64),
    ],
)
def test_batch_bad_input_raises_when_added(
    store: sentinel.Store,
    store_path: pathlib.Path,
    add_bad: Callable[[sentinel.Batch], None],
) -> None:
    c = store.collection("docs")
    c.insert("keep", {"v": 1})
    before = disk(store_path)
    with pytest.raises(InvalidInputError):
        with c.batch() as b:
            b.insert("first", {"a": 1})
            b.update("keep", {"v": 2})
            add_bad(b)
            pytest.fail("adding a bad operation did not raise")
    assert disk(store_path) == before
    assert c.get("first") is None
    got = c.get("keep")
    assert got is not None and got.version == 1


@pytest.mark.parametrize(
    "failing, error",
    [
        (lambda b: b.update("missing", {"a": 1}), NotFoundError),
        (lambda b: b.restore("missing"), NotFoundError),
        (lambda b: b.restore("keep"), ConflictError),
        (lambda b: b.delete("keep", expected_hash="0" * 64), ConflictError),
        (lambda b: b.insert("x", {}, expected_hash="0" * 64), ConflictError),
        (lambda b: b.update("gone", {"a": 1}), NotFoundError),
    ],
)
def test_batch_failing_at_commit_writes_nothing(
    reopener: Reopener,
    failing: Callable[[sentinel.Batch], None],
    error: type[Exception],
) -> None:
    store = reopener.store
    c = store.collection("docs")
    c.insert("keep", {"v": 1})
    c.insert("gone", {"v": 1})
    c.delete("gone")
    before = disk(reopener.path)
    log_before = list(store.log())
    with pytest.raises(error):
        with c.batch() as b:
            b.insert("n1", {"a": 1})
            b.delete("n1")
            b.restore("n1")
            b.update("keep", {"v": 2})
            b.upsert("keep", {"w": 1})
            failing(b)
            b.insert("after", {"a": 1})
    assert b.results == []
    assert disk(reopener.path) == before
    assert list(store.log()) == log_before
    assert c.get("n1") is None and c.history("n1") == []
    assert c.get("after") is None
    got = c.get("keep")
    assert got is not None and got.version == 1
    assert c.count() == 1
    assert store.verify().ok
    # nothing of the rejected batch leaks into later writes
    assert c.insert("n1", {"b": 2}).version == 1
    store = reopener.settle("reopen")
    c = store.collection("docs")
    assert c.count() == 2
    assert store.verify().ok


def test_exception_in_block_discards_batch(
    store: sentinel.Store, store_path: pathlib.Path
) -> None:
    c = store.collection("docs")
    before = disk(store_path)

    class Oops(Exception):
        pass

    with pytest.raises(Oops):
        with c.batch() as b:
            b.insert("a", {"n": 1})
            raise Oops
    with pytest.raises(Oops):
        with store.batch() as sb:
            sb.insert("docs", "a", {"n": 1})
            raise Oops
    assert disk(store_path) == before
    assert c.get("a") is None
    assert b.results == [] and sb.results == []
    # a discarded batch cannot be committed or extended later
    with pytest.raises(SentinelError):
        b.commit()
    with pytest.raises(SentinelError):
        b.insert("a", {"n": 1})
    assert disk(store_path) == before


def test_batch_commit_once(store: sentinel.Store) -> None:
    c = store.collection("docs")
    with c.batch() as b:
        pass
    assert b.results == []
    with c.batch() as b:
        b.insert("a", {"n": 1})
    assert len(b.results) == 1
    with pytest.raises(SentinelError):
        b.commit()
    with pytest.raises(SentinelError):
        b.insert("b", {"n": 1})
    assert c.count() == 1
    explicit = c.batch()
    explicit.insert("c", {"n": 1})
    assert len(explicit.commit()) == 1
    assert c.count() == 2


def test_store_batch_across_two_collections(
    reopener: Reopener, mode: str
) -> None:
    store = reopener.store
    left = store.collection("left")
    right = store.collection("right")
    left.insert("l1", {"a": {"b": 1}})
    right.insert("r1", {"x": 1})
    seen = len(list(store.log()))
    with store.batch() as b:
        b.insert("left", "l2", {"n": 2})
        b.insert("right", "r2", {"n": 2})
        b.update("left", "l1", {"a": {"c": 3}})
        b.upsert("right", "r3", {"n": 3})
        b.delete("right", "r1")
        b.restore("right", "r1")
    assert len(b.results) == 6
    entries = list(store.log())[seen:]
    assert {e.collection for e in entries} == {"left", "right"}
    assert len(entries) == 6 and len(_frames(entries)) == 1

    store = reopener.settle(mode)
    left, right = store.collection("left"), store.collection("right")
    assert list(left.ids()) == ["l1", "l2"]
    assert list(right.ids()) == ["r1", "r2", "r3"]
    got = left.get("l1")
    assert got is not None and got.data == {"a": {"b": 1, "c": 3}}
    got = right.get("r1")
    assert got is not None and got.version == 3 and got.data == {"x": 1}


def test_store_batch_rejected_in_one_collection_writes_none(
    reopener: Reopener,
) -> None:
    store = reopener.store
    store.collection("left").insert("l1", {"v": 1})
    store.collection("right")
    before = disk(reopener.path)
    with pytest.raises(NotFoundError):
        with store.batch() as b:
            b.insert("left", "l2", {"n": 2})
            b.update("left", "l1", {"v": 2})
            b.insert("right", "r1", {"n": 1})
            b.update("right", "missing", {"n": 1})
    # a collection that does not exist rejects the batch too
    with pytest.raises(NotFoundError):
        with store.batch() as b:
            b.insert("left", "l3", {"n": 3})
            b.insert("nowhere", "x", {"n": 1})
    with pytest.raises(InvalidCollectionError):
        with store.batch() as b:
            b.insert("left", "l4", {"n": 4})
            b.insert("bad/name", "x", {"n": 1})
    assert disk(reopener.path) == before
    assert "nowhere" not in store.list_collections()
    assert list(store.collection("left").ids()) == ["l1"]
    assert list(store.collection("right").ids()) == []
    assert store.verify().ok


def test_concurrent_batches_are_isolated(reopener: Reopener) -> None:
    """Group commit packs many threads' batches into one write; a batch
    that fails must not take others down or leak into them."""
    store = reopener.store
    c = store.collection("docs")
    threads, rounds = 8, 15
    outcomes: dict[tuple[int, int], bool] = {}
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for r in range(rounds):
                fail = (t + r) % 3 == 0
                try:
                    with c.batch() as b:
                        for j in range(5):
                            b.upsert(f"t{t}-{j}", {"r": r, "t": t})
                        if fail:
                            b.update("missing", {"boom": True})
                    outcomes[(t, r)] = True
                except NotFoundError:
                    outcomes[(t, r)] = False
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    for t in range(threads):
        committed = [r for r in range(rounds) if outcomes[(t, r)]]
        assert committed == [r for r in range(rounds) if (t + r) % 3]
        for j in range(5):
            rs = [d.data["r"] for d in oldest_first(c, f"t{t}-{j}")]
            assert rs == committed
    assert c.get("missing") is None
    store = reopener.settle("reopen")
    assert store.collection("docs").count() == threads * 5
    assert store.verify().ok


# -- collections: drop, restore, recreate -------------------------------------


def test_drop_restore_recreate(reopener: Reopener, mode: str) -> None:
    store = reopener.store
    c = store.collection("c")
    store.collection("other").insert("o", {"o": 1})
    c.insert("a", {"v": 1})
    c.update("a", {"v": 2})
    c.insert("b", {"v": 1})
    c.delete("b")
    c.insert("x", {"v": 1})
    history_a = [d.hash for d in c.history("a")]
    store.delete_collection("c")

    store = reopener.settle(mode)
    assert store.list_collections() == ["other"]
    with pytest.raises(NotFoundError):
        store.delete_collection("c")
    with pytest.raises(NotFoundError):
        store.delete_collection("never")
    with pytest.raises(NotFoundError):
        store.restore_collection("never")
    if mode == "live":
        # the old handle raises NotFoundError for everything
        calls: list[Callable[[], object]] = [
            lambda: c.get("a"),
            lambda: c.insert("a", {"v": 3}),
            lambda: c.update("a", {"v": 3}),
            lambda: c.upsert("a", {"v": 3}),
            lambda: c.delete("a"),
            lambda: c.restore("b"),
            lambda: c.revert("a", 1),
            lambda: c.count(),
            lambda: list(c.ids()),
            lambda: list(c.all()),
            lambda: c.history("a"),
            lambda: c.get_at("a", datetime.now(UTC)),
            lambda: c.get_many(["a"]),
            lambda: c.diff("a", 1, 2),
            lambda: c.bulk_insert([("z", {})]),
            lambda: c.batch().commit(),
        ]
        for call in calls[:-1]:
            with pytest.raises(NotFoundError):
                call()
        batch = c.batch()
        batch.insert("z", {})
        with pytest.raises(NotFoundError):
            batch.commit()
    assert store.list_collections() == ["other"]

    restored = store.restore_collection("c")
    assert restored.name() == "c"
    with pytest.raises(ConflictError):
        store.restore_collection("c")
    store = reopener.settle(mode)
    c = store.collection("c")
    assert store.list_collections() == ["c", "other"]
    assert list(c.ids()) == ["a", "x"]
    assert c.count() == 2
    assert [d.hash for d in c.history("a")] == history_a
    assert [d.deleted for d in c.history("b")] == [True, False]
    assert c.restore("b").data == {"v": 1}

    # drop, then recreate by name: a new, empty collection
    store.delete_collection("c")
    fresh = store.collection("c")
    assert fresh.count() == 0 and fresh.get("a") is None
    assert fresh.history("a") == []
    with pytest.raises(ConflictError):
        store.restore_collection("c")  # a live one exists
    fresh.insert("a", {"second": True})
    store = reopener.settle(mode)
    c = store.collection("c")
    got = c.get("a")
    assert got is not None and got.version == 1
    assert got.data == {"second": True}
    # dropping the new one sets it aside in place of the old one
    store.delete_collection("c")
    c = store.restore_collection("c")
    assert list(c.ids()) == ["a"] and c.count() == 1
    got = c.get("a")
    assert got is not None and got.data == {"second": True}
    other = store.collection("other").get("o")
    assert other is not None and other.data == {"o": 1}
    # the history of the first life stays in the log
    logged = [e.hash for e in store.log("c") if e.id == "a"]
    assert set(history_a) <= set(logged)
    assert store.verify().ok


def test_handle_works_again_after_restore(store: sentinel.Store) -> None:
    c = store.collection("c")
    c.insert("a", {"v": 1})
    store.delete_collection("c")
    with pytest.raises(NotFoundError):
        c.get("a")
    store.restore_collection("c")
    got = c.get("a")
    assert got is not None and got.data == {"v": 1}
    c.update("a", {"v": 2})
    got = c.get("a")
    assert got is not None and got.version == 2


def test_collection_ops_validate_names(store: sentinel.Store) -> None:
    for bad in ("", "bad/name", "objects", ".dot", "x" * 300):
        with pytest.raises(InvalidCollectionError):
            store.delete_collection(bad)
        with pytest.raises(InvalidCollectionError):
            store.restore_collection(bad)
        with pytest.raises(InvalidCollectionError):
            store.log(bad)


# -- the ref log --------------------------------------------------------------


def test_log(reopener: Reopener, mode: str) -> None:
    store = reopener.store
    c = store.collection("c")
    c.insert("a", {"n": 1})
    pause()
    c.update("a", {"n": 2})
    pause()
    c.delete("a")
    pause()
    c.restore("a")
    pause()
    d = store.collection("d")
    with store.batch() as b:
        b.insert("c", "b", {"n": 1})
        b.insert("d", "x", {"n": 1})
    pause()
    store.delete_collection("d")
    store.restore_collection("d")
    d.delete("x")

    store = reopener.settle(mode)
    entries = list(store.log())
    assert [(e.action, e.collection, e.id, e.version) for e in entries] == [
        ("create", "c", None, None),
        ("write", "c", "a", 1),
        ("write", "c", "a", 2),
        ("delete", "c", "a", 3),
        ("write", "c", "a", 4),
        ("create", "d", None, None),
        ("write", "c", "b", 1),
        ("write", "d", "x", 1),
        ("drop", "d", None, None),
        ("restore", "d", None, None),
        ("delete", "d", "x", 2),
    ]
    c, d = store.collection("c"), store.collection("d")
    versions = {(e.collection, e.id, e.version): e for e in entries if e.id}
    for collection in (c, d):
        for doc_id in collection.ids() if collection is c else ["x"]:
            previous = None
            for doc in oldest_first(collection, doc_id):
                entry = versions[(collection.name(), doc_id, doc.version)]
                assert entry.hash == doc.hash
                assert entry.previous == previous
                assert entry.time is not None
                assert moment(entry.time) == moment(doc.updated_at)
                assert (entry.action == "delete") == doc.deleted
                previous = doc.hash
    for entry in entries:
        if entry.id is None:
            assert entry.hash is None and entry.previous is None
            assert entry.version is None
    # oldest first: frames in order, times increasing across frames
    places = [(e.pack, e.offset) for e in entries]
    assert places == sorted(places)
    timed = [e for e in entries if e.time is not None]
    for earlier, later in itertools.pairwise(timed):
        if (earlier.pack, earlier.offset) == (later.pack, later.offset):
            assert earlier.time == later.time  # one batch, one moment
        else:
            assert moment(earlier.time or "") < moment(later.time or "")
    # one collection's log is the matching part of the whole log
    assert list(store.log("c")) == [e for e in entries if e.collection == "c"]
    assert list(store.log("d")) == [e for e in entries if e.collection == "d"]
    assert list(store.log("unknown")) == []
    assert iter(store.log()) is not None


def test_log_of_empty_store(store: sentinel.Store) -> None:
    assert list(store.log()) == []


# -- model-based property -----------------------------------------------------

IDS = ("a", "b", "c")
SMALL_KEYS = st.sampled_from(["x", "y", "z"])
SMALL_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(["", "s"]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(SMALL_KEYS, kids, max_size=3)
    ),
    max_leaves=6,
)
SMALL_DOCS = st.dictionaries(SMALL_KEYS, SMALL_VALUES, max_size=3)
doc_ids = st.sampled_from(IDS)
OPS = st.one_of(
    st.tuples(st.just("insert"), doc_ids, SMALL_DOCS),
    st.tuples(st.just("update"), doc_ids, SMALL_DOCS),
    st.tuples(st.just("upsert"), doc_ids, SMALL_DOCS),
    st.tuples(st.just("delete"), doc_ids),
    st.tuples(st.just("restore"), doc_ids),
    st.tuples(st.just("revert"), doc_ids, st.integers(1, 6)),
    st.tuples(st.just("reopen")),
)


def model_merge(base: dict[str, Json], patch: dict[str, Json]) -> Json:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if type(value) is dict and type(out.get(key)) is dict:
            out[key] = model_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Model:
    """What the store should hold: per id, every version oldest first,
    as (data or None for a tombstone, the number of the version whose
    updated_at is this version's created_at)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[tuple[Json, int]]] = {
            doc_id: [] for doc_id in IDS
        }

    def live(self, doc_id: str) -> bool:
        chain = self.versions[doc_id]
        return bool(chain) and chain[-1][0] is not None

    def born(self, doc_id: str) -> int:
        """created_at source of a new version written now."""
        chain = self.versions[doc_id]
        return chain[-1][1] if self.live(doc_id) else len(chain) + 1

    def add(self, doc_id: str, data: Json, born: int) -> None:
        self.versions[doc_id].append((data, born))

    def run(self, c: sentinel.Collection, op: tuple[Any, ...]) -> None:
        kind, doc_id = op[0], op[1]
        chain = self.versions[doc_id]
        if kind == "insert":
            doc = c.insert(doc_id, op[2])
            self.add(doc_id, copy.deepcopy(op[2]), self.born(doc_id))
            assert doc.version == len(chain)
        elif kind == "update":
            if not self.live(doc_id):
                with pytest.raises(NotFoundError):
                    c.update(doc_id, op[2])
                return
            doc = c.update(doc_id, op[2])
            merged = model_merge(chain[-1][0], op[2])
            self.add(doc_id, merged, self.born(doc_id))
            assert strict(doc.data, merged)
        elif kind == "upsert":
            fresh = not self.live(doc_id)
            assert c.upsert(doc_id, op[2]) is fresh
            data = (
                copy.deepcopy(op[2])
                if fresh
                else model_merge(chain[-1][0], op[2])
            )
            self.add(doc_id, data, self.born(doc_id))
        elif kind == "delete":
            was_live = self.live(doc_id)
            assert c.delete(doc_id) is was_live
            if was_live:
                self.add(doc_id, None, chain[-1][1])
        elif kind == "restore":
            if not chain:
                with pytest.raises(NotFoundError):
                    c.restore(doc_id)
            elif self.live(doc_id):
                with pytest.raises(ConflictError):
                    c.restore(doc_id)
            else:
                data, born = next(
                    v for v in reversed(chain) if v[0] is not None
                )
                doc = c.restore(doc_id)
                self.add(doc_id, copy.deepcopy(data), born)
                assert strict(doc.data, data)
        elif kind == "revert":
            number = op[2]
            if number > len(chain) or chain[number - 1][0] is None:
                with pytest.raises(NotFoundError):
                    c.revert(doc_id, number)
                return
            data = copy.deepcopy(chain[number - 1][0])
            doc = c.revert(doc_id, number)
            self.add(doc_id, data, self.born(doc_id))
            assert strict(doc.data, data)

    def check(self, c: sentinel.Collection, *, deep: bool = False) -> None:
        live = [doc_id for doc_id in IDS if self.live(doc_id)]
        assert c.count() == len(live)
        assert list(c.ids()) == live
        assert [d.id for d in c.all()] == live
        for doc_id in IDS:
            chain = self.versions[doc_id]
            got = c.get(doc_id)
            if self.live(doc_id):
                assert got is not None and strict(got.data, chain[-1][0])
                assert got.version == len(chain)
            else:
                assert got is None
            history = oldest_first(c, doc_id)
            assert [d.version for d in history] == list(
                range(1, len(chain) + 1)
            )
            assert [d.deleted for d in history] == [
                data is None for data, _ in chain
            ]
            parent = None
            for doc, (data, born) in zip(history, chain, strict=True):
                assert strict(doc.data, {} if data is None else data)
                assert doc.parent == parent
                parent = doc.hash
                if data is not None:
                    assert doc.created_at == history[born - 1].updated_at
            if not deep:
                continue
            for doc in history:
                at_version = c.get(doc_id, version=doc.version)
                assert hashes([at_version]) == [
                    None if doc.deleted else doc.hash
                ]
                # the newest version with this time or an earlier one
                current = [
                    d
                    for d in history
                    if moment(d.updated_at) <= moment(doc.updated_at)
                ][-1]
                at_time = c.get_at(doc_id, doc.updated_at)
                assert hashes([at_time]) == [
                    None if current.deleted else current.hash
                ]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(OPS, max_size=25))
def test_lifecycle_matches_model(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / "s"
        store = sentinel.Store.new(path, durable=False)
        try:
            c = store.collection("m")
            model = Model()
            for op in ops:
                if op[0] == "reopen":
                    store.close()
                    store = sentinel.Store.new(path, durable=False)
                    c = store.collection("m")
                else:
                    model.run(c, op)
                model.check(c)
            model.check(c, deep=True)
            store.close()
            store = sentinel.Store.new(path, durable=False)
            model.check(store.collection("m"), deep=True)
            with store._engine.state_lock:
                store._engine.checkpoint()
            store.close()
            store = sentinel.Store.new(path, durable=False)
            assert store._engine._table_size > 0
            model.check(store.collection("m"), deep=True)
            assert store.verify().ok
        finally:
            store.close()
