"""The Mongo-style front end: dict filters onto Sentinel's conditions.

Pure.  ``{"age": {"$gt": 25}, "city": "Oslo"}`` becomes
``And((Filter("age", "greater_than", 25), Filter("city", "equals",
"Oslo")))``: the same conditions the fluent builder makes, run by the
same engine, with Sentinel's semantics (see `sentinel.query`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentinel.query import And, Condition, Filter, InvalidQueryError, Not, Or

_MONGO_OPERATORS = {
    "$eq": "equals",
    "$ne": "not_equals",
    "$gt": "greater_than",
    "$gte": "greater_or_equal",
    "$lt": "less_than",
    "$lte": "less_or_equal",
    "$in": "in",
    "$nin": "not_in",
    "$exists": "exists",
    "$contains": "contains",
    "$startsWith": "starts_with",
    "$endsWith": "ends_with",
}


def from_mongo(spec: Mapping[str, Any]) -> Condition:
    """Translate a Mongo-style filter into conditions.

    ``{"age": {"$gt": 25}, "city": "Oslo"}`` is two filters that must both
    hold; a plain value means ``equals`` (a dict without ``$`` keys is an
    object to compare with).  Field operators: ``$eq``, ``$ne``, ``$gt``,
    ``$gte``, ``$lt``, ``$lte``, ``$in``, ``$nin``, ``$exists``, ``$not``
    and the extensions ``$contains``, ``$startsWith``, ``$endsWith``;
    top level: ``$and``, ``$or``, ``$nor`` with a list of filters.  The
    semantics are Sentinel's (see the module docstring), not MongoDB's:
    in particular ``{"tags": "x"}`` does not look inside an array (use
    ``$contains``).  Anything else raises `InvalidQueryError`.
    """
    if not isinstance(spec, Mapping):
        raise InvalidQueryError(
            f"a Mongo-style filter is a dict, not {type(spec).__name__}"
        )
    parts: list[Condition] = []
    for name, value in spec.items():
        if type(name) is not str:
            raise InvalidQueryError(f"filter key {name!r} is not a str")
        if name in ("$and", "$or", "$nor"):
            if type(value) is not list or not value:
                raise InvalidQueryError(f"{name} needs a non-empty list")
            children = tuple(from_mongo(item) for item in value)
            if name == "$and":
                parts.append(And(children))
            elif name == "$or":
                parts.append(Or(children))
            else:
                parts.append(Not(Or(children)))
        elif name.startswith("$"):
            raise InvalidQueryError(f"unknown operator {name!r}")
        else:
            parts.extend(_mongo_field(name, value))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _mongo_field(name: str, value: Any) -> list[Condition]:
    if not isinstance(value, Mapping) or not value:
        return [Filter(name, "equals", value)]
    dollars = [type(key) is str and key.startswith("$") for key in value]
    if not any(dollars):
        return [Filter(name, "equals", dict(value))]
    if not all(dollars):
        raise InvalidQueryError(
            f"filter on {name!r} mixes operators and plain keys"
        )
    found: list[Condition] = []
    for operator, operand in value.items():
        if operator == "$not":
            if not isinstance(operand, Mapping):
                raise InvalidQueryError("$not needs a dict of operators")
            inner = _mongo_field(name, operand)
            found.append(
                Not(inner[0] if len(inner) == 1 else And(tuple(inner)))
            )
            continue
        op = _MONGO_OPERATORS.get(operator)
        if op is None:
            raise InvalidQueryError(f"unknown operator {operator!r}")
        found.append(Filter(name, op, operand))
    return found
