"""The query language: filters, sorting, paging, projection, aggregation.

Pure: no I/O.  `sentinel.execution` runs a query against a collection,
using `sentinel.index` where it can.

Building a query
    `QueryBuilder` is immutable: every method returns a new builder, so a
    base query can be shared and refined::

        q = (QueryBuilder()
             .filter("age", "greater_than", 25)
             .filter("address.city", "equals", "Oslo")
             .sort("name", "ascending")
             .limit(10).offset(0)
             .projection(["name", "email"]))

    Conditions added by `filter`, `where`, `and_`, `or_` and `not_` must
    all hold.  Groups take conditions: a `Filter`, another group
    (`And`, `Or`, `Not`), a ``(field, operator, value)`` tuple, a
    Mongo-style dict, or a `QueryBuilder` (its conditions only)::

        q = QueryBuilder().or_(
            Filter("city", "equals", "Oslo"),
            ("age", "less_than", 18),
        ).not_(Filter("status", "equals", "banned"))

    A Mongo-style dict is a second front end onto the same conditions:
    ``{"age": {"$gt": 25}, "$or": [{"a": 1}, {"b": 2}]}`` (see
    `sentinel.mongo`).  Aggregation is in `sentinel.aggregate`.

Field paths
    A dotted path into the document's `data`: ``"address.city"``.  A
    segment that is a plain decimal number (``0``, ``12``; no sign, no
    leading zero) indexes an array when the value there is an array, and
    names a member when it is an object: ``"items.0.sku"``.  There is no
    implicit fan-out over arrays: ``"items.sku"`` on an array of objects
    is missing (use ``contains`` for membership).  A key containing a
    ``.`` cannot be addressed.  Empty paths or segments, and paths over
    `MAX_PATH_BYTES` bytes, raise `InvalidQueryError`.

Values and their order
    Every JSON value has a place in one total order, used for sorting and
    for equality: null < booleans (false < true) < numbers < strings <
    arrays < objects.  Numbers compare by value (``1`` equals ``1.0``);
    strings by Unicode code point (no locale collation); arrays element by
    element; objects member by member in key order.  Values of different
    kinds are never equal: ``"1"`` never equals ``1``, ``true`` never
    equals ``1``.

Operators
    ``equals``, ``not_equals``: same kind and equal value (arrays and
    objects compare deeply).  ``greater_than``, ``greater_or_equal``,
    ``less_than``, ``less_or_equal``: the operand is a number or a string,
    and only values of the same kind match (numbers with numbers, strings
    with strings).  ``in``, ``not_in``: the operand is a list; equal to
    one of them.  ``contains``: a string operand matches a string holding
    it as a substring, or an array holding it as an element; any other
    operand matches an array holding an equal element.  ``starts_with``,
    ``ends_with``: string operand, string values only.  ``exists``: the
    operand is a bool (default true); true matches any present value,
    null included, false matches a missing field.

Missing fields
    A missing field matches no comparison, no ``equals``, ``in``,
    ``contains``, ``starts_with`` or ``ends_with``.  ``not_equals`` and
    ``not_in`` are exactly the negations of ``equals`` and ``in``, so they
    do match a missing field (as ``Not(Filter(..., "equals", ...))``
    does, and as MongoDB's ``$ne`` and ``$nin`` do).

Sorting
    `sort` may be called several times: the first call is the primary key.
    Each key is ascending or descending; documents missing the field come
    last in either direction.  The sort is stable over document id order,
    so ties, and the result of a query without `sort`, are in id order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sentinel.document import Document
from sentinel.errors import InvalidInputError


class InvalidQueryError(InvalidInputError):
    """A query, filter, sort, projection or aggregation is malformed:
    an unknown operator, a bad field path or an unusable operand.  The
    message names the offending part."""


# -- the order of values -----------------------------------------------------

# A key is a tuple whose first item ranks the kind of the value, so keys
# of different kinds compare by rank alone and Python never compares,
# say, a str with an int.
Key = tuple[Any, ...]
RANK_NULL = 0
RANK_BOOL = 1
RANK_NUMBER = 2
RANK_STRING = 3
RANK_ARRAY = 4
RANK_OBJECT = 5
RANK_MISSING = 6
NULL: Key = (RANK_NULL,)
# A missing field sorts after every value, and equals no operand key.
MISSING: Key = (RANK_MISSING,)

MAX_PATH_BYTES = 1024
MAX_PATH_DEPTH = 128


def order_key(value: Any) -> Key:
    """The place of a JSON value in the total order (see the module
    docstring).  Two values are equal for queries exactly when their keys
    are equal.  Runtime: linear in the size of the value.
    """
    kind = type(value)
    if kind is str:
        return (RANK_STRING, value)
    if kind is int or kind is float:
        return (RANK_NUMBER, value)
    if kind is bool:
        return (RANK_BOOL, value)
    if value is None:
        return NULL
    if kind is list:
        return (RANK_ARRAY, tuple(map(order_key, value)))
    if kind is dict:
        # Names are unique, so sorting the pairs never compares values.
        return (
            RANK_OBJECT,
            tuple(
                sorted((name, order_key(item)) for name, item in value.items())
            ),
        )
    raise InvalidQueryError(f"{kind.__name__} is not a JSON value")


def unkey(key: Key) -> Any:
    """The value a key was made from (missing gives None)."""
    rank = key[0]
    if rank in (RANK_BOOL, RANK_NUMBER, RANK_STRING):
        return key[1]
    if rank == RANK_ARRAY:
        return [unkey(item) for item in key[1]]
    if rank == RANK_OBJECT:
        return {name: unkey(item) for name, item in key[1]}
    return None


# -- field paths -------------------------------------------------------------

_INDEX_SEGMENT = re.compile(r"0|[1-9][0-9]{0,8}")
_ABSENT: Any = object()


class FieldPath:
    """A parsed dotted path.  Create with `parse_path`."""

    __slots__ = ("text", "steps", "names")

    def __init__(self, text: str, steps: tuple[tuple[str, int | None], ...]):
        self.text = text
        self.steps = steps
        self.names = tuple(name for name, _ in steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldPath) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"FieldPath({self.text!r})"


def parse_path(text: object) -> FieldPath:
    """Check and parse a dotted field path; `InvalidQueryError` names
    what is wrong with it.  Parsed paths are cached (they are immutable),
    since the same few paths are parsed by every query."""
    if type(text) is not str:
        raise InvalidQueryError(
            f"a field path is a str, not {type(text).__name__}"
        )
    found = _parsed.get(text)
    if found is None:
        found = _parse(text)
        if len(_parsed) >= _PARSED_LIMIT:
            _parsed.clear()
        _parsed[text] = found
    return found


# A plain dict: a lost race between threads only parses a path twice.
_parsed: dict[str, FieldPath] = {}
_PARSED_LIMIT = 4096


def _parse(text: str) -> FieldPath:
    if not text:
        raise InvalidQueryError("malformed field path '': it is empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidQueryError(
            f"malformed field path {text!r}: not valid Unicode"
        ) from exc
    if size > MAX_PATH_BYTES:
        raise InvalidQueryError(
            f"malformed field path {text[:40]!r}...: longer than "
            f"{MAX_PATH_BYTES} bytes"
        )
    parts = text.split(".")
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidQueryError(
            f"malformed field path {text[:40]!r}: more than "
            f"{MAX_PATH_DEPTH} segments"
        )
    steps = []
    for position, part in enumerate(parts, start=1):
        if not part:
            raise InvalidQueryError(
                f"malformed field path {text!r}: segment {position} is empty"
            )
        number = int(part) if _INDEX_SEGMENT.fullmatch(part) else None
        steps.append((part, number))
    return FieldPath(text, tuple(steps))


def resolve(data: Any, path: FieldPath) -> Any:
    """The value at `path` in `data`, or `_ABSENT`."""
    value = data
    for name, number in path.steps:
        kind = type(value)
        if kind is dict:
            value = value.get(name, _ABSENT)
            if value is _ABSENT:
                return _ABSENT
        elif kind is list and number is not None and number < len(value):
            value = value[number]
        else:
            return _ABSENT
    return value


def key_at(data: dict[str, Any], path: FieldPath) -> Key:
    """The order key of the value at `path`, or `MISSING`."""
    value = resolve(data, path)
    if value is _ABSENT:
        return MISSING
    return order_key(value)


# -- operands ----------------------------------------------------------------

OPERATORS = (
    "equals",
    "not_equals",
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "exists",
)
COMPARISONS = frozenset(
    ("greater_than", "greater_or_equal", "less_than", "less_or_equal")
)
_UNSET: Any = object()


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse operands that no stored value could ever be."""
    kind = type(value)
    if kind is float and not math.isfinite(value):
        raise InvalidQueryError(f"{where}: {value!r} is not a JSON number")
    if value is None or kind in (str, bool, int, float):
        return
    if depth >= MAX_PATH_DEPTH:
        raise InvalidQueryError(f"{where}: operand nested too deeply")
    if kind is list:
        for item in value:
            _check_json(item, where, depth + 1)
        return
    if kind is dict:
        for name, item in value.items():
            if type(name) is not str:
                raise InvalidQueryError(
                    f"{where}: object keys must be str, not "
                    f"{type(name).__name__}"
                )
            _check_json(item, where, depth + 1)
        return
    raise InvalidQueryError(
        f"{where}: {kind.__name__} is not a JSON value"
        + (" (use a list)" if kind is tuple else "")
    )


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _tester(op: str, value: Any, where: str) -> Callable[[Key], bool]:
    """Validate the operand of `op` and return the test on a key."""
    if op in ("equals", "not_equals"):
        _check_json(value, where)
        wanted = order_key(value)
        if op == "equals":
            return wanted.__eq__
        return wanted.__ne__
    if op in COMPARISONS:
        if not (_is_number(value) or type(value) is str):
            raise InvalidQueryError(
                f"{where}: {op} needs a number or a string, not "
                f"{type(value).__name__}"
            )
        _check_json(value, where)
        bound = order_key(value)
        rank = bound[0]
        if op == "greater_than":
            return lambda key: key[0] == rank and key > bound
        if op == "greater_or_equal":
            return lambda key: key[0] == rank and key >= bound
        if op == "less_than":
            return lambda key: key[0] == rank and key < bound
        return lambda key: key[0] == rank and key <= bound
    if op in ("in", "not_in"):
        if type(value) not in (list, tuple, set, frozenset):
            raise InvalidQueryError(
                f"{where}: {op} needs a list, not {type(value).__name__}"
            )
        for item in value:
            _check_json(item, where)
        keys = frozenset(order_key(item) for item in value)
        if op == "in":
            return keys.__contains__
        return lambda key: key not in keys
    if op == "contains":
        _check_json(value, where)
        element = order_key(value)
        if type(value) is str:
            return lambda key: (
                (key[0] == RANK_STRING and value in key[1])
                or (key[0] == RANK_ARRAY and element in key[1])
            )
        return lambda key: key[0] == RANK_ARRAY and element in key[1]
    if op in ("starts_with", "ends_with"):
        if type(value) is not str:
            raise InvalidQueryError(
                f"{where}: {op} needs a str, not {type(value).__name__}"
            )
        if op == "starts_with":
            return lambda key: (
                key[0] == RANK_STRING and key[1].startswith(value)
            )
        return lambda key: key[0] == RANK_STRING and key[1].endswith(value)
    if op == "exists":
        if type(value) is not bool:
            raise InvalidQueryError(
                f"{where}: exists needs True or False, not "
                f"{type(value).__name__}"
            )
        if value:
            return MISSING.__ne__
        return MISSING.__eq__
    raise InvalidQueryError(
        f"unknown operator {op!r}; expected one of {', '.join(OPERATORS)}"
    )


