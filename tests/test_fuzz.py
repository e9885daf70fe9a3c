"""Decoder fuzzing: RELIABILITY.md T21.

Every decoder that reads bytes from disk gets random input and
structure-aware mutations of real input, made by Hypothesis:

- `sentinel.objects.decode`: stored objects (header fields, truncation,
  zstd frames that lie about their size, decompression bombs);
- `sentinel.objects.parse_version` and `sentinel.codec.decode`: version
  payloads and JSON (duplicate keys, NaN, deep nesting, bad UTF-8, lone
  surrogates);
- `sentinel.journal.records` and `parse_frames`, `sentinel.refs
  .decode_move`, `sentinel.table.decode`: the binary structures of the
  packs and the ref table;
- `sentinel.config`: a damaged ``sentinel.json`` must make `Store.new`
  raise `UnsupportedFormatError`.

Only the typed set may escape: `SentinelError` subclasses, or
`ValueError` from the low-level parsers whose documented contract it is.
Anything else counts in the "untyped" figure, which must stay 0.  Inputs
that once broke a decoder, or that the bad-input catalogue names, are
kept as ``@example`` decorators and in the ``*_CORPUS`` tables: a
regression corpus run on every pass.

Budget: a few hundred examples per property by default (the whole file
in well under a minute); ``pytest --slow`` multiplies them.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import blake3
import figures
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sentinel
from sentinel import codec, config, journal, names, objects, refs, table

T = TypeVar("T")

FAST = 150
SLOW_FACTOR = 20
MEMORY_BOUND = 64 << 20
TYPED: tuple[type[BaseException], ...] = (sentinel.SentinelError,)
LOW_LEVEL: tuple[type[BaseException], ...] = (ValueError,)

_counts = {"cases": 0, "untyped": 0, "peak": 0}


@pytest.fixture(scope="module", autouse=True)
def _fuzz_figure() -> Iterator[None]:
    """Report the module's totals once, as one figure line."""
    yield
    figures.record(
        "fuzz cases",
        zero=("untyped",),
        cases=_counts["cases"],
        untyped=_counts["untyped"],
        **{"peak MiB": math.ceil(_counts["peak"] / 2**20)},
    )


def attempt(
    call: Callable[[], T], allowed: tuple[type[BaseException], ...]
) -> tuple[bool, T | BaseException]:
    """Run one fuzz case: (True, result), or (False, the allowed error).
    Any other exception is counted as untyped and fails the test."""
    _counts["cases"] += 1
    try:
        return True, call()
    except allowed as exc:
        return False, exc
    except Exception as exc:
        _counts["untyped"] += 1
        raise AssertionError(f"untyped exception escaped: {exc!r}") from exc


def budget(slow: bool, base: int = FAST) -> settings:
    return settings(
        max_examples=base * SLOW_FACTOR if slow else base,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# -- shared material ----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=codec.MIN_INT, max_value=codec.MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=16,
)
JSON_TOKENS = (
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b'"a"',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\u0000"',
    b'"\xed\xa0\x80"',
    b"\xff",
    b"\xc0\xaf",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-0",
    b"0.5",
    b"18446744073709551616",
    b"9" * 5000,
    b"true",
    b"null",
    b" ",
    b"\xef\xbb\xbf",
)
json_soup = st.lists(st.sampled_from(JSON_TOKENS), max_size=24).map(b"".join)


def _zstd_frame(content_size: int | None, total: int) -> bytes:
    """A zstd frame of RLE blocks holding `total` spaces, declaring
    `content_size` (None: no size field).  4 bytes per 128 KiB block."""
    magic = b"\x28\xb5\x2f\xfd"
    if content_size is None:
        head = magic + b"\x00\x38"
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


def _header(kind: int, encoding: int, flags: int, length: int) -> bytes:
    return struct.pack(
        ">4sBBBBI", objects.MAGIC, kind, encoding, flags, 0, length
    )


VERSION_FIELDS: dict[str, Any] = {
    "collection": "users",
    "created_at": "2026-01-01T00:00:00.000000+00:00",
    "data": {"name": "Alice", "n": 1},
    "deleted": False,
    "id": "u1",
    "parent": None,
    "updated_at": "2026-01-01T00:00:00.000000+00:00",
    "version": 1,
}


