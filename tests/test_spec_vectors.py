"""The format spec, its test vectors and the code, checked against each
other.

``objects_spec/vectors.json`` holds exact bytes for canonical JSON,
version objects, stored objects, records, frames, packs, a whole store
and its ref table; ``objects_spec/README.md`` is the normative text.
These tests rebuild every vector with the library and compare byte for
byte, parse the bytes again by the README's layout tables (without the
library's parsers), open the vector store, check the canonical JSON
rules directly, and check that every constant and fixed layout the
README states matches the code.  Spec, vectors and code therefore cannot
drift apart silently.

Compressed bodies are the one exception: zstd's output may change with
the zstd library version, so they are compared as "a single zstd frame
that declares its size and decodes to the payload", never byte for byte.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import pathlib
import random
import re
import struct
import zlib
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import blake3
import pytest
import zstandard

import sentinel
from sentinel import (
    codec,
    config,
    engine,
    fs,
    journal,
    names,
    objects,
    refs,
    table,
)
from sentinel.errors import (
    CorruptObjectError,
    DocumentTooLargeError,
    InvalidDocumentError,
    UnsupportedFormatError,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "objects_spec"
VECTORS_PATH = SPEC_DIR / "vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text("utf-8"))
README = (SPEC_DIR / "README.md").read_text("utf-8")
ENCRYPTION_SPEC = (SPEC_DIR / "encryption.md").read_text("utf-8")
DOCS: list[dict[str, Any]] = VECTORS["documents"]
BY_NAME = {doc["name"]: doc for doc in DOCS}
# The compressed body of each stored object, by payload.
FROZEN = {
    doc["payload_hex"]: bytes.fromhex(doc["stored_hex"])[objects.HEADER_SIZE :]
    for doc in DOCS
}


# Standalone frame vectors are the first write of a pack.
FIRST = journal.PACK_HEADER_SIZE


def _generator() -> ModuleType:
    path = ROOT / "tools" / "make_vectors.py"
    spec = importlib.util.spec_from_file_location("make_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


def same(left: Any, right: Any) -> bool:
    """Equality that also tells 1 from 1.0, and 0.0 from -0.0."""
    if type(left) is not type(right):
        return False
    if type(left) is float:
        return bool(left.hex() == right.hex())
    if type(left) is dict:
        return left.keys() == right.keys() and all(
            same(left[key], right[key]) for key in left
        )
    if type(left) is list:
        return len(left) == len(right) and all(
            same(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


def u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "big")


def crc(data: bytes) -> int:
    return zlib.crc32(data)


# -- readers written from the README alone ---------------------------------


def spec_object(stored: bytes) -> dict[str, Any]:
    """Parse a stored object by the README's "Stored objects" table."""
    assert stored[0:4] == b"SNTO"
    return {
        "type": stored[4],
        "encoding": stored[5],
        "flags": stored[6],
        "reserved": stored[7],
        "length": u32(stored, 8),
        "body": stored[12:],
    }


def spec_records(body: bytes) -> list[tuple[int, bytes]]:
    """Split a frame body into (kind, content) by the "Records" table."""
    found = []
    at = 0
    while at < len(body):
        kind = body[at]
        size = u32(body, at + 1)
        content = body[at + 9 : at + 9 + size]
        assert len(content) == size, "record runs past its frame"
        assert crc(content) == u32(body, at + 5), "record CRC"
        found.append((kind, content))
        at += 9 + size
    return found


def spec_frames(data: bytes) -> list[list[tuple[int, bytes]]]:
    """Split consecutive frames by the "Frames" table; all must be
    valid and fill `data` exactly."""
    frames = []
    at = 0
    while at < len(data):
        assert data[at : at + 4] == b"SNTF"
        length = u32(data, at + 4)
        assert u32(data, at + 12) == crc(data[at : at + 12]), "header CRC"
        body = data[at + 16 : at + 16 + length]
        assert len(body) == length
        assert u32(data, at + 16 + length) == crc(body), "body CRC"
        frames.append(spec_records(body))
        at += 16 + length + 4
    assert at == len(data)
    return frames


def spec_move(content: bytes) -> dict[str, Any]:
    """Parse a ref-move record's content by the "Ref moves" tables."""
    size = content[0]
    collection = content[1 : 1 + size].decode("ascii")
    at = 1 + size
    size = content[at]
    doc_id = content[at + 1 : at + 1 + size].decode("ascii")
    tail = content[at + 1 + size :]
    assert len(tail) == 81
    assert tail[80] & 0xFE == 0, "undefined flag bits"
    old = tail[32:64]
    return {
        "collection": collection,
        "id": doc_id,
        "new": tail[0:32].hex(),
        "old": None if old == bytes(32) else old.hex(),
        "version": u64(tail, 64),
        "time": u64(tail, 72),
        "deleted": bool(tail[80] & 1),
    }