# -- conditions --------------------------------------------------------------


class Filter:
    """One test of one field: ``Filter("age", "greater_than", 25)``.

    Validated when made: an unknown operator, a malformed path or an
    operand the operator cannot use raises `InvalidQueryError`.  `value`
    may be left out for ``exists`` (meaning True).
    """

    __slots__ = ("field", "op", "value", "path", "test")

    field: str
    op: str
    value: Any
    path: FieldPath
    test: Callable[[Key], bool]

    def __init__(self, field: str, op: str, value: Any = _UNSET) -> None:
        path = parse_path(field)
        if type(op) is not str or op not in OPERATORS:
            raise InvalidQueryError(
                f"unknown operator {op!r}; expected one of "
                f"{', '.join(OPERATORS)}"
            )
        if value is _UNSET:
            if op != "exists":
                raise InvalidQueryError(f"{op} on {field!r} needs a value")
            value = True
        if op in ("in", "not_in") and type(value) in (
            list,
            tuple,
            set,
            frozenset,
        ):
            value = tuple(value)
        test = _tester(op, value, f"{op} on {field!r}")
        put = object.__setattr__
        put(self, "field", field)
        put(self, "op", op)
        put(self, "value", value)
        put(self, "path", path)
        put(self, "test", test)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Filter is immutable")

    def _identity(self) -> tuple[str, str, Key]:
        # Operands compare as queries compare values: True is not 1.
        value = list(self.value) if type(self.value) is tuple else self.value
        return self.field, self.op, order_key(value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Filter):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"Filter({self.field!r}, {self.op!r}, {self.value!r})"

    def __str__(self) -> str:
        return f"{self.field} {self.op} {self.value!r}"


