"""Merging and diffing JSON documents.  Pure: no I/O.

`merge` is how `update` applies a partial document: objects merge
recursively, every other value (arrays, strings, numbers, booleans and
null) replaces what was there.  A null therefore sets a field to null; it
does not remove it.

`diff` describes how one document became another as JSON-friendly data.
Paths are JSON Pointers (RFC 6901): ``/address/city``, ``/tags/0``; a
``~`` in a key is written ``~0`` and a ``/`` is written ``~1``.  Objects
are compared key by key and arrays index by index, so a change deep
inside is reported at its own path.  A value whose type changes (an
object becoming an array, say) is one change of the whole value.
"""

from __future__ import annotations

from typing import Any

Json = Any


def merge(base: dict[str, Json], patch: dict[str, Json]) -> dict[str, Json]:
    """Return `base` with `patch` merged in; neither input is changed.

    Runtime: linear in the size of `patch` plus the copied parts of
    `base`.
    """
    result = dict(base)
    for key, value in patch.items():
        current = result.get(key)
        if type(value) is dict and type(current) is dict:
            result[key] = merge(current, value)
        else:
            result[key] = value
    return result


def _pointer(path: list[str | int]) -> str:
    return "".join(
        "/" + str(step).replace("~", "~0").replace("/", "~1") for step in path
    )


def _same(left: Json, right: Json) -> bool:
    """JSON equality: 1 and 1.0 differ, as do true and 1."""
    return type(left) is type(right) and left == right


def diff(
    old: dict[str, Json], new: dict[str, Json]
) -> dict[str, list[dict[str, Json]]]:
    """Describe the change from `old` to `new`.

    Returns ``{"added": [{"path", "value"}], "removed": [{"path",
    "value"}], "changed": [{"path", "old", "new"}]}``, each list in path
    order.
    """
    found: dict[str, list[dict[str, Json]]] = {
        "added": [],
        "removed": [],
        "changed": [],
    }
    _walk(old, new, [], found)
    for entries in found.values():
        entries.sort(key=lambda entry: entry["path"])
    return found


def _walk(
    old: Json,
    new: Json,
    path: list[str | int],
    found: dict[str, list[dict[str, Json]]],
) -> None:
    if type(old) is dict and type(new) is dict:
        for key in old.keys() | new.keys():
            here = [*path, key]
            if key not in new:
                found["removed"].append(
                    {"path": _pointer(here), "value": old[key]}
                )
            elif key not in old:
                found["added"].append(
                    {"path": _pointer(here), "value": new[key]}
                )
            else:
                _walk(old[key], new[key], here, found)
        return
    if type(old) is list and type(new) is list:
        for index in range(max(len(old), len(new))):
            here = [*path, index]
            if index >= len(new):
                found["removed"].append(
                    {"path": _pointer(here), "value": old[index]}
                )
            elif index >= len(old):
                found["added"].append(
                    {"path": _pointer(here), "value": new[index]}
                )
            else:
                _walk(old[index], new[index], here, found)
        return
    if not _same(old, new):
        found["changed"].append(
            {"path": _pointer(path), "old": old, "new": new}
        )