def _canonical_version(fields: dict[str, Any]) -> bytes:
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real bytes to mutate: a pack's frames, a ref table, records."""
    root = tmp_path_factory.mktemp("sample") / "store"
    with sentinel.Store.new(root, durable=False) as store:
        users = store.collection("users")
        for number in range(3):
            users.insert(f"u{number}", {"n": number, "tags": ["a", "b"]})
        users.insert("u0", {"n": 10})
        users.delete("u1")
        store.collection("audit.log").insert("e0", {"msg": "hello"})
        with store._engine.state_lock:
            store._engine.checkpoint()
    pack = (root / "objects" / journal.pack_name(1)).read_bytes()
    frames = list(
        journal.parse_frames(
            pack[journal.PACK_HEADER_SIZE :], 1, journal.PACK_HEADER_SIZE
        )
    )
    end = frames[-1].end
    moves, stored = [], []
    for frame in frames:
        for item in journal.records(frame.body, frame.body_offset):
            if item.kind == journal.RECORD_REF:
                moves.append(item.content)
            elif item.kind == journal.RECORD_OBJECT:
                stored.append(item.content)
    return {
        "root": root,
        "frames_bytes": pack[journal.PACK_HEADER_SIZE : end],
        "frames": frames,
        "moves": moves,
        "objects": stored,
        "table": (root / "refs" / "table").read_bytes(),
        "config": (root / config.FILE_NAME).read_bytes(),
    }


# -- objects.decode -----------------------------------------------------------


def test_object_decode_random_bytes(slow: bool) -> None:
    """Random stored bytes: `CorruptObjectError` naming the address, or
    (never seen) a payload that matches its address."""

    @budget(slow, 300)
    @given(st.binary(max_size=600), st.binary(min_size=32, max_size=32))
    @example(b"", bytes(32))
    @example(objects.MAGIC, bytes(32))
    @example(_header(1, 1, 0, 5) + b"\x28\xb5\x2f\xfd", bytes(32))
    @example(_header(1, 0, 0, 0), bytes(32))
    @example(_header(1, 2, 0, 0), bytes(32))
    def check(stored: bytes, address: bytes) -> None:
        ok, result = attempt(lambda: objects.decode(stored, address), TYPED)
        if ok:
            assert isinstance(result, tuple)
            kind, payload = result
            assert objects.address_of(kind, payload) == address
        else:
            assert isinstance(result, sentinel.CorruptObjectError)
            assert result.address == address.hex()

    check()


@st.composite
def mutated_objects(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, str]:
    """A valid stored object, then one structure-aware mutation; returns
    (address, original payload, mutated stored bytes, what was done)."""
    payload = draw(
        st.one_of(
            st.binary(max_size=300),
            json_values.map(lambda v: json.dumps(v).encode()),
        )
    )
    address, stored = objects.encode(objects.TYPE_VERSION, payload)
    head, body = stored[: objects.HEADER_SIZE], stored[objects.HEADER_SIZE :]
    how = draw(
        st.sampled_from(
            (
                "magic",
                "type",
                "encoding",
                "flags",
                "reserved",
                "length",
                "flip",
                "truncate",
                "append",
                "frame size",
                "bomb",
                "identity",
            )
        )
    )
    if how == "magic":
        out = draw(st.binary(min_size=4, max_size=4)) + stored[4:]
    elif how in ("type", "encoding", "flags", "reserved"):
        at = {"type": 4, "encoding": 5, "flags": 6, "reserved": 7}[how]
        value = draw(st.integers(0, 255))
        out = stored[:at] + bytes((value,)) + stored[at + 1 :]
    elif how == "length":
        value = draw(
            st.one_of(
                st.integers(0, 2**32 - 1),
                st.sampled_from(
                    (
                        len(payload) + 1,
                        max(len(payload) - 1, 0),
                        objects.MAX_PAYLOAD,
                        objects.MAX_PAYLOAD + 1,
                    )
                ),
            )
        )
        out = head[:8] + struct.pack(">I", value) + body
    elif how == "flip":
        at = draw(st.integers(0, len(stored) - 1))
        mask = draw(st.integers(1, 255))
        out = stored[:at] + bytes((stored[at] ^ mask,)) + stored[at + 1 :]
    elif how == "truncate":
        out = stored[: draw(st.integers(0, len(stored) - 1))]
    elif how == "append":
        out = stored + draw(st.binary(min_size=1, max_size=64))
    elif how == "frame size":
        # The frame's declared content size is rewritten, the header's
        # length kept: sizes that disagree with each other or the data.
        declared = draw(
            st.one_of(
                st.none(),
                st.integers(0, 2**64 - 1),
                st.sampled_from((len(payload), 4 << 30, 2**63)),
            )
        )
        out = head + _zstd_frame(declared, draw(st.integers(0, 4096)))
    elif how == "bomb":
        # Header and frame agree on a size up to the limit; the frame
        # really inflates to it.  Bounded by MAX_PAYLOAD, so cheap.
        size = draw(st.integers(0, 1 << 20))
        out = _header(1, 1, 0, size) + _zstd_frame(size, size)
    else:
        # The identity encoding is valid: the same payload, uncompressed.
        out = _header(1, 0, 0, len(payload)) + payload
    return address, payload, out, how


