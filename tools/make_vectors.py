"""Generate the format spec's test vectors from the library.

python tools/make_vectors.py > objects_spec/vectors.json
python tools/make_vectors.py --write

Every byte in the output comes from `sentinel` itself (canonical JSON,
version payloads, addresses, stored objects, records, frames, packs, the
ref table), built from fixed inputs, so the output is deterministic.  The
one exception is the compressed body of each stored object: zstd's
output may differ between zstd library versions, so `build` accepts a
`compress` function that supplies those bodies instead (the test suite
passes the bodies already in the file, then compares every other byte).
See ``objects_spec/README.md``, "Test vectors".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sentinel import (  # noqa: E402
    codec,
    config,
    journal,
    objects,
    refs,
    table,
)
from sentinel.engine import to_micros  # noqa: E402

OUTPUT = os.path.join(ROOT, "objects_spec", "vectors.json")

Compress = Callable[[bytes], bytes]

# -- inputs ------------------------------------------------------------------

# JSON texts, deliberately not canonical (key order, white space, escapes),
# each loading with Python's `json.loads` to exactly the value meant.
SIMPLE = (
    '{"name": "Alice", "age": 30, "active": true, '
    '"tags": ["admin", "ops"], "manager": null}'
)
SIMPLE_V2 = (
    '{"name": "Alice", "age": 31, "active": true, '
    '"tags": ["admin", "ops"], "manager": null}'
)
SIMPLE_V4 = '{"name": "Alice Smith", "age": 31}'
UNICODE = (
    '{"\\ud83d\\ude00": "key U+1F600, sorts after U+FF01", '
    '"\\uff01": "key U+FF01", "\\u00e9": "e-acute", "Z": "upper", '
    '"a": "lower", '
    '"controls": "nul\\u0000 bs\\b tab\\t nl\\n vt\\u000b ff\\f cr\\r '
    'esc\\u001b us\\u001f", '
    '"kept": "quote\\" backslash\\\\ slash/ del\\u007f ls\\u2028 '
    'ps\\u2029 \\u00e9 \\u20ac \\ud834\\udd1e"}'
)
FLOATS = (
    '{"negative_zero": -0.0, "ten_to_16": 1e16, "small": 1.5e-07, '
    '"smallest_subnormal": 5e-324, "tenth": 0.1, "one": 1.0, '
    '"hundred": 100.0, "ten_to_minus_4": 0.0001, '
    '"ten_to_minus_5": 0.00001, "below_ten_to_16": 9999999999999998.0, '
    '"largest": 1.7976931348623157e308, "negative": -2.5E-10, '
    '"two_to_63": 9223372036854775808.0}'
)
INTEGERS = (
    '{"u64_max": 18446744073709551615, "i64_max": 9223372036854775807, '
    '"i64_min": -9223372036854775808, '
    '"two_to_53_plus_1": 9007199254740993, "zero": 0, "minus_zero": -0}'
)
NESTED = (
    '{"z": {"y": {"x": [true, false, null]}}, '
    '"a": [1, [2, [3, {"b": {"c": []}}]], {}], '
    '"m": [{"k": 2, "j": 1}]}'
)
EMPTY = "{}"
WHITESPACE = ' {\n  "b" : 1 ,\t"a" : [ 1 , 2 ] }\r\n'
# 128 containers: the object and 127 arrays, the most `codec` accepts.
DEEPEST = '{"d": ' + "[" * 127 + "]" * 127 + "}"
LOG_ENTRY = '{"event": "login", "user": "user-123", "ok": true}'

CANONICAL_CASES: list[tuple[str, str]] = [
    ("simple", SIMPLE),
    ("unicode", UNICODE),
    ("floats", FLOATS),
    ("integers", INTEGERS),
    ("nested", NESTED),
    ("empty", EMPTY),
    ("whitespace", WHITESPACE),
    ("deepest", DEEPEST),
]

# (name, JSON text, whether the value is otherwise a valid JSON value).
# NaN and Infinity are not JSON; Python's `json.loads` reads them, which
# is how these inputs reach the canonicalizer.
REJECTED_CASES: list[tuple[str, str, str]] = [
    ("int_above_u64_max", '{"n": 18446744073709551616}', "integer range"),
    ("int_below_i64_min", '{"n": -9223372036854775809}', "integer range"),
    ("nan", '{"x": NaN}', "NaN"),
    ("infinity", '{"x": Infinity}', "infinity"),
    ("negative_infinity", '{"x": -Infinity}', "infinity"),
    ("float_overflow", '{"x": 1e400}', "loads as infinity"),
    ("depth_129", '{"d": ' + "[" * 128 + "]" * 128 + "}", "depth"),
    ("lone_surrogate", '{"s": "\\ud800"}', "not Unicode"),
    ("document_not_object", "[1, 2]", "a document is an object"),
]

T0 = "2024-01-02T03:04:05.123456+00:00"
T1 = "2024-01-02T03:04:06.000000+00:00"
T2 = "2024-01-03T00:00:00.000001+00:00"
T3 = "2024-01-04T12:30:00.500000+00:00"
T4 = "2024-01-05T08:00:00.000000+00:00"

USERS = "users"
LOGS = "logs"


class Doc:
    """One version object to make vectors for."""

    def __init__(
        self,
        name: str,
        collection: str,
        doc_id: str,
        text: str,
        version: int,
        parent: str | None,
        created_at: str,
        updated_at: str,
        deleted: bool = False,
    ) -> None:
        self.name = name
        self.collection = collection
        self.doc_id = doc_id
        self.text = text
        self.version = version
        self.parent = parent
        self.created_at = created_at
        self.updated_at = updated_at
        self.deleted = deleted


# In commit order.  The users/user-123 chain shows every timestamp rule:
# created_at kept (v2), a tombstone with empty data (v3), and created_at
# starting again after a tombstone (v4).
DOCS: list[Doc] = [
    Doc("simple", USERS, "user-123", SIMPLE, 1, None, T0, T0),
    Doc("simple_v2", USERS, "user-123", SIMPLE_V2, 2, "simple", T0, T1),
    Doc(
        "simple_v3_tombstone",
        USERS,
        "user-123",
        EMPTY,
        3,
        "simple_v2",
        T0,
        T2,
        deleted=True,
    ),
    Doc(
        "simple_v4_after_tombstone",
        USERS,
        "user-123",
        SIMPLE_V4,
        4,
        "simple_v3_tombstone",
        T3,
        T3,
    ),
    Doc("unicode", USERS, "doc-unicode", UNICODE, 1, None, T0, T0),
    Doc("floats", USERS, "doc-floats", FLOATS, 1, None, T0, T0),
    Doc("integers", USERS, "doc-integers", INTEGERS, 1, None, T0, T0),
    Doc("nested", USERS, "doc-nested", NESTED, 1, None, T0, T0),
    Doc("empty", USERS, "doc-empty", EMPTY, 1, None, T0, T0),
    Doc("log_entry", LOGS, "entry-1", LOG_ENTRY, 1, None, T4, T4),
]

# -- helpers -----------------------------------------------------------------


def micros(stamp: str) -> int:
    """Microseconds since the epoch of an ISO 8601 time with offset."""
    return to_micros(datetime.fromisoformat(stamp))


def typed_content(kind: int, payload: bytes) -> bytes:
    return b"%s %d\x00" % (objects.TYPE_NAMES[kind], len(payload)) + payload


def stored_object(
    kind: int, payload: bytes, compress: Compress | None
) -> bytes:
    """The stored form as the library writes it; with `compress`, the
    library's header followed by the body `compress` gives."""
    stored = objects.encode(kind, payload)[1]
    if compress is None:
        return stored
    return stored[: objects.HEADER_SIZE] + compress(payload)