def spec_table(data: bytes) -> dict[str, Any]:
    """Parse a ref table by "The ref table" section, into the same shape
    as the vectors' ``state``."""
    body, digest = data[:-32], data[-32:]
    assert blake3.blake3(body).digest() == digest
    assert body[0:4] == b"SNTT" and body[4] in (1, 2)
    assert body[5:8] == bytes(3)
    at = 20

    def name() -> str:
        nonlocal at
        size = body[at]
        text = body[at + 1 : at + 1 + size].decode("ascii")
        at += 1 + size
        return text

    def collection() -> dict[str, Any]:
        nonlocal at
        heads: list[dict[str, Any]] = []
        count = u32(body, at)
        at += 4
        for _ in range(count):
            doc_id = name()
            past: list[dict[str, Any]] = []
            heads.append(
                {
                    "id": doc_id,
                    "address": body[at : at + 32].hex(),
                    "version": u64(body, at + 32),
                    "time": u64(body, at + 40),
                    "deleted": bool(body[at + 48] & 1),
                    "past": past,
                }
            )
            at += 49
            older = u32(body, at)
            at += 4
            assert older == heads[-1]["version"] - 1
            for _ in range(older):
                past.append(
                    {
                        "address": body[at : at + 32].hex(),
                        "time": u64(body, at + 32),
                        "deleted": bool(body[at + 40] & 1),
                    }
                )
                at += 41
        return {"heads": heads, "indexes": []}

    groups: list[dict[str, dict[str, Any]]] = []
    for _ in range(2):
        group: dict[str, dict[str, Any]] = {}
        count = u32(body, at)
        at += 4
        for _ in range(count):
            key = name()
            group[key] = collection()
        groups.append(group)
    count = u64(body, at)
    at += 8
    places: list[dict[str, Any]] = []
    for _ in range(count):
        places.append(
            {
                "address": body[at : at + 32].hex(),
                "pack": u32(body, at + 32),
                "offset": u64(body, at + 36),
                "length": u32(body, at + 44),
            }
        )
        at += 48
    if body[4] == 2:
        definitions = []
        count = u32(body, at)
        at += 4
        for _ in range(count):
            group_number = body[at]
            at += 1
            key = name()
            size = int.from_bytes(body[at : at + 2], "big")
            path = body[at + 2 : at + 2 + size].decode("utf-8")
            at += 2 + size
            definitions.append((group_number, key, path))
            groups[group_number][key]["indexes"].append(path)
        assert definitions and definitions == sorted(definitions)
    assert at == len(body)
    return {
        "position": [u32(body, 8), u64(body, 12)],
        "collections": groups[0],
        "dropped": groups[1],
        "objects": places,
    }


# -- the file as a whole -----------------------------------------------------


def test_vectors_file_is_what_the_generator_makes() -> None:
    rebuilt = GENERATOR.build(compress=lambda payload: FROZEN[payload.hex()])
    assert rebuilt == VECTORS
    assert GENERATOR.render(rebuilt) == VECTORS_PATH.read_text("utf-8")


def test_crc32_is_the_zlib_variant() -> None:
    check = VECTORS["checks"]["crc32"]
    assert check["crc32_hex"] == "cbf43926"
    assert crc(check["input"].encode()) == int(check["crc32_hex"], 16)


# -- canonical JSON ----------------------------------------------------------


@pytest.mark.parametrize(
    "case", VECTORS["canonical_json"], ids=lambda case: case["name"]
)
def test_canonical_vector(case: dict[str, Any]) -> None:
    expected = bytes.fromhex(case["canonical_hex"])
    assert case["canonical"].encode("utf-8") == expected
    value = json.loads(case["input"])
    assert codec.canonical(value) == expected
    assert codec.canonical_document(value) == expected

    # Canonical text reads back to the very same value (floats stay
    # floats, -0.0 stays -0.0) and is its own canonical form.
    again = json.loads(expected.decode("utf-8"))
    assert same(again, value)
    assert codec.canonical(again) == expected
    assert same(codec.decode(expected), value)


@pytest.mark.parametrize(
    "case", VECTORS["rejected"], ids=lambda case: case["name"]
)
def test_rejected_vector(case: dict[str, Any]) -> None:
    value = json.loads(case["input"])
    with pytest.raises(InvalidDocumentError):
        codec.canonical_document(value)
    if type(value) is dict:
        with pytest.raises(InvalidDocumentError):
            codec.canonical(value)


