"""Queries, aggregation and secondary indexes.

Covers every operator and its edge cases (nested paths, arrays, missing
fields, mixed types, Unicode), sorting, paging, projection, aggregation,
``as_of``, index maintenance through every write path and across
processes, persistence of index definitions, and a property test that
indexes never change a result.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sentinel
from sentinel import (
    And,
    Filter,
    InvalidQueryError,
    Not,
    Or,
    QueryBuilder,
    QueryResult,
    refs,
    table,
)
from sentinel.mongo import from_mongo
from sentinel.query import order_key

REPO = pathlib.Path(__file__).resolve().parent.parent


# -- fixtures and helpers ----------------------------------------------------

PEOPLE: dict[str, dict[str, Any]] = {
    "p01": {"name": "Ada", "age": 36, "city": "Oslo", "tags": ["x", "y"]},
    "p02": {"name": "Bo", "age": 25, "city": "Bergen", "tags": ["y"]},
    "p03": {"name": "Cy", "age": 25.0, "city": "Oslo", "tags": []},
    "p04": {"name": "Di", "age": "25", "city": "Paris"},
    "p05": {"name": "Ed", "age": None, "city": "oslo", "tags": ["x"]},
    "p06": {"name": "Fa", "age": True, "address": {"city": "Oslo"}},
    "p07": {"name": "Gu", "age": 51.5, "address": {"city": "Tromsø"}},
    "p08": {"name": "Hé", "age": 18, "tags": [{"k": 1}, 2, "x"]},
    "p09": {"name": "Ïo", "items": [{"sku": "A1"}, {"sku": "B2"}]},
    "p10": {"name": "Ju", "age": -3, "items": {"0": {"sku": "Z9"}}},
}


@pytest.fixture
def people(store: sentinel.Store) -> sentinel.Collection:
    coll = store.collection("people")
    coll.bulk_insert(PEOPLE.items())
    return coll


def ids(result: QueryResult) -> list[str]:
    return [doc.id for doc in result.documents]


def matching(
    coll: sentinel.Collection, field: str, op: str, value: Any = True
) -> set[str]:
    return set(ids(coll.query(QueryBuilder().filter(field, op, value))))


# -- the language, without a store -------------------------------------------


def test_query_error_is_typed_and_names_the_operator() -> None:
    with pytest.raises(InvalidQueryError, match="'gt'"):
        QueryBuilder().filter("age", "gt", 1)
    with pytest.raises(InvalidQueryError, match="'\\$regex'"):
        from_mongo({"a": {"$regex": "x"}})
    assert issubclass(InvalidQueryError, sentinel.InvalidInputError)
    assert issubclass(InvalidQueryError, ValueError)


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", ".", "x.\ud800"])
def test_malformed_paths_are_refused_by_name(path: str) -> None:
    with pytest.raises(InvalidQueryError, match="malformed field path"):
        Filter(path, "equals", 1)


def test_path_limits_and_types() -> None:
    with pytest.raises(InvalidQueryError):
        Filter(3, "equals", 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError, match="longer"):
        Filter("a" * 1025, "equals", 1)
    with pytest.raises(InvalidQueryError, match="segments"):
        Filter(".".join(["a"] * 129), "equals", 1)
    Filter("a" * 1024, "equals", 1)


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("greater_than", None),
        ("greater_than", True),
        ("less_than", [1]),
        ("less_or_equal", {"a": 1}),
        ("greater_or_equal", float("nan")),
        ("starts_with", 1),
        ("ends_with", None),
        ("in", "abc"),
        ("not_in", 5),
        ("exists", 1),
        ("equals", float("inf")),
        ("equals", (1, 2)),
        ("equals", {1: 2}),
        ("contains", object()),
        ("in", [b"x"]),
    ],
)
def test_unusable_operands_are_refused(op: str, value: Any) -> None:
    with pytest.raises(InvalidQueryError, match=op):
        Filter("f", op, value)


def test_a_value_is_required_except_for_exists() -> None:
    with pytest.raises(InvalidQueryError, match="needs a value"):
        Filter("f", "equals")
    assert Filter("f", "exists").value is True


def test_total_order_of_values() -> None:
    ordered = [
        None,
        False,
        True,
        -(2**63),
        -1.5,
        0,
        1,
        2**64 - 1,
        "",
        "Z",
        "a",
        "é",
        "😀",
        [],
        [None],
        [1, 2],
        [1, "a"],
        ["a"],
        {},
        {"a": 1},
        {"a": 2},
        {"b": 0},
    ]
    keys = [order_key(value) for value in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert order_key(1) == order_key(1.0)
    assert order_key(True) != order_key(1)
    assert order_key("1") != order_key(1)
    assert order_key([1, {"a": 1.0}]) == order_key([1.0, {"a": 1}])


def test_builder_is_immutable_and_validates_at_once() -> None:
    base = QueryBuilder().filter("a", "equals", 1)
    longer = base.filter("b", "equals", 2).limit(3)
    assert base.spec().limit is None
    assert isinstance(base.spec().condition, Filter)
    assert isinstance(longer.spec().condition, And)
    with pytest.raises(InvalidQueryError, match="direction"):
        base.sort("a", "up")
    for bad in (-1, 1.5, True, None):
        with pytest.raises(InvalidQueryError):
            base.limit(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidQueryError):
            base.offset(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError):
        base.projection("name")
    with pytest.raises(InvalidQueryError, match="at least one"):
        base.or_()
    with pytest.raises(InvalidQueryError, match="condition"):
        base.or_(42)


def test_filters_compare_as_queries_compare_values() -> None:
    assert Filter("a", "equals", 1) == Filter("a", "equals", 1.0)
    assert Filter("a", "equals", 1) != Filter("a", "equals", True)
    assert Filter("a", "in", [1, "x"]) == Filter("a", "in", (1.0, "x"))
    assert len({Filter("a", "equals", 1), Filter("a", "equals", 1.0)}) == 1
    assert str(Filter("a.b", "starts_with", "x")) == "a.b starts_with 'x'"


def test_mongo_front_end_maps_onto_the_same_filters() -> None:
    spec = from_mongo(
        {
            "age": {"$gt": 25, "$lte": 60},
            "city": "Oslo",
            "$or": [{"a": 1}, {"b": {"$in": [1, 2]}}],
            "$nor": [{"c": {"$exists": True}}],
            "d": {"$not": {"$startsWith": "x"}},
            "e": {"k": 1},
        }
    )
    assert spec == And(
        (
            Filter("age", "greater_than", 25),
            Filter("age", "less_or_equal", 60),
            Filter("city", "equals", "Oslo"),
            Or((Filter("a", "equals", 1), Filter("b", "in", [1, 2]))),
            Not(Or((Filter("c", "exists", True),))),
            Not(Filter("d", "starts_with", "x")),
            Filter("e", "equals", {"k": 1}),
        )
    )
    with pytest.raises(InvalidQueryError, match="mixes"):
        from_mongo({"a": {"$gt": 1, "b": 2}})
    with pytest.raises(InvalidQueryError, match="non-empty list"):
        from_mongo({"$or": []})
    with pytest.raises(InvalidQueryError):
        from_mongo([("a", 1)])  # type: ignore[arg-type]


# -- operators over a collection ---------------------------------------------


def test_equals_distinguishes_kinds(people: sentinel.Collection) -> None:
    assert matching(people, "age", "equals", 25) == {"p02", "p03"}
    assert matching(people, "age", "equals", 25.0) == {"p02", "p03"}
    assert matching(people, "age", "equals", "25") == {"p04"}
    assert matching(people, "age", "equals", True) == {"p06"}
    assert matching(people, "age", "equals", 1) == set()
    assert matching(people, "age", "equals", None) == {"p05"}
    assert matching(people, "city", "equals", "Oslo") == {"p01", "p03"}


def test_equals_on_nested_paths_arrays_and_objects(
    people: sentinel.Collection,
) -> None:
    assert matching(people, "address.city", "equals", "Oslo") == {"p06"}
    assert matching(people, "address.city", "equals", "Tromsø") == {"p07"}
    assert matching(people, "tags", "equals", ["x", "y"]) == {"p01"}
    assert matching(people, "tags", "equals", ["y", "x"]) == set()
    assert matching(people, "tags", "equals", []) == {"p03"}
    assert matching(people, "tags.0", "equals", "x") == {"p01", "p05"}
    assert matching(people, "tags.0.k", "equals", 1) == {"p08"}
    assert matching(people, "items.1.sku", "equals", "B2") == {"p09"}
    # "0" is a member name on an object, an index on an array.
    assert matching(people, "items.0.sku", "equals", "Z9") == {"p10"}
    assert matching(people, "items.0.sku", "equals", "A1") == {"p09"}
    # No implicit fan-out over arrays.
    assert matching(people, "items.sku", "equals", "A1") == set()
    assert matching(people, "tags.9", "exists") == set()
    assert matching(people, "name.first", "exists") == set()
    assert matching(people, "address", "equals", {"city": "Oslo"}) == {"p06"}


def test_not_equals_and_not_in_match_missing_fields(
    people: sentinel.Collection,
) -> None:
    everyone = set(PEOPLE)
    assert matching(people, "age", "not_equals", 25) == everyone - {
        "p02",
        "p03",
    }
    assert "p09" in matching(people, "age", "not_equals", 25)
    assert matching(people, "age", "not_in", [25, "25", None]) == (
        everyone - {"p02", "p03", "p04", "p05"}
    )
    negated = ids(people.query(QueryBuilder().not_(("age", "equals", 25))))
    assert set(negated) == matching(people, "age", "not_equals", 25)


def test_comparisons_only_match_their_own_kind(
    people: sentinel.Collection,
) -> None:
    assert matching(people, "age", "greater_than", 25) == {"p01", "p07"}
    assert matching(people, "age", "greater_or_equal", 25) == {
        "p01",
        "p02",
        "p03",
        "p07",
    }
    assert matching(people, "age", "less_than", 25) == {"p08", "p10"}
    assert matching(people, "age", "less_or_equal", 18.0) == {"p08", "p10"}
    # Strings with strings, by code point.
    assert matching(people, "age", "greater_than", "1") == {"p04"}
    assert matching(people, "name", "greater_than", "Gu") == {
        "p08",
        "p09",
        "p10",
    }
    assert matching(people, "name", "less_than", "Bo") == {"p01"}
    # Booleans, null and missing fields never satisfy a comparison.
    assert "p06" not in matching(people, "age", "greater_than", -100)
    assert "p05" not in matching(people, "age", "less_than", 100)
    assert "p09" not in matching(people, "age", "less_than", 100)


def test_in_with_mixed_kinds(people: sentinel.Collection) -> None:
    assert matching(people, "age", "in", [25, "25"]) == {"p02", "p03", "p04"}
    assert matching(people, "age", "in", [True, None]) == {"p05", "p06"}
    assert matching(people, "age", "in", []) == set()
    assert matching(people, "age", "in", (36, 51.5)) == {"p01", "p07"}
    assert matching(people, "tags", "in", [["y"], []]) == {"p02", "p03"}


def test_contains_substring_and_element(people: sentinel.Collection) -> None:
    assert matching(people, "tags", "contains", "x") == {"p01", "p05", "p08"}
    assert matching(people, "tags", "contains", 2) == {"p08"}
    assert matching(people, "tags", "contains", {"k": 1}) == {"p08"}
    assert matching(people, "tags", "contains", 2.0) == {"p08"}
    assert matching(people, "tags", "contains", "2") == set()
    assert matching(people, "name", "contains", "d") == {"p01", "p05"}
    assert matching(people, "city", "contains", "sl") == {"p01", "p03", "p05"}
    assert matching(people, "age", "contains", "5") == {"p04"}
    assert matching(people, "age", "contains", 5) == set()
    assert matching(people, "missing", "contains", "") == set()


def test_starts_and_ends_with_unicode(people: sentinel.Collection) -> None:
    assert matching(people, "city", "starts_with", "O") == {"p01", "p03"}
    assert matching(people, "city", "starts_with", "o") == {"p05"}
    assert matching(people, "address.city", "ends_with", "sø") == {"p07"}
    assert matching(people, "name", "ends_with", "é") == {"p08"}
    assert matching(people, "name", "starts_with", "Ï") == {"p09"}
    # A decomposed "é" is a different string: no normalisation.
    assert matching(people, "name", "ends_with", "e\u0301") == set()
    assert matching(people, "age", "starts_with", "2") == {"p04"}
    everyone_with_city = {"p01", "p02", "p03", "p04", "p05"}
    assert matching(people, "city", "starts_with", "") == everyone_with_city


def test_exists(people: sentinel.Collection) -> None:
    assert matching(people, "age", "exists") == set(PEOPLE) - {"p09"}
    assert matching(people, "age", "exists", False) == {"p09"}
    assert matching(people, "address.city", "exists") == {"p06", "p07"}
    assert "p05" in matching(people, "age", "exists", True)  # null exists


def test_groups_nest(people: sentinel.Collection) -> None:
    query = (
        QueryBuilder()
        .or_(
            Filter("city", "equals", "Oslo"),
            And(
                (
                    Filter("age", "greater_than", 40),
                    Not(Filter("name", "equals", "Ada")),
                )
            ),
        )
        .not_(("tags", "contains", "y"))
    )
    assert ids(people.query(query)) == ["p03", "p07"]
    sub = QueryBuilder().filter("age", "equals", 25).filter("city", "exists")
    both = QueryBuilder().or_(sub, {"name": "Ju"})
    assert ids(people.query(both)) == ["p02", "p03", "p10"]
    assert ids(people.query(QueryBuilder().and_(("age", "equals", 25)))) == [
        "p02",
        "p03",
    ]
    mongo = people.query({"$or": [{"age": {"$lt": 0}}, {"city": "Paris"}]})
    assert ids(mongo) == ["p04", "p10"]
    assert people.query(QueryBuilder().where({})).total_count == 10


def test_query_accepts_none_a_condition_and_rejects_junk(
    people: sentinel.Collection,
) -> None:
    assert people.query().total_count == len(PEOPLE)
    assert ids(people.query(Filter("name", "equals", "Bo"))) == ["p02"]
    with pytest.raises(InvalidQueryError):
        people.query(42)
    with pytest.raises(sentinel.InvalidInputError):
        people.query(None, as_of=datetime(2020, 1, 1))  # naive


# -- sorting, paging, projection ---------------------------------------------


def test_sort_orders_kinds_and_puts_missing_last(
    people: sentinel.Collection,
) -> None:
    up = ids(people.query(QueryBuilder().sort("age")))
    # null, true, numbers (25 and 25.0 tie: id order), the string, then
    # the document without an age.
    assert up == [
        "p05",
        "p06",
        "p10",
        "p08",
        "p02",
        "p03",
        "p01",
        "p07",
        "p04",
        "p09",
    ]
    down = ids(people.query(QueryBuilder().sort("age", "descending")))
    assert down == [
        "p04",
        "p07",
        "p01",
        "p02",
        "p03",
        "p08",
        "p10",
        "p06",
        "p05",
        "p09",
    ]


def test_sort_is_stable_and_multi_key(store: sentinel.Store) -> None:
    coll = store.collection("s")
    rows = [
        ("e", {"g": 1, "n": "b"}),
        ("a", {"g": 2, "n": "a"}),
        ("d", {"g": 1, "n": "a"}),
        ("b", {"g": 1, "n": "b"}),
        ("c", {"g": 2}),
        ("f", {"n": "z"}),
    ]
    coll.bulk_insert(rows)
    by_g = ids(coll.query(QueryBuilder().sort("g")))
    assert by_g == ["b", "d", "e", "a", "c", "f"]
    by_g_down = ids(coll.query(QueryBuilder().sort("g", "descending")))
    assert by_g_down == ["a", "c", "b", "d", "e", "f"]
    two = QueryBuilder().sort("g", "descending").sort("n", "ascending")
    assert ids(coll.query(two)) == ["a", "c", "d", "b", "e", "f"]
    two = QueryBuilder().sort("g").sort("n", "descending")
    assert ids(coll.query(two)) == ["b", "e", "d", "a", "c", "f"]
    coll.create_index("g")
    coll.create_index("n")
    assert ids(coll.query(QueryBuilder().sort("g"))) == by_g
    down = coll.query(QueryBuilder().sort("g", "descending").explain())
    assert ids(down) == by_g_down
    assert down.plan is not None and down.plan.sort == "index"
    two = QueryBuilder().sort("g", "descending").sort("n").limit(3)
    result = coll.query(two.explain())
    assert ids(result) == ["a", "c", "d"]
    assert result.plan is not None and result.plan.access == "index order"


@pytest.mark.parametrize("indexed", [False, True])
def test_limit_and_offset_bounds(store: sentinel.Store, indexed: bool) -> None:
    coll = store.collection("page")
    coll.bulk_insert((f"d{n:02d}", {"n": n % 4}) for n in range(20))
    if indexed:
        coll.create_index("n")
    base = QueryBuilder().sort("n")
    full = ids(coll.query(base))
    for offset in (0, 1, 5, 19, 20, 25):
        for limit in (0, 1, 3, 20, 100):
            result = coll.query(base.offset(offset).limit(limit))
            assert ids(result) == full[offset : offset + limit]
            assert result.total_count == 20
        assert ids(coll.query(base.offset(offset))) == full[offset:]
    filtered = QueryBuilder().filter("n", "equals", 2).limit(2).offset(4)
    result = coll.query(filtered)
    assert result.total_count == 5
    assert ids(result) == ["d18"]
    assert result.execution_time >= 0


def test_projection_trims_only_data(people: sentinel.Collection) -> None:
    full = people.get("p07")
    assert full is not None
    query = QueryBuilder().filter("name", "equals", "Gu")
    result = people.query(query.projection(["name", "address.city", "nope"]))
    (doc,) = result.documents
    assert doc.data == {"name": "Gu", "address": {"city": "Tromsø"}}
    assert (doc.id, doc.version, doc.hash) == (full.id, 1, full.hash)
    assert (doc.created_at, doc.updated_at) == (
        full.created_at,
        full.updated_at,
    )
    one = people.query(
        QueryBuilder()
        .filter("name", "equals", "Ïo")
        .projection(["items.0.sku", "name.x"])
    )
    assert one.documents[0].data == {"items": [{"sku": "A1"}, {"sku": "B2"}]}
    overlap = people.query(
        QueryBuilder()
        .filter("name", "equals", "Gu")
        .projection(["address.city", "address"])
    )
    assert overlap.documents[0].data == {"address": {"city": "Tromsø"}}
    empty = people.query(QueryBuilder().projection([]).limit(1))
    assert empty.documents[0].data == {}


# -- aggregation -------------------------------------------------------------


def test_aggregate_without_groups(people: sentinel.Collection) -> None:
    assert people.aggregate("count") == 10
    # Present and not null: p05 (null) and p09 (missing) are left out.
    assert people.aggregate("count", "age") == 8
    # Numbers only: 36 + 25 + 25.0 + 51.5 + 18 - 3; "25" and true skipped.
    assert people.aggregate("sum", "age") == 152.5
    assert people.aggregate("avg", "age") == pytest.approx(152.5 / 6)
    assert people.aggregate("min", "age") == -3
    assert people.aggregate("max", "age") == 51.5
    assert people.aggregate("sum", "nothing") == 0
    assert people.aggregate("avg", "nothing") is None
    assert people.aggregate("max", "name") is None
    adults = QueryBuilder().filter("age", "greater_or_equal", 18)
    assert people.aggregate("count", where=adults) == 5
    assert people.aggregate("sum", "age", where={"city": "Oslo"}) == 61.0
    assert type(people.aggregate("sum", "age", where={"name": "Ada"})) is int


def test_aggregate_with_groups(people: sentinel.Collection) -> None:
    assert people.aggregate("count", group_by="city") == [
        (None, 5),
        ("Bergen", 1),
        ("Oslo", 2),
        ("Paris", 1),
        ("oslo", 1),
    ]
    assert people.aggregate("sum", "age", group_by="city") == [
        (None, 66.5),
        ("Bergen", 25),
        ("Oslo", 61.0),
        ("Paris", 0),
        ("oslo", 0),
    ]
    assert people.aggregate("max", "age", group_by="address.city") == [
        (None, 36),
        ("Oslo", None),
        ("Tromsø", 51.5),
    ]
    # Equal numbers form one group, shown as the first in id order.
    assert people.aggregate("count", group_by="age")[2:4] == [
        (-3, 1),
        (18, 1),
    ]
    assert (25, 2) in people.aggregate("count", group_by="age")


def test_aggregate_rejects_bad_requests(people: sentinel.Collection) -> None:
    with pytest.raises(InvalidQueryError, match="median"):
        people.aggregate("median", "age")
    with pytest.raises(InvalidQueryError, match="needs a field"):
        people.aggregate("sum")
    with pytest.raises(InvalidQueryError, match="only filters"):
        people.aggregate("count", where=QueryBuilder().limit(1))


@pytest.mark.parametrize("indexed", [False, True])
def test_aggregate_same_with_index(
    people: sentinel.Collection, indexed: bool
) -> None:
    if indexed:
        people.create_index("age")
        people.create_index("city")
    assert people.aggregate("avg", "age", group_by="city") == [
        (None, pytest.approx((51.5 + 18 - 3) / 3)),
        ("Bergen", 25.0),
        ("Oslo", 30.5),
        ("Paris", None),
        ("oslo", None),
    ]
    assert people.aggregate("count", where={"age": {"$gte": 25}}) == 4


# -- queries over the past ---------------------------------------------------


def test_as_of_at_version_boundaries(store: sentinel.Store) -> None:
    coll = store.collection("t")
    a1 = coll.insert("a", {"v": 1})
    b1 = coll.insert("b", {"v": 10})
    a2 = coll.update("a", {"v": 2})
    gone = coll.delete("b")
    assert gone
    b_deleted = coll.history("b")[0]
    c1 = coll.insert("c", {"v": 3})
    a3 = coll.insert("a", {"v": 4})
    coll.create_index("v")

    def at(moment: str, query: Any = None) -> list[tuple[str, Any]]:
        found = coll.query(query, as_of=moment)
        return [(doc.id, doc.data["v"]) for doc in found.documents]

    before = "2000-01-01T00:00:00+00:00"
    assert at(before) == []
    assert at(a1.updated_at) == [("a", 1)]
    assert at(b1.updated_at) == [("a", 1), ("b", 10)]
    assert at(a2.updated_at) == [("a", 2), ("b", 10)]
    assert at(b_deleted.updated_at) == [("a", 2)]
    assert at(c1.updated_at) == [("a", 2), ("c", 3)]
    assert at(a3.updated_at) == [("a", 4), ("c", 3)]
    moment = datetime.fromisoformat(a2.updated_at)
    result = coll.query(
        QueryBuilder().filter("v", "greater_than", 1).explain(), as_of=moment
    )
    assert ids(result) == ["a", "b"]
    assert result.plan is not None and result.plan.access == "history scan"
    assert [doc.version for doc in result.documents] == [2, 1]
    assert coll.aggregate("sum", "v", as_of=a2.updated_at) == 12
    assert coll.aggregate("sum", "v") == 7


# -- indexes -----------------------------------------------------------------


def reference(
    coll: sentinel.Collection, field: str, op: str, value: Any
) -> list[str]:
    """The ids matching one filter, by brute force over `all()`."""
    test = Filter(field, op, value)
    from sentinel.query import key_at

    return [
        doc.id for doc in coll.all() if test.test(key_at(doc.data, test.path))
    ]


def check_index(coll: sentinel.Collection) -> None:
    """The indexed answers equal brute force, and come from the index."""
    probes = [
        ("k", "equals", 1),
        ("k", "in", [1, 2, "x"]),
        ("k", "greater_than", 1),
        ("k", "less_or_equal", 2),
        ("k", "starts_with", "x"),
    ]
    for field, op, value in probes:
        result = coll.query(QueryBuilder().filter(field, op, value).explain())
        assert ids(result) == reference(coll, field, op, value), (op, value)
        assert result.plan is not None and result.plan.access == "index"
    ordered = coll.query(QueryBuilder().sort("k").explain())
    expected = [doc.id for doc in coll.all()]
    expected.sort(key=lambda doc_id: order_key(coll.get(doc_id).data["k"]))
    assert ids(ordered) == expected


def test_index_follows_every_write_path(store: sentinel.Store) -> None:
    coll = store.collection("w")
    coll.insert("a", {"k": 1})
    coll.insert("b", {"k": 2})
    assert coll.create_index("k") is True
    assert coll.create_index("k") is False
    check_index(coll)
    steps = [
        lambda: coll.insert("c", {"k": "x1"}),
        lambda: coll.insert("a", {"k": 3}),
        lambda: coll.update("b", {"k": 1}),
        lambda: coll.upsert("d", {"k": 2}),
        lambda: coll.upsert("d", {"k": "xy"}),
        lambda: coll.delete("a"),
        lambda: coll.restore("a"),
        lambda: coll.revert("b", 1),
        lambda: coll.bulk_insert([("e", {"k": 1}), ("f", {"k": "x"})]),
        lambda: coll.delete("f"),
    ]
    for step in steps:
        step()
        check_index(coll)
    with coll.batch() as batch:
        batch.insert("g", {"k": 2})
        batch.update("e", {"k": "xz"})
        batch.delete("c")
        batch.upsert("h", {"k": 1})
        batch.restore("f")
    check_index(coll)
    with store.batch() as batch:
        batch.delete("w", "g")
        batch.insert("w", "i", {"k": 1.0})
    check_index(coll)
    assert ids(coll.query(QueryBuilder().filter("k", "equals", 1))) == [
        "h",
        "i",
    ]
    # Kept current incrementally: one build, at create_index.
    assert coll._index_set().builds == 1
    assert coll._index_set().repairs == 0


def test_index_sees_a_field_appear_and_vanish(store: sentinel.Store) -> None:
    coll = store.collection("v")
    coll.create_index("a.b")
    coll.insert("x", {"a": {"b": 5}})
    coll.update("x", {"a": {"b": None}})
    assert matching(coll, "a.b", "equals", None) == {"x"}
    coll.insert("x", {"a": 1})
    assert matching(coll, "a.b", "exists") == set()
    assert matching(coll, "a.b", "exists", False) == {"x"}
    coll.insert("x", {"a": {"b": 6}})
    assert matching(coll, "a.b", "greater_than", 5) == {"x"}


def test_index_is_rebuilt_when_found_stale(store: sentinel.Store) -> None:
    coll = store.collection("stale")
    coll.bulk_insert((f"d{n}", {"k": n % 3}) for n in range(30))
    coll.create_index("k")
    index_set = coll._index_set()
    # Damage the cache behind the collection's back.
    index_set.indexes["k"].remove("d3")
    del index_set.heads["d3"]
    result = coll.query(QueryBuilder().filter("k", "equals", 0))
    assert "d3" in ids(result)
    assert index_set.repairs == 1
    assert index_set.builds == 2


def test_damaged_document_fails_indexed_queries_loudly(
    store_path: pathlib.Path,
) -> None:
    with sentinel.Store.new(store_path) as first:
        coll = first.collection("bad")
        coll.bulk_insert((f"d{n}", {"k": n}) for n in range(5))
        coll.create_index("k")
        engine = first._engine
        number, offset, length = refs.place(
            engine.state.objects[coll._refs().heads["d2"][refs.HEAD_ADDRESS]]
        )
        pack = engine.journal.path(number)
    with open(pack, "r+b") as handle:
        handle.seek(offset + length - 2)
        byte = handle.read(1)[0]
        handle.seek(offset + length - 2)
        handle.write(bytes((byte ^ 0xFF,)))
    with sentinel.Store.new(store_path) as second:
        coll = second.collection("bad")
        # The index cannot be built without reading d2: every indexed
        # query fails with a typed error, never a silently partial answer.
        for _ in range(2):
            with pytest.raises(sentinel.CorruptionError):
                coll.query(QueryBuilder().filter("k", "equals", 4))
        coll.drop_index("k")
        with pytest.raises(sentinel.CorruptionError):
            coll.query(QueryBuilder().filter("k", "equals", 2))
        # Without an index, a query that only returns others still has
        # to read d2 to test it.
        with pytest.raises(sentinel.CorruptionError):
            coll.query(QueryBuilder().filter("k", "equals", 4))


def test_index_definitions_persist_across_reopen(
    store_path: pathlib.Path,
) -> None:
    with sentinel.Store.new(store_path) as first:
        coll = first.collection("p")
        coll.bulk_insert((f"d{n}", {"k": n}) for n in range(10))
        coll.create_index("k")
        coll.create_index("other.path")
        coll.drop_index("other.path")
        with pytest.raises(sentinel.NotFoundError):
            coll.drop_index("other.path")
        assert coll.list_indexes() == ["k"]
    with sentinel.Store.new(store_path) as second:
        coll = second.collection("p")
        assert coll.list_indexes() == ["k"]
        result = coll.query(QueryBuilder().filter("k", "equals", 4).explain())
        assert ids(result) == ["d4"]
        assert result.plan is not None and result.plan.index == "k"
        # Through a checkpoint too: the ref table keeps the definitions.
        engine = second._engine
        with engine.state_lock:
            engine.checkpoint()
    with open(store_path / "refs" / "table", "rb") as handle:
        assert handle.read()[4] == table.FORMAT_INDEXES
    with sentinel.Store.new(store_path) as third:
        assert third.collection("p").list_indexes() == ["k"]
        actions = [
            (entry.action, entry.field)
            for entry in third.log("p")
            if entry.action.endswith("index")
        ]
        assert actions == [
            ("create_index", "k"),
            ("create_index", "other.path"),
            ("drop_index", "other.path"),
        ]


def test_ref_table_round_trips_index_definitions() -> None:
    state = refs.State()
    state.collections["a"] = refs.CollectionRefs()
    state.collections["a"].indexes.update({"x", "y.0.ü"})
    state.dropped["b"] = refs.CollectionRefs()
    state.dropped["b"].indexes.add("z")
    data = table.encode(state)
    assert data[4] == table.FORMAT_INDEXES
    back = table.decode(data)
    assert back.collections["a"].indexes == {"x", "y.0.ü"}
    assert back.dropped["b"].indexes == {"z"}
    plain = refs.State()
    plain.collections["a"] = refs.CollectionRefs()
    assert table.encode(plain)[4] == table.FORMAT


def test_index_records_are_checked_on_replay() -> None:
    content = refs.encode_index(refs.OP_CREATE_INDEX, "users", "a.b")
    assert refs.decode_index(content) == refs.IndexOp(4, "users", "a.b")
    for bad in (b"\x04", b"\x04\x05users", b"\x04\x09users", b"\x06\x01ax"):
        with pytest.raises(ValueError):
            refs.decode_index(bad)


def test_indexes_follow_collection_drop_and_restore(
    store: sentinel.Store,
) -> None:
    coll = store.collection("dr")
    coll.insert("a", {"k": 1})
    coll.create_index("k")
    store.delete_collection("dr")
    with pytest.raises(sentinel.NotFoundError):
        coll.query()
    store.restore_collection("dr")
    assert coll.list_indexes() == ["k"]
    assert ids(coll.query(QueryBuilder().filter("k", "equals", 1))) == ["a"]
    store.delete_collection("dr")
    fresh = store.collection("dr")
    assert fresh.list_indexes() == []
    fresh.insert("b", {"k": 1})
    assert ids(fresh.query(QueryBuilder().filter("k", "equals", 1))) == ["b"]


def test_index_validation(store: sentinel.Store) -> None:
    coll = store.collection("iv")
    with pytest.raises(InvalidQueryError):
        coll.create_index("a..b")
    with pytest.raises(sentinel.NotFoundError):
        coll.drop_index("a")
    store.delete_collection("iv")
    with pytest.raises(sentinel.NotFoundError):
        coll.create_index("a")


def test_planner_choices(store: sentinel.Store) -> None:
    coll = store.collection("plan")
    coll.bulk_insert(
        (f"d{n:03d}", {"a": n, "b": n % 10, "c": f"s{n % 7}"})
        for n in range(200)
    )
    coll.create_index("a")
    coll.create_index("b")

    def plan(query: QueryBuilder) -> sentinel.Plan:
        found = coll.query(query.explain())
        assert found.plan is not None
        return found.plan

    narrow = plan(
        QueryBuilder()
        .filter("b", "equals", 3)
        .filter("a", "greater_than", 150)
        .filter("a", "less_than", 160)
    )
    assert (narrow.index, narrow.candidates) == ("a", 9)
    assert narrow.loaded == 1  # every condition answered by indexes
    chosen = plan(QueryBuilder().filter("b", "in", [1, 2]))
    assert (chosen.access, chosen.index, chosen.candidates) == (
        "index",
        "b",
        40,
    )
    assert plan(QueryBuilder().filter("c", "equals", "s1")).access == "scan"
    assert plan(QueryBuilder().filter("a", "contains", 1)).access == "scan"
    assert plan(QueryBuilder().or_(("a", "equals", 1))).access == "scan"
    covered = plan(QueryBuilder().filter("a", "not_equals", 1).limit(2))
    assert (covered.access, covered.loaded) == ("scan", 2)
    top = plan(QueryBuilder().sort("a", "descending").limit(10))
    assert (top.access, top.candidates, top.loaded) == ("index order", 11, 10)
    empty = plan(
        QueryBuilder()
        .filter("a", "greater_than", 10)
        .filter("a", "less_than", 5)
    )
    assert (empty.access, empty.candidates) == ("index", 0)
    prefix = coll.query(QueryBuilder().filter("a", "starts_with", "1"))
    assert prefix.total_count == 0  # numbers are not strings


def test_index_in_two_processes(store_path: pathlib.Path) -> None:
    with sentinel.Store.new(store_path) as parent:
        coll = parent.collection("shared")
        coll.bulk_insert((f"d{n}", {"k": n % 5}) for n in range(20))
        coll.create_index("k")
        assert matching(coll, "k", "equals", 4) == {"d4", "d9", "d14", "d19"}
        writes = f"""