def identity_object(kind: int, payload: bytes) -> bytes:
    """The same object with encoding 0: header and payload verbatim."""
    header = objects.HEADER.pack(
        objects.MAGIC, kind, objects.ENCODING_IDENTITY, 0, 0, len(payload)
    )
    return header + payload


def collection_vector(
    operation: int, name: str, path: str | None = None
) -> dict[str, Any]:
    """A collection record; with `path`, an index record."""
    if path is None:
        content = refs.encode_collection(operation, name)
    else:
        content = refs.encode_index(operation, name, path)
    record = journal.record(journal.RECORD_COLLECTION, content)
    vector: dict[str, Any] = {"operation": operation, "name": name}
    if path is not None:
        vector["path"] = path
    vector.update(
        {
            "content_hex": content.hex(),
            "record_hex": record.hex(),
            "frame_hex": journal.frame([record], FIRST).hex(),
        }
    )
    return vector


# Standalone frame vectors are written as the first write of a pack.
FIRST = journal.PACK_HEADER_SIZE


def lay_out(frames: list[bytes]) -> bytes:
    """Place frames one after another from the pack header on, each its
    own write, so each names its own offset as its group start."""
    out = []
    at = FIRST
    for whole in frames:
        body = whole[journal.FRAME_HEADER_SIZE : -journal.FRAME_TRAILER.size]
        placed = journal.frame([body], at)
        out.append(placed)
        at += len(placed)
    return b"".join(out)