def test_object_decode_mutated(slow: bool) -> None:
    """Structure-aware mutations of a valid stored object: refused with
    `CorruptObjectError` naming the address, or decoded to exactly the
    original payload (only when the mutation kept it intact)."""

    @budget(slow, 400)
    @given(mutated_objects())
    def check(case: tuple[bytes, bytes, bytes, str]) -> None:
        address, payload, stored, _ = case
        ok, result = attempt(lambda: objects.decode(stored, address), TYPED)
        if ok:
            assert result == (objects.TYPE_VERSION, payload)
        else:
            assert isinstance(result, sentinel.CorruptObjectError)
            assert result.address == address.hex()

    check()


BOMBS = {
    "frame declares 4 GiB, holds 1000 bytes": (
        1000,
        _zstd_frame(4 << 30, 1000),
    ),
    "frame declares 2**63": (1000, _zstd_frame(2**63, 0)),
    "frame declares 2**64 - 1": (1000, _zstd_frame(2**64 - 1, 0)),
    "header declares 4 GiB - 1": (2**32 - 1, _zstd_frame(2**32 - 1, 0)),
    "frame without a size inflates to 4 GiB": (
        1000,
        _zstd_frame(None, 4 << 30),
    ),
    "header and frame agree on the limit": (
        objects.MAX_PAYLOAD,
        _zstd_frame(objects.MAX_PAYLOAD, objects.MAX_PAYLOAD),
    ),
    "header and frame agree past the limit": (
        objects.MAX_PAYLOAD + 1,
        _zstd_frame(objects.MAX_PAYLOAD + 1, objects.MAX_PAYLOAD + 1),
    ),
    "frame smaller than it declares": (
        1 << 20,
        _zstd_frame(1 << 20, 1000),
    ),
}


@pytest.mark.parametrize("label", list(BOMBS))
def test_object_decode_bombs_stay_bounded(label: str) -> None:
    """zstd frames that declare or inflate to gigabytes: refused, with
    the traced memory of decoding under 64 MiB (the limit is 16 MiB)."""
    length, body = BOMBS[label]
    stored = _header(1, 1, 0, length) + body
    address = blake3.blake3(label.encode()).digest()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        ok, result = attempt(lambda: objects.decode(stored, address), TYPED)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _counts["peak"] = max(_counts["peak"], peak)
    assert not ok and isinstance(result, sentinel.CorruptObjectError)
    assert peak < MEMORY_BOUND, f"{label}: peak {peak / 2**20:.1f} MiB"


# -- parse_version and codec.decode -------------------------------------------

DEEP = 100_000