@dataclass(frozen=True, slots=True)
class And:
    """All of the conditions hold (true when there are none)."""

    conditions: tuple[Condition, ...]

    def __str__(self) -> str:
        return "(" + " and ".join(map(str, self.conditions)) + ")"


@dataclass(frozen=True, slots=True)
class Or:
    """At least one of the conditions holds (false when there are
    none)."""

    conditions: tuple[Condition, ...]

    def __str__(self) -> str:
        return "(" + " or ".join(map(str, self.conditions)) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    """The condition does not hold."""

    condition: Condition

    def __str__(self) -> str:
        return f"not {self.condition}"


Condition = Filter | And | Or | Not


def condition_of(item: object) -> Condition:
    """Turn any accepted form of a condition into a `Condition`."""
    if isinstance(item, (Filter, And, Or, Not)):
        return item
    if isinstance(item, QueryBuilder):
        return And(item._conditions)
    if isinstance(item, Mapping):
        from sentinel.mongo import from_mongo

        return from_mongo(item)
    if type(item) is tuple and len(item) in (2, 3):
        return Filter(*item)
    raise InvalidQueryError(
        "a condition is a Filter, And, Or, Not, a (field, operator, value) "
        f"tuple, a dict or a QueryBuilder, not {type(item).__name__}"
    )