import sentinel
with sentinel.Store.new({str(store_path)!r}) as store:
    coll = store.collection("shared")
    coll.insert("new", {{"k": 4}})
    coll.update("d4", {{"k": 0}})
    coll.delete("d9")
    with coll.batch() as batch:
        batch.insert("d14", {{"k": "four"}})
"""
        run_child(writes)
        assert matching(coll, "k", "equals", 4) == {"d19", "new"}
        assert matching(coll, "k", "equals", "four") == {"d14"}
        assert matching(coll, "k", "equals", 0) == {"d0", "d4", "d5"} | {
            "d10",
            "d15",
        }
        # Kept current from the other process's frames, not rebuilt.
        assert coll._index_set().builds == 1
        definition = f"""
import sentinel
with sentinel.Store.new({str(store_path)!r}) as store:
    coll = store.collection("shared")
    coll.create_index("j")
    coll.insert("d0", {{"k": 0, "j": "here"}})
"""
        run_child(definition)
        assert coll.list_indexes() == ["j", "k"]
        query = QueryBuilder().filter("j", "equals", "here").explain()
        found = coll.query(query)
        assert ids(found) == ["d0"]
        assert found.plan is not None and found.plan.index == "j"
        assert coll._index_set().builds == 2  # for the new definition
        assert coll._index_set().repairs == 0


def run_child(code: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_queries_race_writers(store: sentinel.Store) -> None:
    coll = store.collection("race")
    coll.create_index("k")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for n in range(300):
                coll.insert(f"d{n % 40}", {"k": n % 7})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not stop.is_set():
        result = coll.query(QueryBuilder().filter("k", "in", [1, 2]))
        for doc in result.documents:
            assert doc.data["k"] in (1, 2)
    writer.join()
    assert not errors
    check_index(coll)


# -- the property: indexes never change a result -----------------------------

FIELDS = ("a", "b", "c", "n.x", "l.0")
INDEXED = ("a", "b", "n.x", "l.0")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.0, 2.0, 1e300, -0.0]),
    st.sampled_from(["", "a", "ab", "b", "é", "1", "Z", "😀"]),
)
# Mostly small scalars, so equal values, ties and range bounds are
# common; sometimes arrays and objects.
values = st.one_of(
    st.integers(-2, 2),
    st.sampled_from(["a", "ab", "b"]),
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), scalars, max_size=2),
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "a": values,
        "b": values,
        "c": values,
        "n": st.one_of(
            st.fixed_dictionaries({}, optional={"x": values}), scalars
        ),
        "l": st.lists(values, max_size=2),
    },
)
operands: dict[str, st.SearchStrategy[Any]] = {
    "equals": values,
    "not_equals": values,
    "greater_than": st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"])),
    "greater_or_equal": st.one_of(st.floats(-3, 3), st.just("ab")),
    "less_than": st.one_of(st.integers(-3, 3), st.sampled_from(["", "é"])),
    "less_or_equal": st.one_of(st.integers(-3, 3), st.just("b")),
    "in": st.lists(values, max_size=3),
    "not_in": st.lists(values, max_size=3),
    "contains": values,
    "starts_with": st.sampled_from(["", "a", "é", "\U0010ffff"]),
    "ends_with": st.sampled_from(["", "b"]),
    "exists": st.booleans(),
}


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    op = draw(st.sampled_from(sorted(operands)))
    return Filter(draw(st.sampled_from(FIELDS)), op, draw(operands[op]))


conditions = st.recursive(
    filters(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(
            lambda parts: And(tuple(parts))
        ),
        st.lists(inner, min_size=1, max_size=3).map(
            lambda parts: Or(tuple(parts))
        ),
        inner.map(Not),
    ),
    max_leaves=4,
)


@st.composite
def queries(draw: st.DrawFn) -> QueryBuilder:
    query = QueryBuilder()
    # Plain filters at the top level are what indexes answer: draw them
    # often, and groups of any shape too.
    parts = st.one_of(filters(), filters(), conditions)
    for part in draw(st.lists(parts, max_size=3)):
        query = query.and_(part)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        query = query.sort(
            field, draw(st.sampled_from(["ascending", "descending"]))
        )
    if draw(st.booleans()):
        query = query.limit(draw(st.integers(0, 8)))
    if draw(st.booleans()):
        query = query.offset(draw(st.integers(0, 8)))
    if draw(st.booleans()):
        query = query.projection(draw(st.lists(st.sampled_from(FIELDS))))
    return query


@st.composite
def changes(draw: st.DrawFn) -> list[tuple[str, str, dict[str, Any]]]:
    kinds = st.sampled_from(["insert", "update", "delete"])
    return draw(
        st.lists(
            st.tuples(
                kinds, st.sampled_from([f"d{n}" for n in range(12)]), documents
            ),
            max_size=6,
        )
    )


def outcome(result: QueryResult) -> tuple[Any, ...]:
    return (
        result.total_count,
        [
            (doc.id, doc.version, doc.hash, doc.data)
            for doc in result.documents
        ],
    )


def apply(
    coll: sentinel.Collection, kind: str, doc_id: str, data: dict
) -> None:
    if kind == "insert":
        coll.insert(doc_id, data)
    elif kind == "update":
        coll.upsert(doc_id, data)
    else:
        coll.delete(doc_id)


@pytest.fixture(scope="module")
def scratch() -> Iterator[sentinel.Store]:
    with tempfile.TemporaryDirectory() as folder:
        with sentinel.Store.new(
            os.path.join(folder, "s"), durable=False
        ) as opened:
            yield opened


_counter = iter(range(10**9))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    docs=st.lists(documents, max_size=16),
    before=st.lists(queries(), min_size=1, max_size=4),
    edits=changes(),
    after=st.lists(queries(), min_size=1, max_size=4),
    aggregate_field=st.sampled_from(FIELDS),
)
def test_indexes_never_change_a_result(
    scratch: sentinel.Store,
    docs: list[dict[str, Any]],
    before: list[QueryBuilder],
    edits: list[tuple[str, str, dict[str, Any]]],
    after: list[QueryBuilder],
    aggregate_field: str,
) -> None:
    number = next(_counter)
    plain = scratch.collection(f"plain{number}")
    fast = scratch.collection(f"fast{number}")
    for field in INDEXED[: 1 + number % len(INDEXED)]:
        fast.create_index(field)
    rows = [(f"d{n}", doc) for n, doc in enumerate(docs)]
    if rows:
        plain.bulk_insert(rows)
        fast.bulk_insert(rows)
    for query in before:
        assert_same(plain, fast, query, aggregate_field)
    for kind, doc_id, data in edits:
        apply(plain, kind, doc_id, data)
        apply(fast, kind, doc_id, data)
    for field in INDEXED:
        if field not in fast.list_indexes():
            fast.create_index(field)
            break
    for query in after:
        assert_same(plain, fast, query, aggregate_field)
    assert fast._index_set().repairs == 0


def assert_same(
    plain: sentinel.Collection,
    fast: sentinel.Collection,
    query: QueryBuilder,
    field: str,
) -> None:
    # Documents written by the same calls differ only in their time
    # stamps, hence in their hashes: compare the rest.
    def strip(result: QueryResult) -> tuple[Any, ...]:
        total, docs = outcome(result)
        return total, [(doc_id, ver, data) for doc_id, ver, _, data in docs]

    assert strip(fast.query(query)) == strip(plain.query(query)), query
    condition = query.spec().condition
    for operation in ("count", "sum", "min", "max"):
        assert fast.aggregate(
            operation, field, where=condition, group_by="b"
        ) == plain.aggregate(operation, field, where=condition, group_by="b")