# JSON that the read path must refuse (`CorruptObjectError`), by its own
# docstrings and the bad-input catalogue: NaN and infinities (a number
# that overflows to infinity included), invalid UTF-8 (an escaped lone
# surrogate is the same broken text, so it is included), and nesting
# the parser cannot handle.
MUST_REFUSE = {
    "NaN": b'{"a":NaN}',
    "Infinity": b'{"a":Infinity}',
    "-Infinity": b'{"a":-Infinity}',
    "1e400 overflows to inf": b'{"a":1e400}',
    "-1e400 overflows to -inf": b'{"a":[-1e400]}',
    "invalid UTF-8": b'{"a":"\xff"}',
    "overlong UTF-8": b'{"a":"\xc0\xaf"}',
    "UTF-8 encoded surrogate": b'{"a":"\xed\xa0\x80"}',
    "escaped lone high surrogate": b'{"a":"\\ud800"}',
    "escaped lone low surrogate": b'{"\\udc00":1}',
    "nesting 100,000 lists": b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}",
    "nesting 100,000 objects": b'{"a":'
    + b'{"a":' * DEEP
    + b"1"
    + b"}" * DEEP
    + b"}",
    "integer over 4,300 digits": b'{"a":' + b"9" * 5000 + b"}",
    "trailing bytes": b'{"a":1} x',
    "byte order mark": b'\xef\xbb\xbf{"a":1}',
    "empty": b"",
}
# Refused by `codec.decode` (its docstring), accepted on the read path by
# design (README, Caveats: non-canonical objects are found by verify).
STRICT_ONLY = {
    "duplicate key": b'{"a":1,"a":2}',
    "duplicate nested key": b'{"a":{"b":1,"b":1}}',
}


def _version_text(data: bytes) -> bytes:
    """A version payload whose data is the raw JSON text `data`."""
    fields = dict(VERSION_FIELDS, data={"__data__": 0})
    return _canonical_version(fields).replace(b'{"__data__":0}', data)