def test_keys_sort_by_code_point_not_utf16() -> None:
    keys = ["\U0001f600", "\uff01", "\ue000", "a", "B", "\u00e9", ""]
    encoded = codec.canonical(dict.fromkeys(keys, 0))
    by_code_point = sorted(keys)
    assert encoded == (
        "{" + ",".join(f'"{key}":0' for key in by_code_point) + "}"
    ).encode("utf-8")
    assert by_code_point.index("\uff01") < by_code_point.index("\U0001f600")

    # RFC 8785 sorts by UTF-16 code units, where the surrogate pair of
    # U+1F600 (0xD83D ...) comes before U+E000 and U+FF01.
    def utf16(key: str) -> bytes:
        return key.encode("utf-16-be")

    assert sorted(keys, key=utf16) != by_code_point
    # Code point order is also the order of the UTF-8 bytes.
    assert sorted(keys, key=lambda key: key.encode()) == by_code_point


SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f"}
SHORT_ESCAPES[0x0D] = "\\r"


@pytest.mark.parametrize("point", range(0x20))
def test_control_characters_are_escaped(point: int) -> None:
    expected = SHORT_ESCAPES.get(point, f"\\u{point:04x}")
    assert codec.canonical([chr(point)]) == f'["{expected}"]'.encode()


def test_only_quote_backslash_and_controls_are_escaped() -> None:
    assert codec.canonical(['"']) == b'["\\""]'
    assert codec.canonical(["\\"]) == b'["\\\\"]'
    kept = "/\x7f\x80\u00e9\u2028\u2029\ufeff\uffff\U0001f600\U0010ffff"
    assert codec.canonical([kept]) == b'["' + kept.encode("utf-8") + b'"]'
    assert codec.canonical({"\n": "\u00e9"}) == '{"\\n":"\u00e9"}'.encode()


FLOAT_FORMS = [
    (0.0, "0.0"),
    (-0.0, "-0.0"),
    (1.0, "1.0"),
    (100.0, "100.0"),
    (0.1, "0.1"),
    (1e-4, "0.0001"),
    (1e-5, "1e-05"),
    (1.5e-7, "1.5e-07"),
    (5e-324, "5e-324"),
    (1e15, "1000000000000000.0"),
    (9999999999999998.0, "9999999999999998.0"),
    (1e16, "1e+16"),
    (1e22, "1e+22"),
    (1e100, "1e+100"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (2.0**63, "9.223372036854776e+18"),
    (123456789.125, "123456789.125"),
    (-2.5e-10, "-2.5e-10"),
]


@pytest.mark.parametrize(("value", "text"), FLOAT_FORMS)
def test_float_forms(value: float, text: str) -> None:
    assert codec.canonical([value]) == f"[{text}]".encode()
    assert same(json.loads(text), value)


_POSITIONAL = re.compile(r"-?(0|[1-9][0-9]*)\.([0-9]*[1-9]|0)")
_EXPONENT = re.compile(r"-?[1-9](\.[0-9]*[1-9])?e[+-][0-9]{2,3}")


def _check_float_rule(value: float) -> None:
    text = codec.canonical([value])[1:-1].decode()
    assert same(json.loads(text), value), text
    magnitude = abs(value)
    if magnitude == 0.0 or 1e-4 <= magnitude < 1e16:
        assert _POSITIONAL.fullmatch(text), text
    else:
        assert _EXPONENT.fullmatch(text), text
        assert int(text.split("e")[1]) != 0

    # Shortest: the nearest decimal with one significant digit fewer
    # does not read back as the same float.
    digits = re.sub(r"e.*|[-.]", "", text).lstrip("0") or "0"
    digits = digits.rstrip("0") or "0"
    if len(digits) > 1:
        shorter = float(f"{value:.{len(digits) - 2}e}")
        assert shorter != value, text


def test_float_rule_on_random_doubles() -> None:
    rng = random.Random(20261203)
    checked = 0
    while checked < 3000:
        (value,) = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))
        if value != value or value in (float("inf"), float("-inf")):
            continue
        _check_float_rule(value)
        checked += 1
    # The floats on either side of the two thresholds where the form
    # changes from exponent to positional and back.
    for threshold in (1e-4, 1e16):
        for direction in (0.0, math.inf):
            value = threshold
            for _ in range(4):
                _check_float_rule(value)
                _check_float_rule(-value)
                value = math.nextafter(value, direction)