def frame_of(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["frame_hex"])


def replay(packs: list[bytes]) -> refs.State:
    """Apply the frames of whole pack images, as opening a store does."""
    state = refs.State()
    for number, data in enumerate(packs, start=1):
        at = journal.PACK_HEADER_SIZE
        for found in journal.parse_frames(data[at:], number, at):
            state.apply(found, journal.pack_name(number))
            state.position = (number, found.end)
    return state


def describe_refs(refs_of: refs.CollectionRefs) -> dict[str, Any]:
    out = []
    for doc_id, (address, version, deleted, time) in refs_of.heads.items():
        past = refs_of.past.get(doc_id)
        out.append(
            {
                "id": doc_id,
                "address": address.hex(),
                "version": version,
                "time": time,
                "deleted": deleted,
                "past": [
                    {
                        "address": older_address.hex(),
                        "time": older_time,
                        "deleted": older_deleted,
                    }
                    for older_address, _, older_deleted, older_time in (
                        past.head(index)
                        for index in range(len(past) if past else 0)
                    )
                ],
            }
        )
    return {"heads": out, "indexes": sorted(refs_of.indexes)}


def describe_state(state: refs.State) -> dict[str, Any]:
    return {
        "position": list(state.position),
        "collections": {
            name: describe_refs(state.collections[name])
            for name in sorted(state.collections)
        },
        "dropped": {
            name: describe_refs(state.dropped[name])
            for name in sorted(state.dropped)
        },
        "objects": [
            {
                "address": address.hex(),
                "pack": pack,
                "offset": offset,
                "length": length,
            }
            for address, (pack, offset, length) in sorted(
                (address, refs.place(found))
                for address, found in state.objects.items()
            )
        ],
    }


# -- the vectors -------------------------------------------------------------


def canonical_vectors() -> list[dict[str, Any]]:
    out = []
    for name, text in CANONICAL_CASES:
        encoded = codec.canonical_document(json.loads(text))
        out.append(
            {
                "name": name,
                "input": text,
                "canonical": encoded.decode("utf-8"),
                "canonical_hex": encoded.hex(),
            }
        )
    return out


def rejected_vectors() -> list[dict[str, Any]]:
    return [
        {"name": name, "input": text, "reason": reason}
        for name, text, reason in REJECTED_CASES
    ]