def _within_model(value: Any) -> bool:
    """Whether `value` is in the JSON model a read may return: finite
    numbers and text that is valid Unicode."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError):
        return False
    return True


@pytest.mark.parametrize("label", [*MUST_REFUSE, *STRICT_ONLY], ids=str)
def test_codec_decode_corpus(label: str) -> None:
    """`codec.decode`, the strict parser (config, documents of writes):
    refuses every entry of the corpus with `CorruptObjectError`."""
    text = {**MUST_REFUSE, **STRICT_ONLY}[label]
    ok, result = attempt(lambda: codec.decode(text, address="ab"), TYPED)
    assert not ok, f"codec.decode accepted {label}: {str(result)[:80]}"
    assert isinstance(result, sentinel.CorruptObjectError)


@pytest.mark.parametrize("label", [*MUST_REFUSE, *STRICT_ONLY], ids=str)
def test_parse_version_corpus(label: str) -> None:
    """The read path (`objects.parse_version`): refuses `MUST_REFUSE`;
    for duplicate keys, only the typed set may escape (by design)."""
    text = {**MUST_REFUSE, **STRICT_ONLY}[label]
    payload = _version_text(text)
    ok, result = attempt(
        lambda: objects.parse_version(payload, "ab" * 32), TYPED
    )
    if label in MUST_REFUSE:
        assert not ok, f"parse_version accepted {label}: {str(result)[:80]}"
        assert isinstance(result, sentinel.CorruptObjectError)
        assert result.address == "ab" * 32


def test_codec_decode_random(slow: bool) -> None:
    """Random bytes and JSON token soup: only `CorruptObjectError`
    escapes, and whatever is returned is finite, valid Unicode."""

    @budget(slow, 400)
    @given(st.one_of(st.binary(max_size=64), json_soup))
    @example(MUST_REFUSE["nesting 100,000 lists"])
    @example(MUST_REFUSE["integer over 4,300 digits"])
    @example(STRICT_ONLY["duplicate key"])
    @example(b'"\\ud800\\udc00"')
    # Found by this test: an escaped lone surrogate, and a number that
    # overflows to infinity, are returned (see MUST_REFUSE).
    @example(b'"\\ud800"')
    @example(b"1e400")
    def check(text: bytes) -> None:
        ok, result = attempt(lambda: codec.decode(text), TYPED)
        if ok:
            assert _within_model(result), repr(result)[:80]

    check()


def _stdlib_canonical(value: Any) -> bytes:
    """The canonical form as the spec words it, by the stdlib encoder."""
    return json.dumps(
        value,
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
        allow_nan=False,
    ).encode()


_EDGE_FLOATS = [
    0.0,
    -0.0,
    1e-4,
    math.nextafter(1e-4, 0.0),
    math.nextafter(1e-4, 1.0),
    1e16,
    math.nextafter(1e16, 0.0),
    5e-324,
    1.7976931348623157e308,
    0.1,
    1.5,
    123456789.125,
]


@pytest.mark.parametrize("number", _EDGE_FLOATS + [-x for x in _EDGE_FLOATS])
def test_canonical_floats_at_the_fast_path_edges(number: float) -> None:
    """Floats on both sides of the range orjson encodes for us are
    spelled as the spec says."""
    value = {"x": number, "list": [number, 1]}
    assert codec.canonical(value) == _stdlib_canonical(value)


def test_canonical_agrees_with_the_stdlib_encoder(slow: bool) -> None:
    """Whichever encoder `codec.canonical` picks, its bytes are the
    spec's: equal to the stdlib encoder with sorted keys, compact
    separators and no ASCII escaping."""
    text = st.text(
        st.characters(exclude_categories=("Cs",)), max_size=8
    ) | st.text(st.sampled_from('\x00\x1f\x7f"\\/\u2028\xe9\U0001f600'))

    @budget(slow, 300)
    @given(
        st.dictionaries(text, json_values, max_size=6),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    def check(value: dict[str, Any], number: float) -> None:
        assert codec.canonical(value) == _stdlib_canonical(value)
        value["number"] = number
        assert codec.canonical(value) == _stdlib_canonical(value)

    check()


def test_codec_decode_round_trip(slow: bool) -> None:
    """Every JSON value of the model, written by `json.dumps` (any
    spacing, ASCII escapes or not), reads back equal."""

    @budget(slow, 200)
    @given(json_values, st.booleans(), st.booleans())
    def check(value: Any, ascii_only: bool, spaced: bool) -> None:
        separators = (", ", ": ") if spaced else (",", ":")
        text = json.dumps(
            value, ensure_ascii=ascii_only, separators=separators
        ).encode()
        ok, result = attempt(lambda: codec.decode(text), TYPED)
        assert ok and result == value

    check()


@st.composite
def version_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a version object with zero or more of them replaced
    by arbitrary JSON, removed, or joined by an extra key."""
    fields = dict(VERSION_FIELDS)
    fields["data"] = draw(
        st.dictionaries(st.text(max_size=4), json_values, max_size=4)
    )
    fields["version"] = draw(st.integers(1, 2**64 - 1))
    fields["parent"] = draw(st.none() | st.just("ab" * 32))
    fields["deleted"] = draw(st.booleans())
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(VERSION_FIELDS) + ["extra"]))
        if draw(st.booleans()):
            fields.pop(key, None)
        else:
            fields[key] = draw(json_values)
    return fields


def _valid_version(fields: dict[str, Any]) -> bool:
    """The documented field rules of a version object."""
    return (
        fields.keys() == VERSION_FIELDS.keys()
        and type(fields["collection"]) is str
        and type(fields["id"]) is str
        and type(fields["version"]) is int
        and fields["version"] >= 1
        and (fields["parent"] is None or type(fields["parent"]) is str)
        and type(fields["created_at"]) is str
        and type(fields["updated_at"]) is str
        and type(fields["deleted"]) is bool
        and type(fields["data"]) is dict
    )