def conjuncts(condition: Condition | None) -> list[Condition]:
    """The top-level conditions that must all hold (nested `And`s
    flattened)."""
    if condition is None:
        return []
    if isinstance(condition, And):
        found = []
        for part in condition.conditions:
            found.extend(conjuncts(part))
        return found
    return [condition]


class Row(Protocol):
    """What a compiled condition reads: one key per field path."""

    def key(self, path: FieldPath) -> Key: ...


Predicate = Callable[[Any], bool]


def compile_condition(
    condition: Condition, cheap: Callable[[FieldPath], bool] | None = None
) -> Predicate:
    """A function ``row -> bool`` for `condition`, reading keys through
    ``row.key(path)``.  Within `And` and `Or`, conditions whose paths are
    `cheap` (answered without reading the document) are tried first, so
    the short circuit often saves a read.
    """
    if isinstance(condition, Filter):
        path, test = condition.path, condition.test
        return lambda row: test(row.key(path))
    if isinstance(condition, Not):
        inner = compile_condition(condition.condition, cheap)
        return lambda row: not inner(row)
    parts = list(condition.conditions)
    if cheap is not None:
        parts.sort(key=lambda part: not _all_cheap(part, cheap))
    tests = [compile_condition(part, cheap) for part in parts]
    if isinstance(condition, And):
        if len(tests) == 1:
            return tests[0]

        def every(row: Any) -> bool:
            for test in tests:
                if not test(row):
                    return False
            return True

        return every

    def some(row: Any) -> bool:
        for test in tests:
            if test(row):
                return True
        return False

    return some


def paths_of(condition: Condition | None) -> set[FieldPath]:
    """Every field path `condition` reads."""
    if condition is None:
        return set()
    if isinstance(condition, Filter):
        return {condition.path}
    if isinstance(condition, Not):
        return paths_of(condition.condition)
    found: set[FieldPath] = set()
    for part in condition.conditions:
        found |= paths_of(part)
    return found


def _all_cheap(
    condition: Condition, cheap: Callable[[FieldPath], bool]
) -> bool:
    return all(cheap(path) for path in paths_of(condition))


# -- sorting and projection --------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    """One sort key: a path and a direction."""

    path: FieldPath
    descending: bool

    def __str__(self) -> str:
        way = "descending" if self.descending else "ascending"
        return f"{self.path.text} {way}"


def sort_rows(rows: list[Any], keys: Sequence[SortKey]) -> None:
    """Sort `rows` in place by `keys`, stable, missing values last.

    One stable pass per key, from the last key to the first, is the
    classic way to get mixed directions; ``reverse=True`` keeps equal
    items in their order, and for descending keys the missing flag is
    inverted so missing values still land last.  Runtime:
    O(k * n log n) for k keys.
    """
    for sort_key in reversed(keys):
        path = sort_key.path
        if sort_key.descending:

            def present_first(row: Row, path: FieldPath = path) -> Key:
                key = row.key(path)
                return (key != MISSING, key)

            rows.sort(key=present_first, reverse=True)
        else:

            def by_key(row: Row, path: FieldPath = path) -> Key:
                return row.key(path)

            rows.sort(key=by_key)