def test_integers_within_64_bits() -> None:
    assert codec.canonical([2**64 - 1]) == b"[18446744073709551615]"
    assert codec.canonical([-(2**63)]) == b"[-9223372036854775808]"
    assert codec.canonical([2**53 + 1]) == b"[9007199254740993]"
    assert codec.canonical([True, False, None, 0]) == b"[true,false,null,0]"
    for value in (2**64, -(2**63) - 1, 10**400):
        with pytest.raises(InvalidDocumentError):
            codec.canonical([value])
        with pytest.raises(InvalidDocumentError):
            codec.canonical({"deep": [{"n": value}]})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinity_refused(value: float) -> None:
    with pytest.raises(InvalidDocumentError):
        codec.canonical([value])
    with pytest.raises(InvalidDocumentError):
        codec.canonical_document({"a": [{"b": value}]})


def _nested(containers: int) -> dict[str, Any]:
    value: Any = []
    for _ in range(containers - 2):
        value = [value]
    return {"d": value}


def test_depth_limit() -> None:
    assert codec.MAX_DEPTH == 128
    codec.canonical_document(_nested(codec.MAX_DEPTH))
    with pytest.raises(InvalidDocumentError):
        codec.canonical_document(_nested(codec.MAX_DEPTH + 1))


def test_size_limit_counts_utf8_bytes() -> None:
    frame = len(b'{"s":""}')
    exact = {"s": "x" * (codec.MAX_DOCUMENT - frame)}
    assert len(codec.canonical_document(exact)) == codec.MAX_DOCUMENT
    with pytest.raises(DocumentTooLargeError):
        codec.canonical_document({"s": "x" * (codec.MAX_DOCUMENT - frame + 1)})
    # Fewer characters than the limit, more bytes than it.
    wide = {"s": "\u00e9" * ((codec.MAX_DOCUMENT - frame) // 2 + 1)}
    with pytest.raises(DocumentTooLargeError):
        codec.canonical_document(wide)


@pytest.mark.parametrize(
    "value",
    [
        {"s": "\ud800"},
        {1: "a"},
        {True: 1},
        {"t": (1, 2)},
        {"b": b"x"},
        {"s": {1, 2}},
    ],
    ids=["surrogate", "int-key", "bool-key", "tuple", "bytes", "set"],
)
def test_values_outside_the_model_refused(value: Any) -> None:
    with pytest.raises(InvalidDocumentError):
        codec.canonical_document(value)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":1e400}',
        b'{"s":"\\ud800"}',
        b'{"s":"\\uDFFF"}',
        b'{"a":1} x',
        b'{"a":"\xff"}',
    ],
    ids=[
        "nan",
        "infinity",
        "overflow",
        "surrogate",
        "surrogate-upper",
        "trailing",
        "utf8",
    ],
)
def test_payloads_refused_on_read(payload: bytes) -> None:
    for decode in (codec.decode, codec.decode_verified):
        with pytest.raises(CorruptObjectError):
            decode(payload)


@pytest.mark.parametrize(
    "value",
    [
        codec.MIN_INT,
        codec.MAX_INT,
        -1,
        0.0,
        -0.0,
        5e-324,
        1.7976931348623157e308,
        0.1,
        1e16,
        1e-7,
        123456789.123456789,
        '\U0001f600 \u00e9 \u0000 \u001f \\ "',
        [True, False, None, {}, []],
    ],
)
def test_both_readers_agree_exactly(value: Any) -> None:
    # The read path (decode_verified) and the strict reader (decode)
    # must give the same types and bits for everything a writer writes.
    payload = codec.canonical_document({"v": value})
    assert same(codec.decode_verified(payload), codec.decode(payload))
    assert same(codec.decode_verified(payload), {"v": value})


def test_verified_read_of_a_forged_payload() -> None:
    # What decode_verified lets through (see its docstring) is only
    # what a writer of ours never produces; decode refuses both.
    assert codec.decode_verified(b'{"a":1,"a":2}') == {"a": 2}
    assert type(codec.decode_verified(b"[18446744073709551616]")[0]) is float
    with pytest.raises(CorruptObjectError):
        codec.decode(b'{"a":1,"a":2}')
    with pytest.raises(ValueError):
        codec.canonical_document({"a": 2**64})


def test_escaped_backslash_before_u_is_not_a_surrogate() -> None:
    assert codec.decode(b'{"s":"\\\\ud800"}') == {"s": "\\ud800"}


def test_duplicate_keys_refused_on_read() -> None:
    with pytest.raises(CorruptObjectError):
        codec.decode(b'{"a":1,"a":2}')


def test_ref_move_limits_refused_on_read() -> None:
    address = bytes(range(32))
    good = refs.encode_move("users", "x", address, None, 1, 0, False)
    assert refs.decode_move(good).time == 0
    too_late = refs.encode_move(
        "users", "x", address, None, 1, refs.MAX_TIME, False
    )
    bad_flags = good[:-1] + b"\x02"
    version_zero = refs.encode_move("users", "x", address, None, 0, 0, False)
    bad_name = refs.encode_move("CON", "x", address, None, 1, 0, False)
    for content in (too_late, bad_flags, version_zero, bad_name, good[:-1]):
        with pytest.raises(ValueError):
            refs.decode_move(content)