def test_parse_version_fields(slow: bool) -> None:
    """Version payloads with wrong, missing or extra fields: a payload
    that breaks a field rule is refused; one that returns gives back
    exactly its fields."""

    @budget(slow, 200)
    @given(version_fields())
    @example(dict(VERSION_FIELDS, version=True))
    @example(dict(VERSION_FIELDS, version=0))
    @example(dict(VERSION_FIELDS, deleted=0))
    @example(dict(VERSION_FIELDS, data=[]))
    @example(dict(VERSION_FIELDS, parent=1))
    def check(fields: dict[str, Any]) -> None:
        payload = _canonical_version(fields)
        ok, result = attempt(
            lambda: objects.parse_version(payload, "cd" * 32), TYPED
        )
        if not _valid_version(fields):
            assert not ok, f"accepted {fields}"
        if ok:
            version = result
            assert isinstance(version, objects.Version)
            assert {
                "collection": version.collection,
                "created_at": version.created_at,
                "data": version.data,
                "deleted": version.deleted,
                "id": version.id,
                "parent": version.parent,
                "updated_at": version.updated_at,
                "version": version.version,
            } == fields

    check()


def test_parse_version_random(slow: bool) -> None:
    """Random bytes, token soup and arbitrary JSON as version payloads:
    only `CorruptObjectError` escapes."""

    @budget(slow, 300)
    @given(
        st.one_of(
            st.binary(max_size=64),
            json_soup,
            json_values.map(lambda v: json.dumps(v).encode()),
            json_soup.map(_version_text),
        )
    )
    @example(_version_text(MUST_REFUSE["nesting 100,000 objects"]))
    def check(payload: bytes) -> None:
        attempt(lambda: objects.parse_version(payload, "ef" * 32), TYPED)

    check()