def document_vectors(
    compress: Compress | None,
) -> tuple[list[dict[str, Any]], dict[str, list[bytes]]]:
    """The version-object vectors, and each one's frame by collection."""
    addresses: dict[str, bytes] = {}
    frames: dict[str, list[bytes]] = {}
    out = []
    for doc in DOCS:
        body = codec.canonical_document(json.loads(doc.text))
        parent = addresses[doc.parent] if doc.parent else None
        payload = objects.version_payload(
            doc.collection,
            doc.doc_id,
            doc.version,
            parent,
            doc.created_at,
            doc.updated_at,
            doc.deleted,
            body,
        )
        kind = objects.TYPE_VERSION
        address = objects.address_of(kind, payload)
        addresses[doc.name] = address
        stored = stored_object(kind, payload, compress)
        object_record = journal.record(journal.RECORD_OBJECT, address + stored)
        move = refs.encode_move(
            doc.collection,
            doc.doc_id,
            address,
            parent,
            doc.version,
            micros(doc.updated_at),
            doc.deleted,
        )
        move_record = journal.record(journal.RECORD_REF, move)
        whole = journal.frame([object_record, move_record], FIRST)
        frames.setdefault(doc.collection, []).append(whole)
        typed = typed_content(kind, payload)
        out.append(
            {
                "name": doc.name,
                "input": doc.text,
                "canonical": body.decode("utf-8"),
                "canonical_hex": body.hex(),
                "version": {
                    "collection": doc.collection,
                    "id": doc.doc_id,
                    "version": doc.version,
                    "parent": parent.hex() if parent else None,
                    "created_at": doc.created_at,
                    "updated_at": doc.updated_at,
                    "deleted": doc.deleted,
                },
                "payload": payload.decode("utf-8"),
                "payload_hex": payload.hex(),
                "typed_content_prefix": typed[: len(typed) - len(payload)]
                .decode("ascii")
                .replace("\x00", "\\0"),
                "typed_content_hex": typed.hex(),
                "address": address.hex(),
                "stored_header_hex": stored[: objects.HEADER_SIZE].hex(),
                "stored_hex": stored.hex(),
                "stored_identity_hex": identity_object(kind, payload).hex(),
                "object_record_hex": object_record.hex(),
                "ref_move": {
                    "collection": doc.collection,
                    "id": doc.doc_id,
                    "new": address.hex(),
                    "old": parent.hex() if parent else None,
                    "version": doc.version,
                    "time": micros(doc.updated_at),
                    "deleted": doc.deleted,
                    "content_hex": move.hex(),
                    "record_hex": move_record.hex(),
                },
                "frame_hex": whole.hex(),
            }
        )
    return out, frames