# -- version objects, stored objects, records, frames ----------------------


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc["name"])
def test_version_object_vector(doc: dict[str, Any]) -> None:
    fields = doc["version"]
    data = json.loads(doc["input"])
    body = codec.canonical_document(data)
    assert body.hex() == doc["canonical_hex"]
    assert doc["canonical"].encode("utf-8") == body

    parent = bytes.fromhex(fields["parent"]) if fields["parent"] else None
    payload = objects.version_payload(
        fields["collection"],
        fields["id"],
        fields["version"],
        parent,
        fields["created_at"],
        fields["updated_at"],
        fields["deleted"],
        body,
    )
    assert payload.hex() == doc["payload_hex"]
    assert doc["payload"].encode("utf-8") == payload
    assert payload == codec.canonical(
        {
            "collection": fields["collection"],
            "created_at": fields["created_at"],
            "data": data,
            "deleted": fields["deleted"],
            "id": fields["id"],
            "parent": fields["parent"],
            "updated_at": fields["updated_at"],
            "version": fields["version"],
        }
    )

    typed = b"version %d\x00" % len(payload) + payload
    assert typed.hex() == doc["typed_content_hex"]
    assert doc["typed_content_prefix"] == f"version {len(payload)}\\0"
    assert blake3.blake3(typed).hexdigest() == doc["address"]
    address = objects.address_of(objects.TYPE_VERSION, payload)
    assert address.hex() == doc["address"]

    parsed = objects.parse_version(payload, doc["address"])
    assert parsed.collection == fields["collection"]
    assert parsed.id == fields["id"]
    assert parsed.version == fields["version"]
    assert parsed.parent == fields["parent"]
    assert parsed.created_at == fields["created_at"]
    assert parsed.updated_at == fields["updated_at"]
    assert parsed.deleted is fields["deleted"]
    assert same(parsed.data, data)