_WHOLE: dict[str, Any] = {}


def projection_tree(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """A tree of member names; a leaf (`_WHOLE`) keeps the whole value.
    A shorter path wins over a longer one under it."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        names = path.names
        for position, name in enumerate(names):
            child = node.get(name)
            if child is _WHOLE:
                break
            if position == len(names) - 1:
                node[name] = _WHOLE
                break
            if child is None:
                child = node[name] = {}
            node = child
    return tree


def project(data: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    """The parts of `data` that `tree` names.

    A path follows object members only: where it meets an array before
    its end, the whole array is kept (``"items.0.sku"`` keeps ``items``).
    Missing members are left out, and so is an object that ends up
    empty because none of the members asked for exist.
    """
    out: dict[str, Any] = {}
    for name, child in tree.items():
        if name not in data:
            continue
        value = data[name]
        if child is _WHOLE or type(value) is list:
            out[name] = value
        elif type(value) is dict:
            inner = project(value, child)
            if inner:
                out[name] = inner
    return out


def projected(doc: Document, tree: dict[str, Any]) -> Document:
    """`doc` with its data trimmed to `tree`; id, version, hash and
    timestamps kept (the hash still names the whole stored version)."""
    return Document(
        doc.collection,
        doc.id,
        doc.version,
        doc.created_at,
        doc.updated_at,
        doc.hash,
        project(doc.data, tree),
        None,
        doc.deleted,
        doc.parent,
    )


# -- the builder -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """A finished query, as `sentinel.execution` runs it."""

    condition: Condition | None
    sort: tuple[SortKey, ...]
    limit: int | None
    offset: int
    projection: tuple[FieldPath, ...] | None
    explain: bool


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidQueryError(f"{what} must be an int >= 0, not {value!r}")
    return value


class QueryBuilder:
    """A query, built fluently; every method returns a new builder.

    Methods: `filter`, `where` (a Mongo-style dict), `and_`, `or_`,
    `not_` (groups), `sort` (repeatable), `limit`, `offset`,
    `projection`, `explain`.  Each checks its arguments at once and
    raises `InvalidQueryError` naming what is wrong.  Run it with
    `Collection.query`.
    """

    __slots__ = (
        "_conditions",
        "_sort",
        "_limit",
        "_offset",
        "_projection",
        "_explain",
    )

    def __init__(self) -> None:
        self._conditions: tuple[Condition, ...] = ()
        self._sort: tuple[SortKey, ...] = ()
        self._limit: int | None = None
        self._offset = 0
        self._projection: tuple[FieldPath, ...] | None = None
        self._explain = False

    def _with(self, **changes: Any) -> QueryBuilder:
        twin = QueryBuilder.__new__(QueryBuilder)
        twin._conditions = self._conditions
        twin._sort = self._sort
        twin._limit = self._limit
        twin._offset = self._offset
        twin._projection = self._projection
        twin._explain = self._explain
        for name, value in changes.items():
            setattr(twin, name, value)
        return twin

    def filter(self, field: str, op: str, value: Any = _UNSET) -> QueryBuilder:
        """Add the condition ``field op value`` (see the operators in the
        module docstring)."""
        return self._with(
            _conditions=(*self._conditions, Filter(field, op, value))
        )

    def where(self, spec: Mapping[str, Any]) -> QueryBuilder:
        """Add a Mongo-style filter (see `sentinel.mongo`)."""
        from sentinel.mongo import from_mongo

        return self._with(_conditions=(*self._conditions, from_mongo(spec)))

    def and_(self, *conditions: object) -> QueryBuilder:
        """Add a group that holds when all `conditions` hold."""
        return self._group(And, "and_", conditions)

    def or_(self, *conditions: object) -> QueryBuilder:
        """Add a group that holds when any of `conditions` holds."""
        return self._group(Or, "or_", conditions)

    def not_(self, condition: object) -> QueryBuilder:
        """Add a condition that holds when `condition` does not."""
        return self._with(
            _conditions=(*self._conditions, Not(condition_of(condition)))
        )

    def _group(
        self, kind: type[And] | type[Or], name: str, items: tuple[object, ...]
    ) -> QueryBuilder:
        if not items:
            raise InvalidQueryError(f"{name} needs at least one condition")
        group = kind(tuple(condition_of(item) for item in items))
        return self._with(_conditions=(*self._conditions, group))

    def sort(self, field: str, direction: str = "ascending") -> QueryBuilder:
        """Sort by `field`, ``"ascending"`` or ``"descending"``; later
        calls add secondary keys."""
        if direction not in ("ascending", "descending"):
            raise InvalidQueryError(
                f"unknown sort direction {direction!r}; use 'ascending' or "
                "'descending'"
            )
        key = SortKey(parse_path(field), direction == "descending")
        return self._with(_sort=(*self._sort, key))

    def limit(self, count: int) -> QueryBuilder:
        """Return at most `count` documents (0 returns none, but still
        counts the matches in `total_count`)."""
        return self._with(_limit=_count(count, "limit"))

    def offset(self, count: int) -> QueryBuilder:
        """Skip the first `count` matching documents."""
        return self._with(_offset=_count(count, "offset"))

    def projection(self, fields: Iterable[str]) -> QueryBuilder:
        """Keep only these field paths of each document's `data`."""
        if isinstance(fields, str) or not isinstance(fields, Iterable):
            raise InvalidQueryError("projection takes a list of field paths")
        paths = tuple(parse_path(field) for field in fields)
        return self._with(_projection=paths)

    def explain(self, on: bool = True) -> QueryBuilder:
        """Ask `Collection.query` to describe its plan in the result's
        `plan` (the query still runs)."""
        return self._with(_explain=bool(on))

    def spec(self) -> QuerySpec:
        conditions = self._conditions
        condition: Condition | None = None
        if len(conditions) == 1:
            condition = conditions[0]
        elif conditions:
            condition = And(conditions)
        return QuerySpec(
            condition,
            self._sort,
            self._limit,
            self._offset,
            self._projection,
            self._explain,
        )

    def __repr__(self) -> str:
        spec = self.spec()
        return (
            f"QueryBuilder(filter={spec.condition}, "
            f"sort=[{', '.join(map(str, spec.sort))}], "
            f"limit={spec.limit}, offset={spec.offset})"
        )


def to_spec(query: object, *, explain: bool = False) -> QuerySpec:
    """A `QuerySpec` from a `QueryBuilder`, a Mongo-style dict, a single
    condition or None (every document)."""
    if query is None:
        spec = QueryBuilder().spec()
    elif isinstance(query, QueryBuilder):
        spec = query.spec()
    else:
        spec = QuerySpec(condition_of(query), (), None, 0, None, False)
    if explain and not spec.explain:
        spec = QuerySpec(
            spec.condition,
            spec.sort,
            spec.limit,
            spec.offset,
            spec.projection,
            True,
        )
    return spec


def filter_only(query: object) -> Condition | None:
    """The condition of `query`, refusing sort, paging and projection
    (used where only a filter makes sense, as in aggregation)."""
    spec = to_spec(query)
    if spec.sort or spec.limit is not None or spec.offset or spec.projection:
        raise InvalidQueryError(
            "only filters apply here: remove sort, limit, offset and "
            "projection"
        )
    return spec.condition


# -- results -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """How a query ran (see `Collection.query` with ``explain=True``).

    `access` is ``"scan"`` (every live document), ``"index"`` (the
    entries of `index` that `indexed` selects), ``"index order"`` (the
    entries of `index` in sort order, stopping once the page is full when
    the total is known) or ``"history scan"`` (an ``as_of`` query, which
    never uses indexes).  `candidates` counts the documents considered,
    `loaded` the ones read from disk (a condition on an indexed field is
    checked from the index, without a read).  `sort` is ``"none"``,
    ``"index"`` or ``"memory"``.
    """

    access: str
    index: str | None
    indexed: str | None
    residual: str | None
    sort: str
    candidates: int
    loaded: int

    def __str__(self) -> str:
        text = self.access
        if self.index is not None:
            text += f" on {self.index}"
        if self.indexed:
            text += f" ({self.indexed})"
        if self.residual:
            text += f", then filter {self.residual}"
        text += (
            f"; sort: {self.sort}; {self.candidates} candidates, "
            f"{self.loaded} documents read"
        )
        return text


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The result of `Collection.query`.

    `documents` is the page asked for; `total_count` the number of
    matching documents before `offset` and `limit`; `execution_time` the
    seconds the query took; `plan` a `Plan` when explain was asked for,
    else None.
    """

    documents: list[Document]
    total_count: int
    execution_time: float
    plan: Plan | None = None