def build(compress: Compress | None = None) -> dict[str, Any]:
    """Every vector, as the JSON-ready dict written to vectors.json."""
    documents, frames = document_vectors(compress)
    collection_records = {
        "create_users": collection_vector(refs.OP_CREATE, USERS),
        "create_logs": collection_vector(refs.OP_CREATE, LOGS),
        "drop_logs": collection_vector(refs.OP_DROP, LOGS),
        "restore_logs": collection_vector(refs.OP_RESTORE, LOGS),
        "index_logs_event": collection_vector(
            refs.OP_CREATE_INDEX, LOGS, "event"
        ),
        "index_users_name": collection_vector(
            refs.OP_CREATE_INDEX, USERS, "name"
        ),
        "index_users_unicode": collection_vector(
            refs.OP_CREATE_INDEX, USERS, "address.caf\u00e9"
        ),
        "drop_index_users_unicode": collection_vector(
            refs.OP_DROP_INDEX, USERS, "address.caf\u00e9"
        ),
    }
    seal_content = (2).to_bytes(4, "big")
    seal_record = journal.record(journal.RECORD_SEAL, seal_content)
    seal_frame = journal.frame([seal_record], FIRST)

    # A two-pack store: pack 1 holds the users collection and is sealed;
    # pack 2 holds the logs collection and index changes, then drops logs
    # (whose index definition goes with its refs).
    pack1 = journal.pack_header(1) + lay_out(
        [
            frame_of(collection_records["create_users"]),
            *frames[USERS],
            seal_frame,
        ]
    )
    pack2 = journal.pack_header(2) + lay_out(
        [
            frame_of(collection_records["create_logs"]),
            *frames[LOGS],
            frame_of(collection_records["index_logs_event"]),
            frame_of(collection_records["index_users_name"]),
            frame_of(collection_records["index_users_unicode"]),
            frame_of(collection_records["drop_index_users_unicode"]),
            frame_of(collection_records["drop_logs"]),
        ]
    )
    sealed = replay([pack1])
    sealed.position = (2, journal.PACK_HEADER_SIZE)
    state = replay([pack1, pack2])
    for entry in documents:
        pack, offset, length = refs.place(
            state.objects[bytes.fromhex(entry["address"])]
        )
        entry["location"] = {
            "path": "objects/" + journal.pack_name(pack),
            "pack": pack,
            "offset": offset,
            "length": length,
        }
    config_bytes = config.encode(config.DEFAULT)

    return {
        "description": (
            "Test vectors of the Sentinel on-disk format, version 1. "
            "Normative text: objects_spec/README.md. Generated by "
            "tools/make_vectors.py; checked by tests/test_spec_vectors.py."
        ),
        "format_version": config.VERSION,
        "notes": [
            "Hex strings are lowercase. Integers in the format are "
            "big-endian.",
            "'input' fields are JSON texts that Python's json.loads reads "
            "as the intended value; they are not canonical on purpose. "
            "NaN, Infinity and -Infinity in rejected inputs are not JSON; "
            "Python's json.loads accepts them.",
            "'stored_hex' bodies are zstd level 3 output of the zstd "
            "library that generated this file. Another zstd version may "
            "compress differently: compare stored_header_hex strictly and "
            "the body only as 'a single zstd frame with content size that "
            "decodes to payload'. Every other field, including records, "
            "frames and packs that embed these bodies, is exact.",
        ],
        "checks": {
            "crc32": {
                "input": "123456789",
                "crc32_hex": f"{zlib.crc32(b'123456789'):08x}",
            },
        },
        "config": {
            "path": config.FILE_NAME,
            "text": config_bytes.decode("utf-8"),
            "hex": config_bytes.hex(),
        },
        "canonical_json": canonical_vectors(),
        "rejected": rejected_vectors(),
        "documents": documents,
        "collection_records": collection_records,
        "packs": {
            "header_1_hex": journal.pack_header(1).hex(),
            "header_2_hex": journal.pack_header(2).hex(),
            "seal_1_to_2": {
                "content_hex": seal_content.hex(),
                "record_hex": seal_record.hex(),
                "frame_hex": seal_frame.hex(),
            },
        },
        "store": {
            "description": (
                "A whole store: pack 1 creates 'users', holds every "
                "document vector of that collection in order (one frame "
                "each: object record, then ref-move record) and is sealed; "
                "pack 2 creates 'logs', writes log_entry, indexes "
                "logs.event and users.name, indexes and unindexes a "
                "non-ASCII path of users, and drops 'logs'."
            ),
            "directories": ["objects", "refs"],
            "files": {
                config.FILE_NAME: config_bytes.hex(),
                "objects/" + journal.pack_name(1): pack1.hex(),
                "objects/" + journal.pack_name(2): pack2.hex(),
            },
            "state": describe_state(state),
            "ref_table": {
                "path": "refs/table",
                "format": table.encode(state)[4],
                "hex": table.encode(state).hex(),
            },
            "state_after_pack_1": describe_state(sealed),
            "ref_table_after_pack_1": {
                "path": "refs/table",
                "format": table.encode(sealed)[4],
                "hex": table.encode(sealed).hex(),
            },
        },
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=True) + "\n"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument(
        "--write",
        action="store_true",
        help=f"write {os.path.relpath(OUTPUT, ROOT)} instead of stdout",
    )
    options = args.parse_args()
    text = render(build())
    if options.write:
        with open(OUTPUT, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
