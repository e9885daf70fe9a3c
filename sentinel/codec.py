"""Canonical JSON: validation, exact encoding and bounded decoding.

Pure: no I/O.  The byte format is specified in
``objects_spec/README.md`` ("Canonical JSON"); the test suite checks the
spec's vectors against this module.

In short: UTF-8; no insignificant whitespace; object keys sorted by Unicode
code point; strings escape only ``"``, ``\\`` and U+0000-U+001F; integers
in plain decimal; floats in Python's shortest round-trip form, which always
keeps a ``.`` or an exponent so a float never reads back as an integer.

Limits (documented in the README, checked before anything is written):

- nesting depth: at most `MAX_DEPTH` containers, the document included;
- integers: -2**63 <= n < 2**64 (the range of 64-bit integers in other
  languages, so a document written here can be read anywhere);
- canonical size: at most `MAX_DOCUMENT` bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from sentinel.errors import (
    CorruptObjectError,
    DocumentTooLargeError,
    InvalidDocumentError,
)

MAX_DEPTH = 128
MAX_DOCUMENT = 16 * 1024 * 1024
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
    check_circular=False,
)
_SCALARS = (str, bool, type(None))
# Floats that Python's shortest form writes without an exponent; orjson
# writes exactly the same digits for them (and only for them: it spells
# exponents differently, 1e-05 as 0.00001).
_PLAIN_FLOAT_LOW = 1e-4
_PLAIN_FLOAT_HIGH = 1e16
# What `_survey` can say of a value.
_UNSURE = 0  # maybe invalid: `_check` decides, and names the offence
_VALID = 1  # valid; only the stdlib encoder spells it canonically
_FAST = 2  # valid, and orjson's bytes are the canonical bytes


def _where(path: list[str | int]) -> str:
    return "$" + "".join(
        f"[{step}]" if isinstance(step, int) else f".{step}" for step in path
    )


def _check(value: Any, path: list[str | int], open_ids: set[int]) -> None:
    """Walk `value`, raising `InvalidDocumentError` at the first offence.

    `open_ids` holds the containers on the current path, so a cycle is
    named as such instead of surfacing as a depth or recursion error.
    """
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is int:
        if not MIN_INT <= value <= MAX_INT:
            raise InvalidDocumentError(
                f"integer at {_where(path)} is outside the supported range "
                f"[-2**63, 2**64 - 1]"
            )
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidDocumentError(
                f"{value!r} at {_where(path)} is not valid JSON "
                "(NaN and Infinity are refused)"
            )
        return
    if kind is not dict and kind is not list:
        hint = " (use a list)" if kind is tuple else ""
        raise InvalidDocumentError(
            f"value at {_where(path)} has type {kind.__name__}, which is "
            f"not a JSON type{hint}"
        )

    marker = id(value)
    if marker in open_ids:
        raise InvalidDocumentError(f"cycle at {_where(path)}")
    if len(path) >= MAX_DEPTH:
        raise InvalidDocumentError(
            f"nesting deeper than {MAX_DEPTH} levels at {_where(path)}"
        )
    open_ids.add(marker)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidDocumentError(
                    f"key {key!r} at {_where(path)} is a "
                    f"{type(key).__name__}; JSON object keys are strings"
                )
            path.append(key)
            _check(item, path, open_ids)
            path.pop()
    else:
        for index, item in enumerate(value):
            path.append(index)
            _check(item, path, open_ids)
            path.pop()
    open_ids.discard(marker)


def _survey(root: Any) -> int:
    """Fast check that `root` is within the JSON model, and whether
    orjson spells it canonically.

    Iterative, with scalar checks inline, since this runs on every write.
    It may say `_UNSURE` for a valid value (a list or dict referenced
    twice), never anything else for an invalid one; `_UNSURE` sends the
    caller to `_check`, which is exact and names the offending path.
    """
    kind = type(root)
    if kind is not dict and kind is not list:
        return _UNSURE
    verdict = _FAST
    seen = {id(root)}
    stack = [(root, 1)]
    while stack:
        container, depth = stack.pop()
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    return _UNSURE
            items = container.values()
        else:
            items = container
        for value in items:
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if kind is int:
                if value < MIN_INT or value > MAX_INT:
                    return _UNSURE
            elif kind is float:
                if value - value != 0.0:  # NaN or an infinity
                    return _UNSURE
                if value and not (
                    _PLAIN_FLOAT_LOW <= abs(value) < _PLAIN_FLOAT_HIGH
                ):
                    verdict = _VALID
            elif kind is dict or kind is list:
                marker = id(value)
                if marker in seen or depth >= MAX_DEPTH:
                    return _UNSURE
                seen.add(marker)
                stack.append((value, depth + 1))
            else:
                return _UNSURE
    return verdict


def canonical(data: Any) -> bytes:
    """Return the canonical JSON bytes of any valid JSON value.

    Raises `InvalidDocumentError` (or `DocumentTooLargeError`) for values
    outside the supported JSON model.  Runtime: linear in the size of the
    value.  Most documents are encoded by orjson, which gives the same
    bytes as the stdlib encoder below for every value `_survey` calls
    `_FAST` (``tests/test_fuzz.py`` compares the two); the rest, and
    anything orjson refuses (a lone surrogate), take the stdlib path.
    """
    verdict = _survey(data)
    if verdict == _UNSURE:
        _check(data, [], set())
    encoded = None
    if verdict == _FAST:
        try:
            encoded = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            encoded = None
    if encoded is None:
        try:
            encoded = _ENCODER.encode(data).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidDocumentError(
                "document holds a lone surrogate, which is not valid Unicode"
            ) from exc
    if len(encoded) > MAX_DOCUMENT:
        raise DocumentTooLargeError(
            f"document is {len(encoded):,} bytes of canonical JSON; the "
            f"limit is {MAX_DOCUMENT:,}"
        )
    return encoded


def canonical_document(data: Any) -> bytes:
    """Like `canonical`, but `data` must be a JSON object (a dict)."""
    if type(data) is not dict:
        raise InvalidDocumentError(
            f"a document must be a dict, not {type(data).__name__}"
        )
    return canonical(data)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:
        raise ValueError(f"{text} overflows to infinity")
    return value


# A lone surrogate can reach a str only through a \u escape in JSON
# text: a high one (D800-DBFF) not followed by a low one (DC00-DFFF), or
# a low one not preceded by a high one.  The escape counts only after an
# even number of backslashes (``\\ud800`` is a backslash and text).
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(?:"
    + _HIGH
    + rb"(?!"
    + _LOW
    + rb")|(?<!"
    + _HIGH
    + rb")"
    + _LOW
    + rb")"
)


def _check_text(payload: bytes) -> None:
    if b"\\u" in payload and _LONE_SURROGATE.search(payload):
        raise ValueError("lone surrogate")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate object key")
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    object_pairs_hook=_unique_pairs,
)


def decode(payload: bytes, *, address: str | None = None) -> Any:
    """Parse canonical JSON bytes read from disk.

    Refuses NaN and Infinity, duplicate keys, invalid UTF-8 and nesting
    the interpreter cannot parse, raising `CorruptObjectError` naming
    `address`.  The caller has already bounded the size.
    """
    try:
        _check_text(payload)
        return _DECODER.decode(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise CorruptObjectError(
            f"object {address or '?'} does not hold valid JSON: {exc}",
            address=address,
        ) from exc


def decode_verified(payload: bytes, *, address: str | None = None) -> Any:
    """Parse JSON bytes that already matched their BLAKE3 address.

    The hot read path, parsed by ``orjson``, which refuses what could
    hurt the caller: invalid UTF-8 or JSON, lone surrogates, NaN and
    Infinity, numbers that overflow a double, nesting over 1,024 levels
    and bytes after the value.  Unlike `decode` it does not look for
    duplicate keys, and an integer outside the 64-bit range reads as a
    float rather than failing: bytes that match their address were
    written by whoever wrote the object (only a forger writes either,
    and a forger able to place such bytes could as well place valid
    ones).  Non-canonical payloads, these included, are found by
    `Store.verify`.  Costs about a fifth of `decode`.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CorruptObjectError(
            f"object {address or '?'} does not hold valid JSON: {exc}",
            address=address,
        ) from exc
