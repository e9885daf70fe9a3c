"""Every public call of Sentinel, through the public API only."""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import figures
import pytest
from helpers.tree import diff, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentinel

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


# -- helpers -----------------------------------------------------------------


def same(left: Any, right: Any) -> bool:
    """Strict JSON equality: types must match exactly (1, 1.0 and True
    differ), floats bit for bit (so -0.0 is not 0.0), dict keys as
    sets."""
    if type(left) is not type(right):
        return False
    if type(left) is float:
        return left == right and math.copysign(1.0, left) == math.copysign(
            1.0, right
        )
    if type(left) is list:
        return len(left) == len(right) and all(
            same(a, b) for a, b in zip(left, right, strict=True)
        )
    if type(left) is dict:
        return left.keys() == right.keys() and all(
            same(left[key], right[key]) for key in left
        )
    return bool(left == right)


def utc(stamp: str) -> datetime:
    """Parse an ISO 8601 stamp and check it is UTC."""
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None, stamp
    assert parsed.utcoffset() == timedelta(0), stamp
    assert parsed.isoformat(timespec="microseconds") == stamp, stamp
    return parsed


def check_document(
    doc: sentinel.Document, collection: str, doc_id: str
) -> None:
    assert doc.collection == collection
    assert doc.id == doc_id
    assert type(doc.version) is int and doc.version >= 1
    assert len(doc.hash) == 64
    assert doc.hash == doc.hash.lower()
    int(doc.hash, 16)
    assert utc(doc.created_at) <= utc(doc.updated_at)