# -- journal, refs and table parsers ------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    """One of `sources` with one byte changed, then possibly cut short
    or lengthened by a few bytes."""
    data = draw(st.sampled_from(sources))
    at = draw(st.integers(0, len(data) - 1))
    mask = draw(st.integers(1, 255))
    out = data[:at] + bytes((data[at] ^ mask,)) + data[at + 1 :]
    change = draw(st.integers(-8, 8))
    if change < 0:
        return out[:change]
    return out + draw(st.binary(min_size=change, max_size=change))


def _frame_slices(frames: list[journal.Frame]) -> list[tuple[int, int]]:
    return [(f.offset, f.end) for f in frames]


def test_parse_frames_random(slow: bool) -> None:
    """Random bytes: `parse_frames` never raises, and every frame it
    yields checks (magic, both CRCs) and follows the previous one."""

    @budget(slow, 300)
    @given(
        st.binary(max_size=200)
        | st.lists(
            st.lists(st.binary(max_size=40), max_size=3).map(
                lambda bodies: journal.frame(
                    [journal.record(1, b) for b in bodies],
                    journal.PACK_HEADER_SIZE,
                )
            )
            | st.binary(max_size=20),
            max_size=4,
        ).map(b"".join)
    )
    @example(b"SNTF" + bytes(8))
    @example(b"SNTF" + struct.pack(">I", 2**32 - 1) + bytes(8))
    def check(data: bytes) -> None:
        ok, found = attempt(lambda: list(journal.parse_frames(data, 7, 0)), ())
        assert ok
        at = 0
        assert isinstance(found, list)
        for frame in found:
            assert frame.offset == at and frame.pack == 7
            whole = data[frame.offset : frame.end]
            assert whole[:4] == journal.FRAME_MAGIC
            assert zlib.crc32(frame.body).to_bytes(4, "big") == whole[-4:]
            at = frame.end

    check()


def test_parse_frames_mutated(sample: dict[str, Any], slow: bool) -> None:
    """Real frames with one byte changed, or cut: exactly the frames
    before the damage come back (a CRC-32 catches every one-byte
    change), and nothing is raised."""
    data: bytes = sample["frames_bytes"]
    base = journal.PACK_HEADER_SIZE
    originals = _frame_slices(sample["frames"])

    @budget(slow, 300)
    @given(
        st.integers(0, len(data) - 1),
        st.integers(1, 255),
        st.booleans(),
    )
    def check(at: int, mask: int, cut: bool) -> None:
        if cut:
            damaged = data[:at]
        else:
            damaged = data[:at] + bytes((data[at] ^ mask,)) + data[at + 1 :]
        intact = [(s, e) for s, e in originals if e - base <= at]
        ok, found = attempt(
            lambda: list(journal.parse_frames(damaged, 1, base)), ()
        )
        assert ok
        assert isinstance(found, list) and _frame_slices(found) == intact

    check()


def test_records_random(slow: bool) -> None:
    """Random frame bodies: `records` raises only `ValueError` (its
    documented contract), and yields only records whose CRC holds,
    except damaged object records when salvaging."""

    @budget(slow, 300)
    @given(
        st.binary(max_size=120)
        | st.lists(
            st.tuples(st.integers(0, 6), st.binary(max_size=40)).map(
                lambda kc: journal.record(*kc)
            ),
            max_size=4,
        ).map(b"".join),
        st.booleans(),
    )
    @example(struct.pack(">BII", 1, 2**32 - 1, 0), False)
    @example(struct.pack(">BII", 1, 0, 0), True)
    def check(body: bytes, salvage: bool) -> None:
        ok, found = attempt(
            lambda: list(journal.records(body, 100, salvage=salvage)),
            LOW_LEVEL,
        )
        if ok:
            assert isinstance(found, list)
            for item in found:
                assert item.kind in journal.RECORD_KINDS
                if not item.intact:
                    assert salvage and item.kind == journal.RECORD_OBJECT

    check()


def test_records_mutated(sample: dict[str, Any], slow: bool) -> None:
    """Real frame bodies with one byte changed (and maybe cut or
    lengthened): `ValueError`, or records that are each intact (or
    flagged, when salvaging)."""
    bodies = [f.body for f in sample["frames"] if len(f.body) > 9]

    @budget(slow, 300)
    @given(damaged(bodies), st.booleans())
    def check(body: bytes, salvage: bool) -> None:
        ok, found = attempt(
            lambda: list(journal.records(body, 0, salvage=salvage)),
            LOW_LEVEL,
        )
        if ok:
            assert isinstance(found, list)
            for item in found:
                assert item.intact or salvage

    check()


def test_decode_move(sample: dict[str, Any], slow: bool) -> None:
    """`refs.decode_move` on random bytes and on mutated real moves:
    only `ValueError` escapes, and a move that decodes names a valid
    collection and id.  Real moves decode."""
    moves: list[bytes] = sample["moves"]
    for content in moves:
        move = refs.decode_move(content)
        assert move.version >= 1

    @budget(slow, 300)
    @given(st.binary(max_size=120) | damaged(moves))
    @example(b"\x05users\x02u1")
    @example(b"\x05us\xffrs\x02u1" + bytes(81))
    @example(b"\xff")
    def check(content: bytes) -> None:
        ok, move = attempt(lambda: refs.decode_move(content), LOW_LEVEL)
        if ok:
            assert isinstance(move, refs.Move)
            names.collection_name(move.collection)
            names.document_id(move.id)

    check()


def _reseal(body: bytes) -> bytes:
    """A table body with a correct checksum: damage the CRC cannot see."""
    return body + blake3.blake3(body).digest()


def _past_time_past_int64(real: bytes) -> bytes:
    """The real table with the time of u0's first version set past
    2**63 - 1 and a correct checksum.  Found by `test_table_decode`:
    `table.decode` raised OverflowError."""
    past = table.decode(real).collections["users"].past["u0"]
    packed = struct.pack(">Q", past.times[0])
    body = real[:-32]
    assert body.count(packed) == 1
    return _reseal(body.replace(packed, struct.pack(">Q", 2**63 + 1)))


def test_table_decode(sample: dict[str, Any], slow: bool) -> None:
    """`table.decode` on random bytes, and on real tables mutated then
    given a correct checksum (so the parser itself is exercised): only
    `ValueError` escapes.  The real table decodes and re-encodes to the
    same bytes."""
    real: bytes = sample["table"]
    assert table.encode(table.decode(real)) == real
    body = real[:-32]

    @budget(slow, 300)
    @given(
        st.binary(max_size=200)
        | damaged([body]).map(_reseal)
        | st.binary(min_size=1, max_size=40).map(
            lambda extra: _reseal(body + extra)
        )
    )
    @example(_past_time_past_int64(real))
    @example(_reseal(table.MAGIC + b"\x01" + bytes(3 + 12) + b"\xff" * 4))
    @example(_reseal(table.MAGIC + b"\x01" + bytes(3 + 12 + 4) + b"\xff" * 8))
    def check(data: bytes) -> None:
        attempt(lambda: table.decode(data), LOW_LEVEL)

    check()


# -- config -------------------------------------------------------------------

CONFIG_CORPUS = {
    "empty": b"",
    "not JSON": b"sentinel",
    "null": b"null",
    "a list": b'["sentinel", 1]',
    "no format": b'{"version":1}',
    "other format": b'{"format":"git","version":1}',
    "version 2": None,
    "version as text": None,
    "unknown hash": None,
    "duplicate format key": b'{"format":"x","format":"sentinel","version":1}',
    "NaN version": b'{"format":"sentinel","version":NaN}',
    # Deep, but under the 64 KiB size limit, so the parser meets it.
    "deep nesting": b'{"format":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
    "invalid UTF-8": b'{"format":"sentinel\xff","version":1}',
    "over 64 KiB": b" " * (config.MAX_SIZE + 1),
}


def _config_bytes(label: str, good: bytes) -> bytes:
    raw = CONFIG_CORPUS[label]
    if raw is not None:
        return raw
    fields = json.loads(good)
    if label == "version 2":
        fields["version"] = 2
    elif label == "version as text":
        fields["version"] = "1"
    else:
        fields["hash"] = "sha256"
    return json.dumps(fields).encode()


def _open_with_config(root: Path, data: bytes) -> tuple[bool, Any]:
    (root / config.FILE_NAME).write_bytes(data)

    def run() -> bool:
        with sentinel.Store.new(root):
            return True

    return attempt(run, TYPED)


def _is_default(data: bytes) -> bool:
    """Whether `data` says what a good config says (by ==, as read)."""
    try:
        fields = json.loads(data)
    except ValueError:
        return False
    return type(fields) is dict and all(
        key in fields and fields[key] == value
        for key, value in config.DEFAULT.items()
    )


@pytest.mark.parametrize("label", list(CONFIG_CORPUS))
def test_bad_config_is_unsupported(sample: dict[str, Any], label: str) -> None:
    """A damaged or foreign ``sentinel.json``: `Store.new` raises
    `UnsupportedFormatError` before touching anything else."""
    root: Path = sample["root"]
    pack = (root / "objects" / journal.pack_name(1)).read_bytes()
    try:
        ok, result = _open_with_config(
            root, _config_bytes(label, sample["config"])
        )
    finally:
        (root / config.FILE_NAME).write_bytes(sample["config"])
    assert not ok and isinstance(result, sentinel.UnsupportedFormatError), (
        result
    )
    assert (root / "objects" / journal.pack_name(1)).read_bytes() == pack


def test_config_fuzz(sample: dict[str, Any], slow: bool) -> None:
    """Random configs (bytes, and JSON objects with each field replaced
    by arbitrary JSON): `UnsupportedFormatError`, or the store opens
    because the config says exactly what a good one says."""
    root: Path = sample["root"]
    good: dict[str, Any] = json.loads(sample["config"])

    configs = st.one_of(
        st.binary(max_size=80),
        json_soup,
        st.builds(
            lambda changes: json.dumps(
                {k: v for k, v in {**good, **changes}.items() if v != "-"}
            ).encode(),
            st.dictionaries(
                st.sampled_from(sorted(good) + ["extra"]),
                json_values | st.just("-"),
                max_size=3,
            ),
        ),
    )

    @budget(slow, 100)
    @given(configs)
    @example(sample["config"])
    @example(sample["config"].replace(b'"version":1', b'"version":1.0'))
    def check(data: bytes) -> None:
        ok, result = _open_with_config(root, data)
        if ok:
            assert _is_default(data), f"opened with config {data!r}"
        else:
            assert isinstance(result, sentinel.UnsupportedFormatError)

    try:
        check()
    finally:
        (root / config.FILE_NAME).write_bytes(sample["config"])
    assert os.path.exists(root / "objects" / journal.pack_name(1))
