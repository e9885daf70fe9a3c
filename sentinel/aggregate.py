"""Aggregation: count, sum, avg, min and max, optionally per group.

Pure; `sentinel.execution` feeds it the keys (`sentinel.query`) of the
matching documents, in id order.

``count`` without a field counts matching documents; with a field, the
documents where it is present and not null.  The others use numbers
only: missing fields, null, booleans, strings, arrays and objects are
skipped.  ``sum`` of nothing is 0; ``avg``, ``min`` and ``max`` of
nothing are None.  Sums of floats are exact-rounded (`math.fsum`), so
they do not depend on the order documents are read in.
"""

from __future__ import annotations

import math
from typing import Any

from sentinel.query import (
    MISSING,
    NULL,
    RANK_NUMBER,
    InvalidQueryError,
    Key,
    parse_path,
    unkey,
)

AGGREGATIONS = ("count", "sum", "avg", "min", "max")


class Aggregation:
    """One aggregate over matching documents, optionally per group.

    Feed it keys in document id order with `add`; `result` gives the
    value, or with `group_by` a list of ``(group value, value)`` pairs in
    the order of group values.  Documents missing the `group_by` field
    are grouped with those where it is null, under None.  Where several
    equal values could stand for a group or a minimum (``1`` and
    ``1.0``), the first in id order is shown.  Runtime: O(1) per
    document, memory O(groups).
    """

    __slots__ = ("operation", "field", "group_by", "_groups")

    def __init__(
        self,
        operation: str,
        field: str | None = None,
        group_by: str | None = None,
    ) -> None:
        if operation not in AGGREGATIONS:
            raise InvalidQueryError(
                f"unknown aggregation {operation!r}; expected one of "
                f"{', '.join(AGGREGATIONS)}"
            )
        if field is None and operation != "count":
            raise InvalidQueryError(f"{operation} needs a field")
        self.operation = operation
        self.field = None if field is None else parse_path(field)
        self.group_by = None if group_by is None else parse_path(group_by)
        self._groups: dict[Key, list[Any]] = {}

    def add(self, value: Key, group: Key = NULL) -> None:
        """Count one matching document: `value` is the key of `field`
        (ignored for a plain count), `group` the key of `group_by`."""
        if group == MISSING:
            group = NULL
        state = self._groups.get(group)
        if state is None:
            # group key as first seen, count, int total, floats, best
            state = self._groups[group] = [group, 0, 0, [], None]
        if self.operation == "count":
            if self.field is None or value not in (MISSING, NULL):
                state[1] += 1
            return
        if value[0] != RANK_NUMBER:
            return
        number = value[1]
        state[1] += 1
        if type(number) is int:
            state[2] += number
        else:
            state[3].append(number)
        best = state[4]
        if (
            best is None
            or (self.operation == "min" and number < best)
            or (self.operation == "max" and number > best)
        ):
            state[4] = number

    def _final(self, state: list[Any]) -> Any:
        operation, count = self.operation, state[1]
        if operation == "count":
            return count
        if operation in ("min", "max"):
            return state[4]
        if state[3]:
            total: int | float = math.fsum([*state[3], state[2]])
        else:
            total = state[2]
        if operation == "sum":
            return total
        return total / count if count else None

    def result(self) -> Any:
        if self.group_by is None:
            state = self._groups.get(NULL)
            if state is None:
                return 0 if self.operation in ("count", "sum") else None
            return self._final(state)
        return [
            (unkey(self._groups[group][0]), self._final(self._groups[group]))
            for group in sorted(self._groups)
        ]