def run_child(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- create, open, close -----------------------------------------------------


def test_new_creates_missing_folders_and_reopens(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "a" / "b" / "store"
    store = sentinel.Store.new(path)
    assert isinstance(store, sentinel.Store)
    assert store.path == str(path.resolve())
    assert os.path.isabs(store.path)
    assert store.list_collections() == []
    store.collection("c").insert("x", {"n": 1})
    store.close()

    again = sentinel.Store.new(str(path))
    try:
        doc = again.collection("c").get("x")
        assert doc is not None and doc.data == {"n": 1} and doc.version == 1
    finally:
        again.close()


def test_new_uses_an_existing_empty_folder(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    with sentinel.Store.new(folder) as store:
        store.collection("c").insert("x", {})
    with sentinel.Store.new(folder) as store:
        assert store.collection("c").count() == 1


def test_relative_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with sentinel.Store.new("rel") as store:
        assert store.path == str(tmp_path.resolve() / "rel")
        store.collection("c").insert("x", {"a": 1})
    with sentinel.Store.new(tmp_path / "rel") as store:
        assert store.collection("c").get("x") is not None


def test_context_manager_closes(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        docs.insert("x", {"n": 1})
    with pytest.raises(sentinel.StoreClosedError):
        docs.get("x")
    with pytest.raises(sentinel.StoreClosedError):
        store.list_collections()


def test_context_manager_closes_on_error(store_path: pathlib.Path) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with sentinel.Store.new(store_path) as store:
            store.collection("c").insert("x", {"n": 1})
            raise Boom
    with pytest.raises(sentinel.StoreClosedError):
        store.collection("c")
    with sentinel.Store.new(store_path) as store:
        assert store.collection("c").get("x") is not None


CLOSED_CALLS: dict[str, Callable[[sentinel.Store, sentinel.Collection], Any]]
CLOSED_CALLS = {
    "collection": lambda s, c: s.collection("c"),
    "new collection": lambda s, c: s.collection("other"),
    "list_collections": lambda s, c: s.list_collections(),
    "verify": lambda s, c: s.verify(),
    "cat_object": lambda s, c: s.cat_object("00" * 32),
    "insert": lambda s, c: c.insert("x", {"n": 2}),
    "insert new id": lambda s, c: c.insert("y", {"n": 2}),
    "get": lambda s, c: c.get("x"),
    "history": lambda s, c: c.history("x"),
    "ids": lambda s, c: list(c.ids()),
    "all": lambda s, c: list(c.all()),
    "count": lambda s, c: c.count(),
}


@pytest.mark.parametrize("call", sorted(CLOSED_CALLS))
def test_closed_store_raises(store_path: pathlib.Path, call: str) -> None:
    store = sentinel.Store.new(store_path)
    docs = store.collection("c")
    docs.insert("x", {"n": 1})
    store.close()
    store.close()  # closing twice is fine
    before = snapshot(store_path)
    with pytest.raises(sentinel.StoreClosedError):
        CLOSED_CALLS[call](store, docs)
    assert diff(before, snapshot(store_path)) == []
    assert docs.name() == "c"
    with sentinel.Store.new(store_path) as again:
        doc = again.collection("c").get("x")
        assert doc is not None and doc.data == {"n": 1}
        assert again.collection("c").get("y") is None
        assert again.list_collections() == ["c"]


def test_closing_one_handle_keeps_the_other(store_path: pathlib.Path) -> None:
    first = sentinel.Store.new(store_path)
    second = sentinel.Store.new(store_path)
    first.collection("c").insert("x", {"n": 1})
    first.close()
    docs = second.collection("c")
    assert docs.get("x") is not None
    docs.insert("x", {"n": 2})
    assert docs.get("x").version == 2  # type: ignore[union-attr]
    second.close()


# -- collections -------------------------------------------------------------


def test_collection_get_or_create(store: sentinel.Store) -> None:
    first = store.collection("users")
    assert first.name() == "users"
    assert store.list_collections() == ["users"]
    second = store.collection("users")
    assert second.name() == "users"
    assert store.list_collections() == ["users"]
    first.insert("u1", {"n": 1})
    doc = second.get("u1")
    assert doc is not None and doc.data == {"n": 1}
    assert second.count() == 1


def test_empty_collection_is_durable(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        store.collection("empty")
    with sentinel.Store.new(store_path) as store:
        assert store.list_collections() == ["empty"]
        empty = store.collection("empty")
        assert empty.count() == 0
        assert list(empty.ids()) == []
        assert list(empty.all()) == []


def test_list_collections_sorted_and_persisted(
    store_path: pathlib.Path,
) -> None:
    names = ["zeta", "Alpha", "beta", "a.b", "_x", "-y", "9", "a-b", "A"]
    with sentinel.Store.new(store_path) as store:
        for name in names:
            store.collection(name)
        assert store.list_collections() == sorted(names)
        store.collection("beta")  # again: no duplicate
        assert store.list_collections() == sorted(names)
    with sentinel.Store.new(store_path) as store:
        assert store.list_collections() == sorted(names)
        assert [store.collection(n).name() for n in names] == names


def test_collection_names_are_case_sensitive(store: sentinel.Store) -> None:
    upper = store.collection("Docs")
    lower = store.collection("docs")
    upper.insert("x", {"which": "upper"})
    lower.insert("x", {"which": "lower"})
    assert upper.get("x").data == {"which": "upper"}  # type: ignore
    assert lower.get("x").data == {"which": "lower"}  # type: ignore
    assert store.list_collections() == ["Docs", "docs"]


def test_same_id_in_two_collections(store: sentinel.Store) -> None:
    one = store.collection("one")
    two = store.collection("two")
    one.insert("x", {"n": 1})
    one.insert("x", {"n": 2})
    two.insert("x", {"n": 3})
    assert one.get("x").version == 2  # type: ignore[union-attr]
    assert two.get("x").version == 1  # type: ignore[union-attr]
    assert two.get("x").collection == "two"  # type: ignore[union-attr]
    assert one.count() == 1 and two.count() == 1


# -- insert and replace ------------------------------------------------------


def test_insert_then_replace(store: sentinel.Store) -> None:
    docs = store.collection("c")
    first = docs.insert("doc", {"name": "Alice", "age": 30})
    check_document(first, "c", "doc")
    assert first.version == 1
    assert first.created_at == first.updated_at
    assert first.data == {"name": "Alice", "age": 30}

    got = docs.get("doc")
    assert got is not None
    assert (got.version, got.hash, got.created_at, got.updated_at) == (
        first.version,
        first.hash,
        first.created_at,
        first.updated_at,
    )
    assert got == first
    assert got.data == first.data

    second = docs.insert("doc", {"name": "Alice", "age": 31})
    check_document(second, "c", "doc")
    assert second.version == 2
    assert second.created_at == first.created_at
    assert utc(second.updated_at) >= utc(first.updated_at)
    assert second.hash != first.hash
    assert second != first
    latest = docs.get("doc")
    assert latest is not None
    assert latest.version == 2 and latest.data["age"] == 31
    assert latest.hash == second.hash
    assert latest.updated_at == second.updated_at
    assert docs.count() == 1


def test_many_versions_timestamps_and_hashes(store: sentinel.Store) -> None:
    docs = store.collection("c")
    written = [docs.insert("doc", {"n": n % 3}) for n in range(30)]
    assert [d.version for d in written] == list(range(1, 31))
    assert len({d.hash for d in written}) == 30
    assert {d.created_at for d in written} == {written[0].created_at}
    stamps = [utc(d.updated_at) for d in written]
    assert stamps == sorted(stamps)
    assert docs.count() == 1


@pytest.mark.parametrize(
    "nanos",
    [
        0,
        999_999_999,
        1_796_400_000_000_000_000,  # 2026-12-04
        1_796_400_000_999_999_000,
        4_102_444_799_999_999_999,  # the last instant of 2099
        253_402_300_798_000_000_000,  # 9999-12-31T23:59:58
    ],
)
def test_clock_text_is_exactly_isoformat(
    monkeypatch: pytest.MonkeyPatch, nanos: int
) -> None:
    """Timestamps are formatted from a cached second; the text must be
    what ``datetime.isoformat`` gives for the same microsecond, and the
    microseconds the ones that text reads back as."""
    from datetime import UTC

    from sentinel import engine

    for step in (0, 1_000, 1_000_000_000):  # same second, then the next
        monkeypatch.setattr(engine.time, "time_ns", lambda at=nanos + step: at)
        text, micros = engine.now_and_micros()
        moment = datetime.fromtimestamp(0, UTC) + timedelta(
            microseconds=(nanos + step) // 1000
        )
        assert text == moment.isoformat(timespec="microseconds")
        assert micros == engine.to_micros(datetime.fromisoformat(text))


def test_identical_data_still_makes_a_new_version(
    store: sentinel.Store,
) -> None:
    docs = store.collection("c")
    first = docs.insert("doc", {"same": True})
    second = docs.insert("doc", {"same": True})
    assert second.version == 2
    assert second.hash != first.hash
    assert [d.version for d in docs.history("doc")] == [2, 1]


def test_get_missing_is_none(store: sentinel.Store) -> None:
    docs = store.collection("c")
    assert docs.get("nobody") is None
    assert docs.history("nobody") == []
    docs.insert("somebody", {})
    assert docs.get("nobody") is None
    assert store.collection("other").get("somebody") is None


def test_ids_are_case_sensitive(store: sentinel.Store) -> None:
    docs = store.collection("c")
    docs.insert("Doc", {"v": "upper"})
    docs.insert("doc", {"v": "lower"})
    assert docs.get("Doc").data == {"v": "upper"}  # type: ignore
    assert docs.get("doc").data == {"v": "lower"}  # type: ignore
    assert docs.count() == 2


def test_longest_id(store: sentinel.Store) -> None:
    docs = store.collection("c")
    doc_id = "a" * 100 + "Z_-9" * 25
    assert len(doc_id) == 200
    docs.insert(doc_id, {"long": True})
    got = docs.get(doc_id)
    assert got is not None and got.id == doc_id
    assert list(docs.ids()) == [doc_id]


# -- count -------------------------------------------------------------------


def test_count_across_replace_and_reopen(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        assert docs.count() == 0
        for n in range(5):
            docs.insert(f"d{n}", {"n": n})
            assert docs.count() == n + 1
        for _ in range(3):
            for n in range(5):
                docs.insert(f"d{n}", {"again": n})
        assert docs.count() == 5
        assert store.collection("other").count() == 0
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        assert docs.count() == 5
        docs.insert("d0", {"replaced": True})
        docs.insert("d5", {"new": True})
        assert docs.count() == 6
    with sentinel.Store.new(store_path) as store:
        assert store.collection("c").count() == 6


def test_count_after_checkpoint_and_tail(store_path: pathlib.Path) -> None:
    """Enough data for the store to checkpoint its refs at close, then a
    small tail on top: the count must survive both ways of opening."""
    rng = random.Random(7)
    with sentinel.Store.new(store_path, durable=False) as store:
        docs = store.collection("big")
        for n in range(48):
            blob = rng.randbytes(6000).hex()
            docs.insert(f"d{n % 40}", {"blob": blob})
        assert docs.count() == 40
    # The point of this test is the reopen from a checkpoint; make sure
    # the data above was large enough to produce one.
    assert (store_path / "refs" / "table").exists()
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("big")
        assert docs.count() == 40
        docs.insert("d0", {"small": True})
        docs.insert("d40", {"small": True})
        assert docs.count() == 41
        assert docs.get("d7").version == 2  # type: ignore[union-attr]
        assert docs.get("d8").version == 1  # type: ignore[union-attr]
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("big")
        assert docs.count() == 41
        assert docs.get("d0").version == 3  # type: ignore[union-attr]
        assert docs.get("d0").data == {"small": True}  # type: ignore
        assert len(list(docs.ids())) == 41
        assert store.verify().ok


# -- data isolation and immutability -----------------------------------------


def test_mutating_the_input_after_insert(store: sentinel.Store) -> None:
    docs = store.collection("c")
    data: dict[str, Any] = {"list": [1, 2], "inner": {"k": "v"}}
    returned = docs.insert("doc", data)
    data["list"].append(3)
    data["inner"]["k"] = "changed"
    data["new"] = True
    assert returned.data == {"list": [1, 2], "inner": {"k": "v"}}
    got = docs.get("doc")
    assert got is not None
    assert got.data == {"list": [1, 2], "inner": {"k": "v"}}


def test_mutating_returned_data(store: sentinel.Store) -> None:
    docs = store.collection("c")
    returned = docs.insert("doc", {"list": [1, 2], "inner": {"k": "v"}})
    returned.data["list"].append(99)
    returned.data["inner"]["k"] = "changed"
    got = docs.get("doc")
    assert got is not None
    assert got.data == {"list": [1, 2], "inner": {"k": "v"}}
    got.data["list"].clear()
    got.data["added"] = 1
    for doc in docs.history("doc"):
        doc.data.clear()
    for doc in docs.all():
        doc.data["x"] = 1
    again = docs.get("doc")
    assert again is not None
    assert again.data == {"list": [1, 2], "inner": {"k": "v"}}
    assert again.hash == returned.hash
    assert store.verify().ok


def test_two_gets_do_not_share_data(store: sentinel.Store) -> None:
    docs = store.collection("c")
    docs.insert("doc", {"list": [1]})
    one, two = docs.get("doc"), docs.get("doc")
    assert one is not None and two is not None
    one.data["list"].append(2)
    assert two.data == {"list": [1]}


ATTRIBUTES = ("id", "version", "created_at", "updated_at", "hash", "data")


@pytest.mark.parametrize("name", [*ATTRIBUTES, "collection", "other"])
def test_document_is_read_only(store: sentinel.Store, name: str) -> None:
    docs = store.collection("c")
    for doc in (docs.insert("doc", {"n": 1}), docs.get("doc")):
        assert doc is not None
        before = (doc.id, doc.version, doc.hash, doc.data)
        with pytest.raises(AttributeError):
            setattr(doc, name, "x")
        with pytest.raises(AttributeError):
            delattr(doc, name)
        assert (doc.id, doc.version, doc.hash, doc.data) == before
    got = docs.get("doc")
    assert got is not None and got.data == {"n": 1} and got.version == 1


# -- history -----------------------------------------------------------------


def test_history_newest_first_across_reopen(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        written = [docs.insert("doc", {"n": n}) for n in range(1, 6)]
        docs.insert("other", {"n": 0})
        history = docs.history("doc")
        assert [d.version for d in history] == [5, 4, 3, 2, 1]
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        history = docs.history("doc")
        assert [d.version for d in history] == [5, 4, 3, 2, 1]
        assert [d.data for d in history] == [{"n": n} for n in range(5, 0, -1)]
        assert [d.hash for d in history] == [d.hash for d in written][::-1]
        assert [d.updated_at for d in history] == [
            d.updated_at for d in written
        ][::-1]
        assert {d.created_at for d in history} == {written[0].created_at}
        for doc in history:
            check_document(doc, "c", "doc")
        assert history[0] == docs.get("doc")
        assert [d.version for d in docs.history("other")] == [1]


def test_history_parent_chain(store: sentinel.Store) -> None:
    docs = store.collection("c")
    for n in range(4):
        docs.insert("doc", {"n": n})
    history = docs.history("doc")
    for newer, older in zip(history, history[1:], strict=False):
        shown = store.cat_object(newer.hash)
        assert shown["hash"] == newer.hash
        assert shown["type"] == "version"
        payload = shown["payload"]
        assert isinstance(payload, dict)
        assert payload["parent"] == older.hash
        assert payload["version"] == newer.version
        assert payload["data"] == newer.data
        assert payload["collection"] == "c" and payload["id"] == "doc"
    oldest = store.cat_object(history[-1].hash)["payload"]
    assert isinstance(oldest, dict) and oldest["parent"] is None


# -- ids and all -------------------------------------------------------------


def test_ids_and_all_sorted(store: sentinel.Store) -> None:
    docs = store.collection("c")
    names = ["b", "a", "B", "A", "_", "-", "0", "z9", "a-1", "a_1", "Zed"]
    shuffled = names[:]
    random.Random(3).shuffle(shuffled)
    for name in shuffled:
        docs.insert(name, {"id": name})
    docs.insert("a", {"id": "a", "again": True})
    assert list(docs.ids()) == sorted(names)
    found = list(docs.all())
    assert [d.id for d in found] == sorted(names)
    for doc in found:
        assert doc.data["id"] == doc.id
        check_document(doc, "c", doc.id)
    assert [d.version for d in found if d.id == "a"] == [2]


def test_ids_beyond_one_window(tmp_path: pathlib.Path) -> None:
    """More ids than the listing copies at once, in random order."""
    names = [f"id{n:05d}" for n in range(2600)]
    random.Random(5).shuffle(names)
    with sentinel.Store.new(tmp_path / "s", durable=False) as store:
        docs = store.collection("c")
        for name in names:
            docs.insert(name, {"n": name})
        listed = list(docs.ids())
        assert listed == sorted(names)
        assert docs.count() == len(names)
        everything = docs.all()
        first = [next(everything) for _ in range(3)]
        assert [d.id for d in first] == sorted(names)[:3]
        assert sum(1 for _ in everything) == len(names) - 3


def test_ids_of_empty_and_unknown(store: sentinel.Store) -> None:
    assert list(store.collection("c").ids()) == []
    assert list(store.collection("c").all()) == []


# -- round trips -------------------------------------------------------------

VALUES: dict[str, Any] = {
    "empty string": "",
    "ascii": "hello",
    "latin": "é à ü ß",
    "cjk": "日本語",
    "non-bmp": "\U0001f600 \U00010348 \U0010ffff",
    "controls": '\x00\x01\x1f"\\/\b\f\n\r\t\x7f',
    "line separators": "\u2028\u2029",
    "zero width": "a\u200bb\ufeff",
    "nfd": "e\u0301",
    "int zero": 0,
    "int": -17,
    "int max": INT_MAX,
    "int min": INT_MIN,
    "int 2**63": 2**63,
    "int 2**63-1": 2**63 - 1,
    "float zero": 0.0,
    "negative zero": -0.0,
    "float one": 1.0,
    "float big": 1e300,
    "float max": 1.7976931348623157e308,
    "subnormal min": 5e-324,
    "float min normal": 2.2250738585072014e-308,
    "float third": 1 / 3,
    "float negative": -2.5e-10,
    "float 2**53+2": float(2**53 + 2),
    "true": True,
    "false": False,
    "null": None,
    "empty list": [],
    "empty dict": {},
    "list of all": [0, -0.0, 1.5, "s", None, True, [], {}],
    "nested": {"a": [{"b": [[{"c": None}]]}], "d": {"e": {"f": [1, 2.0]}}},
    "unicode keys": {"\U0001f600": 1, "é": 2, "": 3, "e\u0301": 4},
    "key order": {"b": 1, "a": 2, "B": 3, "\u00e9": 4, "~": 5, "a\x00": 6},
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_round_trip_value(store_path: pathlib.Path, name: str) -> None:
    value = VALUES[name]
    data = {"value": value, "copy": [value], name: value}
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        returned = docs.insert("doc", data)
        assert same(returned.data, data)
        got = docs.get("doc")
        assert got is not None and same(got.data, data)
    with sentinel.Store.new(store_path) as store:
        got = store.collection("c").get("doc")
        assert got is not None and same(got.data, data)
        shown = store.cat_object(got.hash)["payload"]
        assert isinstance(shown, dict) and same(shown["data"], data)


def test_round_trip_empty_document(store: sentinel.Store) -> None:
    docs = store.collection("c")
    assert docs.insert("empty", {}).data == {}
    got = docs.get("empty")
    assert got is not None and got.data == {} and got.version == 1


def test_equal_data_in_two_ids(store: sentinel.Store) -> None:
    docs = store.collection("c")
    data = {"shared": [1, 2, {"x": "y"}]}
    one = docs.insert("one", data)
    two = docs.insert("two", data)
    assert one.id == "one" and two.id == "two"
    assert docs.get("one").data == data  # type: ignore[union-attr]
    assert docs.get("two").data == data  # type: ignore[union-attr]
    docs.insert("one", {"changed": True})
    assert docs.get("two").data == data  # type: ignore[union-attr]
    assert docs.get("two").version == 1  # type: ignore[union-attr]
    assert docs.get("one").version == 2  # type: ignore[union-attr]
    assert docs.count() == 2
    assert store.verify().ok


# -- several handles and processes -------------------------------------------


def test_two_handles_in_one_process(store_path: pathlib.Path) -> None:
    with (
        sentinel.Store.new(store_path) as first,
        sentinel.Store.new(store_path) as second,
    ):
        a = first.collection("c")
        a.insert("x", {"by": "first"})
        b_docs = second.collection("c")
        got = b_docs.get("x")
        assert got is not None and got.data == {"by": "first"}
        assert b_docs.count() == 1

        first.collection("fresh")
        assert second.list_collections() == ["c", "fresh"]

        b_docs.insert("x", {"by": "second"})
        b_docs.insert("y", {"by": "second"})
        got = a.get("x")
        assert got is not None
        assert got.version == 2 and got.data == {"by": "second"}
        assert a.count() == 2
        for n in range(3, 9):
            (a if n % 2 else b_docs).insert("x", {"n": n})
        assert [d.version for d in a.history("x")] == list(range(8, 0, -1))
        assert [d.version for d in b_docs.history("x")] == list(
            range(8, 0, -1)
        )
        assert list(b_docs.ids()) == ["x", "y"]
        assert first.verify().ok and second.verify().ok


WRITER_CODE = """
import sys
import sentinel
with sentinel.Store.new(sys.argv[1]) as store:
    docs = store.collection("c")
    for n in range(int(sys.argv[2])):
        docs.insert("x", {"from": "child", "n": n})
    store.collection("made-by-child").insert("y", {"n": 1})
    print(docs.get("x").hash)
"""


def test_second_process_writes_are_seen(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        docs.insert("x", {"from": "parent"})
        assert docs.count() == 1
        child_hash = run_child(WRITER_CODE, str(store_path), "3").strip()
        got = docs.get("x")
        assert got is not None
        assert got.version == 4
        assert got.hash == child_hash
        assert got.data == {"from": "child", "n": 2}
        assert docs.count() == 1
        assert store.list_collections() == ["c", "made-by-child"]
        assert store.collection("made-by-child").count() == 1
        assert [d.version for d in docs.history("x")] == [4, 3, 2, 1]
        docs.insert("x", {"from": "parent", "again": True})
        assert docs.get("x").version == 5  # type: ignore[union-attr]
        assert store.verify().ok


READER_CODE = """
import json, sys
import sentinel
with sentinel.Store.new(sys.argv[1]) as store:
    doc = store.collection("c").get("x")
    print(json.dumps([doc.version, doc.hash, doc.data]))
"""


def test_second_process_reads_writes(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        docs = store.collection("c")
        docs.insert("x", {"n": 1})
        last = docs.insert("x", {"n": 2, "s": "\U0001f600"})
        out = run_child(READER_CODE, str(store_path))
        assert json.loads(out) == [2, last.hash, {"n": 2, "s": "\U0001f600"}]


# -- formats and refusals ----------------------------------------------------


def _rewrite_config(path: pathlib.Path, **changes: Any) -> None:
    config_path = path / "sentinel.json"
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config, sort_keys=True))


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"version": 0},
        {"version": "1"},
        {"format": "other"},
        {"encryption": "aes-256-gcm"},
        {"compression": "lz4"},
        {"hash": "sha256"},
    ],
    ids=repr,
)
def test_unknown_config_is_refused(
    store_path: pathlib.Path, changes: dict[str, Any]
) -> None:
    with sentinel.Store.new(store_path) as store:
        store.collection("c").insert("x", {"n": 1})
    _rewrite_config(store_path, **changes)
    before = snapshot(store_path)
    with pytest.raises(sentinel.UnsupportedFormatError):
        sentinel.Store.new(store_path)
    assert diff(before, snapshot(store_path)) == []


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[]", b'{"format": "sentinel"}']
)
def test_damaged_config_is_refused(
    store_path: pathlib.Path, content: bytes
) -> None:
    sentinel.Store.new(store_path).close()
    (store_path / "sentinel.json").write_bytes(content)
    before = snapshot(store_path)
    with pytest.raises(sentinel.UnsupportedFormatError):
        sentinel.Store.new(store_path)
    assert diff(before, snapshot(store_path)) == []


@pytest.mark.parametrize(
    "entries",
    [
        {"notes.txt": b"my notes"},
        {"objects/": b"", "notes.txt": b"x"},
        {"sub/": b""},
        {".hidden": b"x"},
        {"lock": b"not ours", "data.db": b"x"},
        # Names that look like the store's own files, but are not.
        {".notes.tmp": b"user data"},
        {".x.1.tmp": b"user data"},
        {"objects/readme.txt": b"user data"},
    ],
    ids=lambda e: "+".join(e),
)
def test_foreign_folder_is_refused_untouched(
    tmp_path: pathlib.Path, entries: dict[str, bytes]
) -> None:
    folder = tmp_path / "foreign"
    folder.mkdir()
    for name, content in entries.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            (folder / name).mkdir(exist_ok=True)
        else:
            (folder / name).write_bytes(content)
    before = snapshot(folder)
    with pytest.raises(sentinel.UnsupportedFormatError):
        sentinel.Store.new(folder)
    assert diff(before, snapshot(folder)) == []


def test_empty_passphrase_is_refused_and_nothing_created(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "new" / "store"
    before = snapshot(tmp_path)
    with pytest.raises(sentinel.InvalidPassphraseError) as info:
        sentinel.Store.new(path, "")
    assert isinstance(info.value, sentinel.InvalidInputError)
    assert not path.exists() and not path.parent.exists()
    assert diff(before, snapshot(tmp_path)) == []


def test_passphrase_creates_an_encrypted_store(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "new" / "store"
    fast = sentinel.KdfParams(8, 1, 1)
    with sentinel.Store.new(path, "secret", kdf=fast) as store:
        assert store.encrypted
        doc = store.collection("c").insert("x", {"n": 1})
        assert len(doc.signature) == 128
    assert (
        b'"encryption":"aes-256-gcm-siv"'
        in (path / "sentinel.json").read_bytes()
    )
    with pytest.raises(sentinel.PassphraseRequiredError):
        sentinel.Store.new(path)
    with sentinel.Store.new(path, "secret") as store:
        assert store.collection("c").get("x") == doc


@pytest.mark.parametrize("passphrase", ["secret", ""])
def test_passphrase_on_an_existing_store(
    store_path: pathlib.Path, passphrase: str
) -> None:
    with sentinel.Store.new(store_path) as store:
        store.collection("c").insert("x", {"n": 1})
    before = snapshot(store_path)
    with pytest.raises(sentinel.PassphraseNotExpectedError):
        sentinel.Store.new(store_path, passphrase=passphrase)
    assert diff(before, snapshot(store_path)) == []
    with sentinel.Store.new(store_path) as store:
        assert store.collection("c").get("x") is not None


# -- verify and cat_object ---------------------------------------------------


def test_verify_healthy_store(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as store:
        report = store.verify()
        assert report.ok and report.problems == []
        assert report.objects == 0 and report.refs == 0
        one = store.collection("one")
        two = store.collection("two")
        for n in range(5):
            one.insert(f"d{n % 3}", {"n": n})
        two.insert("d0", {"n": 0})
        report = store.verify()
        assert isinstance(report, sentinel.VerifyReport)
        assert report.ok, report.problems
        assert report.problems == []
        assert report.objects == 6
        assert report.refs == 4
        assert report.collections == 2
        assert report.temp_files_removed == []
    with sentinel.Store.new(store_path) as store:
        report = store.verify()
        assert report.ok and report.objects == 6 and report.refs == 4


def test_cat_object(store: sentinel.Store) -> None:
    doc = store.collection("c").insert("x", {"k": [1, "two"]})
    shown = store.cat_object(doc.hash)
    assert shown["hash"] == doc.hash
    assert shown["type"] == "version"
    payload = shown["payload"]
    assert isinstance(payload, dict)
    assert payload["data"] == {"k": [1, "two"]}
    assert payload["version"] == 1 and payload["parent"] is None
    assert payload["created_at"] == doc.created_at
    assert payload["updated_at"] == doc.updated_at
    with pytest.raises(sentinel.MissingObjectError):
        store.cat_object("ab" * 32)
    with pytest.raises(sentinel.InvalidInputError):
        store.cat_object("xyz")
    with pytest.raises(sentinel.InvalidInputError):
        store.cat_object(doc.hash[:-2])


# -- property: round trip ----------------------------------------------------

_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), max_size=12
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT_MIN, max_value=INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4)
    ),
    max_leaves=20,
)
_documents = st.dictionaries(_text, _values, max_size=6)
_ids = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True).filter(
    lambda s: (
        s.upper() not in {"CON", "PRN", "AUX", "NUL"}
        and not (
            s.upper()[:3] in ("COM", "LPT") and len(s) == 4 and s[3].isdigit()
        )
    )
)


def test_round_trip_property(tmp_path: pathlib.Path) -> None:
    store = sentinel.Store.new(tmp_path / "prop")
    docs = store.collection("prop")
    last: dict[str, dict[str, Any]] = {}
    mismatches: list[tuple[str, Any]] = []

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(doc_id=_ids, data=_documents)
    def round_trip(doc_id: str, data: dict[str, Any]) -> None:
        expected = json.loads(json.dumps(data))  # independent deep copy
        returned = docs.insert(doc_id, data)
        got = docs.get(doc_id)
        ok = (
            got is not None
            and same(got.data, data)
            and same(returned.data, data)
            and got.hash == returned.hash
            and same(data, expected)  # the input was not changed
        )
        figures.record(
            "round-trip properties",
            zero=("mismatches",),
            examples=1,
            mismatches=0 if ok else 1,
        )
        if not ok:
            mismatches.append((doc_id, data))
        assert ok, (doc_id, data, got and got.data)
        last[doc_id] = data

    try:
        round_trip()
    finally:
        store.close()
    assert mismatches == []
    with sentinel.Store.new(tmp_path / "prop") as again:
        docs = again.collection("prop")
        assert docs.count() == len(last)
        assert list(docs.ids()) == sorted(last)
        wrong = [
            doc_id
            for doc_id, data in last.items()
            if not same(docs.get(doc_id).data, data)  # type: ignore
        ]
        figures.record(
            "round-trip properties",
            zero=("mismatches",),
            mismatches=len(wrong),
        )
        assert wrong == []
        assert again.verify().ok