def test_version_chain_rules() -> None:
    """Parents, versions and timestamps along each document's history."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in DOCS:
        fields = doc["version"]
        key = (fields["collection"], fields["id"])
        previous = last.get(key)
        if previous is None:
            assert fields["version"] == 1 and fields["parent"] is None
            assert fields["created_at"] == fields["updated_at"]
        else:
            before = previous["version"]
            assert fields["version"] == before["version"] + 1
            assert fields["parent"] == previous["address"]
            assert fields["updated_at"] >= before["updated_at"]
            if before["deleted"]:
                assert fields["created_at"] == fields["updated_at"]
            else:
                assert fields["created_at"] == before["created_at"]
        if fields["deleted"]:
            assert doc["canonical"] == "{}"
        last[key] = doc


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc["name"])
def test_stored_object_vector(doc: dict[str, Any]) -> None:
    payload = bytes.fromhex(doc["payload_hex"])
    address = bytes.fromhex(doc["address"])
    stored = bytes.fromhex(doc["stored_hex"])
    header = bytes.fromhex(doc["stored_header_hex"])
    assert header == b"SNTO" + bytes((1, 1, 0, 0)) + struct.pack(
        ">I", len(payload)
    )
    assert stored[: objects.HEADER_SIZE] == header
    fields = spec_object(stored)
    assert fields["length"] == len(payload)

    # The library's own output: header exact, body only "decodes to".
    ours_address, ours = objects.encode(objects.TYPE_VERSION, payload)
    assert ours_address == address
    assert ours[: objects.HEADER_SIZE] == header
    for candidate in (stored, ours):
        body = candidate[objects.HEADER_SIZE :]
        parameters = zstandard.get_frame_parameters(body)
        assert parameters.content_size == len(payload)
        assert parameters.dict_id == 0
        reader = zstandard.ZstdDecompressor().decompressobj()
        assert reader.decompress(body) == payload
        assert reader.eof and reader.unused_data == b""
        assert objects.decode(candidate, address) == (
            objects.TYPE_VERSION,
            payload,
        )

    identity = bytes.fromhex(doc["stored_identity_hex"])
    assert (
        identity
        == b"SNTO"
        + bytes((1, 0, 0, 0))
        + struct.pack(">I", len(payload))
        + payload
    )
    assert objects.decode(identity, address) == (objects.TYPE_VERSION, payload)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc["name"])
def test_record_and_frame_vector(doc: dict[str, Any]) -> None:
    address = bytes.fromhex(doc["address"])
    stored = bytes.fromhex(doc["stored_hex"])
    move = doc["ref_move"]
    fields = doc["version"]
    old = bytes.fromhex(move["old"]) if move["old"] else None
    assert move["new"] == doc["address"]
    assert move["old"] == fields["parent"]
    assert move["version"] == fields["version"]
    assert move["deleted"] is fields["deleted"]
    stamp = datetime.fromisoformat(fields["updated_at"])
    assert move["time"] == engine.to_micros(stamp)
    epoch = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    assert epoch + timedelta(microseconds=move["time"]) == stamp

    content = refs.encode_move(
        move["collection"],
        move["id"],
        address,
        old,
        move["version"],
        move["time"],
        move["deleted"],
    )
    assert content.hex() == move["content_hex"]
    assert refs.decode_move(content) == refs.Move(
        move["collection"],
        move["id"],
        address,
        old,
        move["version"],
        move["time"],
        move["deleted"],
    )
    parsed = spec_move(content)
    assert parsed == {key: move[key] for key in parsed}

    object_record = journal.record(journal.RECORD_OBJECT, address + stored)
    assert object_record.hex() == doc["object_record_hex"]
    move_record = journal.record(journal.RECORD_REF, content)
    assert move_record.hex() == move["record_hex"]
    whole = journal.frame([object_record, move_record], FIRST)
    assert whole.hex() == doc["frame_hex"]

    [records] = spec_frames(whole)
    assert records == [(1, address + stored), (2, content)]
    [found] = journal.parse_frames(whole, 1, 0)
    kinds = [item.kind for item in journal.records(found.body, 16)]
    assert kinds == [journal.RECORD_OBJECT, journal.RECORD_REF]


def test_pack_headers_and_seal() -> None:
    packs = VECTORS["packs"]
    for number in (1, 2):
        header = bytes.fromhex(packs[f"header_{number}_hex"])
        assert header == journal.pack_header(number)
        assert header[0:4] == b"SNTP" and header[4] == 1
        assert header[5:8] == bytes(3)
        assert u32(header, 8) == number
        assert u32(header, 12) == crc(header[:12])

    seal = packs["seal_1_to_2"]
    content = struct.pack(">I", 2)
    assert seal["content_hex"] == content.hex()
    record = journal.record(journal.RECORD_SEAL, content)
    assert seal["record_hex"] == record.hex()
    assert seal["frame_hex"] == journal.frame([record], FIRST).hex()
    assert spec_frames(bytes.fromhex(seal["frame_hex"])) == [[(4, content)]]


@pytest.mark.parametrize(
    "name", sorted(VECTORS["collection_records"]), ids=str
)
def test_collection_record_vector(name: str) -> None:
    case = VECTORS["collection_records"][name]
    operation, collection = case["operation"], case["name"]
    if "path" in case:
        path = case["path"]
        content = refs.encode_index(operation, collection, path)
        assert content == bytes((operation, len(collection))) + (
            collection.encode() + path.encode("utf-8")
        )
        assert refs.decode_index(content) == (operation, collection, path)
    else:
        content = refs.encode_collection(operation, collection)
        assert content == bytes((operation,)) + collection.encode()
        assert refs.decode_collection(content) == (operation, collection)
    assert content.hex() == case["content_hex"]
    record = journal.record(journal.RECORD_COLLECTION, content)
    assert record.hex() == case["record_hex"]
    assert journal.frame([record], FIRST).hex() == case["frame_hex"]
    frame_bytes = bytes.fromhex(case["frame_hex"])
    assert spec_frames(frame_bytes) == [[(3, content)]]


# -- a whole store -----------------------------------------------------------


def write_store(root: pathlib.Path, *, with_table: bool) -> None:
    image = VECTORS["store"]
    for folder in image["directories"]:
        (root / folder).mkdir(parents=True)
    for relative, data in image["files"].items():
        (root / relative).write_bytes(bytes.fromhex(data))
    if with_table:
        (root / image["ref_table"]["path"]).write_bytes(
            bytes.fromhex(image["ref_table"]["hex"])
        )


def test_store_image_by_spec() -> None:
    files = VECTORS["store"]["files"]
    pack1 = bytes.fromhex(files["objects/pack-00000001.pack"])
    pack2 = bytes.fromhex(files["objects/pack-00000002.pack"])
    first = spec_frames(pack1[16:])
    second = spec_frames(pack2[16:])
    assert first[0] == [(3, b"\x01users")]
    assert first[-1] == [(4, struct.pack(">I", 2))]
    assert second[0] == [(3, b"\x01logs")]
    assert second[-1] == [(3, b"\x02logs")]
    for doc in DOCS:
        where = doc["location"]
        data = pack1 if where["pack"] == 1 else pack2
        stored = data[where["offset"] : where["offset"] + where["length"]]
        assert stored.hex() == doc["stored_hex"]
        assert (
            data[where["offset"] - 32 : where["offset"]].hex()
            == (doc["address"])
        )
    assert VECTORS["store"]["state"]["position"] == [2, len(pack2)]


@pytest.mark.parametrize("with_table", [False, True], ids=["replay", "table"])
def test_store_image_opens(tmp_path: pathlib.Path, with_table: bool) -> None:
    root = tmp_path / "store"
    write_store(root, with_table=with_table)
    expected_state = VECTORS["store"]["state"]
    with sentinel.Store.new(root) as store:
        state = store._engine.state
        assert GENERATOR.describe_state(state) == expected_state
        assert store._engine.table_problem is None
        assert (
            table.encode(state).hex() == VECTORS["store"]["ref_table"]["hex"]
        )
        assert store.list_collections() == ["users"]

        users = store.collection("users")
        assert users.list_indexes() == ["name"]
        for doc in DOCS:
            fields = doc["version"]
            if fields["collection"] != "users":
                continue
            got = users.get(fields["id"], version=fields["version"])
            if fields["deleted"]:
                assert got is None
                continue
            assert got is not None
            assert got.hash == doc["address"]
            assert got.version == fields["version"]
            assert got.created_at == fields["created_at"]
            assert got.updated_at == fields["updated_at"]
            assert same(got.data, json.loads(doc["input"]))
        chain = [
            BY_NAME[name]["address"]
            for name in (
                "simple_v4_after_tombstone",
                "simple_v3_tombstone",
                "simple_v2",
                "simple",
            )
        ]
        assert [doc.hash for doc in users.history("user-123")] == chain
        assert users.count() == 6
        assert users.get_at("user-123", "2024-01-01T00:00:00+00:00") is None
        at_t1 = users.get_at(
            "user-123", BY_NAME["simple_v2"]["version"]["updated_at"]
        )
        assert at_t1 is not None and at_t1.version == 2
        tombstone = BY_NAME["simple_v3_tombstone"]["version"]["updated_at"]
        assert users.get_at("user-123", tombstone) is None

        report = store.verify()
        assert report.ok, report.problems
        assert report.packs == 2 and report.objects == len(DOCS)


@pytest.mark.parametrize(
    ("table_key", "state_key", "layout"),
    [
        ("ref_table", "state", table.FORMAT_INDEXES),
        ("ref_table_after_pack_1", "state_after_pack_1", table.FORMAT),
    ],
    ids=["final", "after-pack-1"],
)
def test_ref_table_vector(table_key: str, state_key: str, layout: int) -> None:
    vector = VECTORS["store"][table_key]
    data = bytes.fromhex(vector["hex"])
    expected = VECTORS["store"][state_key]
    assert vector["format"] == layout == data[4]
    assert spec_table(data) == expected
    state = table.decode(data)
    assert GENERATOR.describe_state(state) == expected
    assert table.encode(state) == data
    for index in (0, 5, 9, 20, len(data) // 2, len(data) - 33, len(data) - 1):
        broken = bytearray(data)
        broken[index] ^= 0x01
        with pytest.raises(ValueError):
            table.decode(bytes(broken))


# -- the config file ---------------------------------------------------------


def test_config_vector(tmp_path: pathlib.Path) -> None:
    data = bytes.fromhex(VECTORS["config"]["hex"])
    assert VECTORS["config"]["text"].encode() == data
    assert config.encode(config.DEFAULT) == data
    assert data == codec.canonical(json.loads(data)) + b"\n"
    (tmp_path / config.FILE_NAME).write_bytes(data)
    assert config.read(str(tmp_path)) == config.DEFAULT


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"version": "1"},
        {"version": None},
        {"format": "other"},
        {"hash": "sha256"},
        {"compression": "none"},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
def test_unknown_config_refused(
    tmp_path: pathlib.Path, change: dict[str, Any]
) -> None:
    path = tmp_path / config.FILE_NAME
    path.write_bytes(config.encode({**config.DEFAULT, **change}))
    with pytest.raises(UnsupportedFormatError):
        config.read(str(tmp_path))
    with pytest.raises(UnsupportedFormatError):
        sentinel.Store.new(tmp_path)
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [
        config.FILE_NAME
    ]


# -- the README against the code ---------------------------------------------

MODULES: dict[str, ModuleType] = {
    "codec": codec,
    "config": config,
    "engine": engine,
    "fs": fs,
    "journal": journal,
    "names": names,
    "objects": objects,
    "refs": refs,
    "table": table,
}
# Public constants that are not part of the format: a flag for open(2),
# and the field indexes of the in-memory head tuple.
NOT_FORMAT = {
    ("fs", "O_CLOEXEC"),
    ("refs", "HEAD_ADDRESS"),
    ("refs", "HEAD_VERSION"),
    ("refs", "HEAD_DELETED"),
    ("refs", "HEAD_TIME"),
}
# Stated in the README in words rather than in the constants table.
IN_WORDS = {("refs", "NO_ADDRESS"): "32 zero bytes"}

_CONSTANT_ROW = re.compile(r"^\| `(\w+)\.(\w+)` \| `([^`]*)` \|", re.MULTILINE)


def documented_constants() -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for module, name, value in _CONSTANT_ROW.findall(README):
        assert (module, name) not in found, f"{module}.{name} listed twice"
        found[(module, name)] = ast.literal_eval(value)
    return found


def test_readme_constants_match_the_code() -> None:
    documented = documented_constants()
    assert len(documented) >= 30
    for (module, name), value in documented.items():
        actual = getattr(MODULES[module], name)
        assert type(actual) is type(value), f"{module}.{name}"
        assert actual == value, f"{module}.{name}: README {value!r}"


def encryption_constants() -> dict[tuple[str, str], Any]:
    """The constants table of ``objects_spec/encryption.md``, which
    extends this format (checked against the code by
    tests/test_encryption_spec.py)."""
    found: dict[tuple[str, str], Any] = {}
    for module, name, value in _CONSTANT_ROW.findall(ENCRYPTION_SPEC):
        found[(module, name)] = ast.literal_eval(value)
    return found


def test_readme_lists_every_public_constant() -> None:
    public = {
        (module_name, name)
        for module_name, module in MODULES.items()
        for name, value in vars(module).items()
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
        and type(value) in (int, bytes, str)
    }
    documented = set(documented_constants()) | set(encryption_constants())
    missing = public - NOT_FORMAT - set(IN_WORDS) - documented
    assert not missing, f"constants missing from the README: {missing}"
    for (module, name), words in IN_WORDS.items():
        assert getattr(MODULES[module], name) == bytes(32)
        assert words in README


def struct_sizes(layout: struct.Struct) -> list[int]:
    """The size of each field of a big-endian struct, pads included."""
    assert layout.format[0] == ">"
    sizes = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", layout.format[1:]):
        number = int(count) if count else 1
        if code in "spx":
            sizes.append(number)
        else:
            sizes.extend([struct.calcsize(">" + code)] * number)
    return sizes


def readme_layout(key: str) -> list[tuple[int, int]]:
    """(offset, size) of the numeric rows of the table after a
    ``<!-- layout: key -->`` marker."""
    marker = f"<!-- layout: {key} -->"
    assert README.count(marker) == 1, f"README lacks {marker}"
    rows = []
    for line in README.split(marker, 1)[1].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0].isdigit() and cells[1].isdigit():
            rows.append((int(cells[0]), int(cells[1])))
    return rows


LAYOUTS: dict[str, struct.Struct] = {
    "objects.HEADER": objects.HEADER,
    "journal.PACK_HEADER": journal.PACK_HEADER,
    "journal.FRAME_HEADER": journal.FRAME_HEADER,
    "journal.RECORD_HEADER": journal.RECORD_HEADER,
    "refs._MOVE_TAIL": refs._MOVE_TAIL,
    "table._HEADER": table._HEADER,
    "table._HEAD": table._HEAD,
    "table._PAST": table._PAST,
    "table._OBJECT": table._OBJECT,
}


@pytest.mark.parametrize("key", sorted(LAYOUTS))
def test_readme_layout_tables_match_the_structs(key: str) -> None:
    # Section 3: every integer of the format is unsigned and big-endian.
    assert LAYOUTS[key].format.startswith(">")
    assert not re.search(r"[bhilqn?efd]", LAYOUTS[key].format), key
    sizes = struct_sizes(LAYOUTS[key])
    rows = readme_layout(key)
    assert [size for _, size in rows[: len(sizes)]] == sizes, key
    offset = 0
    for (at, _), expected in zip(rows, sizes, strict=False):
        assert at == offset, f"{key}: field at {at}, expected {offset}"
        offset += expected
    assert offset == LAYOUTS[key].size


def test_readme_worked_example_matches_the_vectors() -> None:
    simple = BY_NAME["simple"]
    for text in (
        simple["address"],
        simple["stored_header_hex"],
        simple["canonical"],
        simple["typed_content_prefix"],
        VECTORS["packs"]["header_1_hex"],
        VECTORS["packs"]["seal_1_to_2"]["frame_hex"],
        simple["ref_move"]["content_hex"],
        VECTORS["config"]["text"].strip(),
    ):
        assert text in README, text
