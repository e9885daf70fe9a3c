"""Generate the encryption spec's test vectors from the library.

python tools/make_encryption_vectors.py --write
python tools/make_encryption_vectors.py > objects_spec/encryption_vectors.json

Every byte comes from `sentinel` itself (key file, subkeys, sealed
objects, sealed names, a sealed index record, records, a pack and its
sealed ref table), built
from fixed secrets, salts and nonces through the library's test seams
(`crypto._build_keyfile`, `SealedCodec._encode`, `table._encode`), so
the output is deterministic.  The fast `crypto.TEST_PARAMS` KDF cost is
used: the vectors check bytes, not strength.  The one input that may
vary is the zstd frame inside each sealed object, since zstd's output
may change between zstd versions: `build` accepts the frames to seal
(the test suite passes the ones already in the file).  See
``objects_spec/encryption.md``, "Test vectors".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sentinel import (  # noqa: E402
    codec,
    config,
    crypto,
    journal,
    objects,
    refs,
    sealed,
    table,
)
from sentinel.engine import to_micros  # noqa: E402

OUTPUT = os.path.join(ROOT, "objects_spec", "encryption_vectors.json")

PASSPHRASE = "correct horse battery staple"
MASTER_KEY = bytes(range(0, 32))
SIGNING_SEED = bytes(range(32, 64))
SALT = bytes(range(64, 80))
WRAP_NONCE = bytes(range(80, 92))
SEED_NONCE = bytes(range(92, 104))
OBJECT_NONCES = [bytes(range(start, start + 12)) for start in (120, 140, 160)]
TABLE_NONCE = bytes(range(200, 212))

COLLECTION = "users"
DOC_ID = "user-123"
# (data, created_at, updated_at, deleted) of each version, oldest first.
VERSIONS = [
    (
        {"name": "Alice", "age": 30},
        "2024-01-02T03:04:05.123456+00:00",
        "2024-01-02T03:04:05.123456+00:00",
        False,
    ),
    (
        {"name": "Alice", "age": 31},
        "2024-01-02T03:04:05.123456+00:00",
        "2024-01-02T03:04:06.000000+00:00",
        False,
    ),
    (
        {},
        "2024-01-02T03:04:05.123456+00:00",
        "2024-01-02T03:04:07.000000+00:00",
        True,
    ),
]
# An index field path longer than one 32-byte block, not ASCII.
INDEX_PATH = "address.city.name-in-the-local-language.\u00e9"
NAMES = [
    ("collection", None, "users"),
    ("collection", None, "a" * 33),
    ("id", "users", "user-123"),
    ("id", "logs", "user-123"),
]

Frames = Callable[[int, bytes], bytes]


def micros(stamp: str) -> int:
    return to_micros(datetime.fromisoformat(stamp))


def build(frames: Frames | None = None) -> dict[str, Any]:
    """Every vector, as a JSON-ready dict.  `frames(index, payload)`
    gives the zstd frame to seal for version `index` (default: the
    library's own compression)."""
    params = crypto.TEST_PARAMS
    keyfile_bytes, keys = crypto._build_keyfile(
        PASSPHRASE,
        params,
        salt=SALT,
        master_key=MASTER_KEY,
        signing_seed=SIGNING_SEED,
        wrap_nonce=WRAP_NONCE,
        seed_nonce=SEED_NONCE,
    )
    kek = crypto.derive_kek(PASSPHRASE, SALT, params)
    codec_ = sealed.SealedCodec(keys)
    names = refs.SealedNames(keys.name_key)

    out: dict[str, Any] = {
        "inputs": {
            "passphrase": PASSPHRASE,
            "kdf": {
                "memory_kib": params.memory_kib,
                "iterations": params.iterations,
                "lanes": params.lanes,
            },
            "salt": SALT.hex(),
            "master_key": MASTER_KEY.hex(),
            "signing_seed": SIGNING_SEED.hex(),
            "wrap_nonce": WRAP_NONCE.hex(),
            "seed_nonce": SEED_NONCE.hex(),
        },
        "key_file": {
            "hex": keyfile_bytes.hex(),
            "kek": kek.hex(),
            "sealing_key": keys.sealing_key.raw.hex(),
            "addressing_key": keys.addressing_key.hex(),
            "name_key": keys.name_key.raw.hex(),
            "signing_seal_key": crypto.derive_subkey(
                MASTER_KEY, crypto.CONTEXT_SIGNING_SEAL
            ).hex(),
            "public_key": keys.public_key.hex(),
            "signer_id": crypto.signer_id(keys.public_key).hex(),
        },
        "config": config.encode(
            {**config.DEFAULT, "encryption": config.ENCRYPTION_SEALED}
        ).decode("ascii"),
    }

    out["names"] = [
        {
            "kind": kind,
            "collection": collection,
            "name": name,
            "context_hex": (
                crypto.COLLECTION_CONTEXT
                if collection is None
                else crypto.id_context(collection)
            ).hex(),
            "sealed_hex": (
                names.write_collection(name)
                if collection is None
                else names.write_id(collection, name)
            ).hex(),
        }
        for kind, collection, name in NAMES
    ]

    # Each frame is a write of its own: its group start is its offset.
    pack_frames: list[bytes] = []

    def add_frame(records: list[bytes]) -> bytes:
        at = journal.PACK_HEADER_SIZE + sum(map(len, pack_frames))
        pack_frames.append(journal.frame(records, at))
        return pack_frames[-1]

    create = refs.encode_collection(refs.OP_CREATE, COLLECTION, names)
    create_record = journal.record(journal.RECORD_COLLECTION, create)
    add_frame([create_record])
    out["collection_record"] = {
        "operation": refs.OP_CREATE,
        "name": COLLECTION,
        "content_hex": create.hex(),
        "record_hex": create_record.hex(),
    }
    context = crypto.field_context(COLLECTION)
    index = refs.encode_index(
        refs.OP_CREATE_INDEX, COLLECTION, INDEX_PATH, names
    )
    out["index_record"] = {
        "operation": refs.OP_CREATE_INDEX,
        "collection": COLLECTION,
        "path": INDEX_PATH,
        "context_hex": context.hex(),
        "sealed_path_hex": names.write_field(COLLECTION, INDEX_PATH).hex(),
        "content_hex": index.hex(),
        "record_hex": journal.record(journal.RECORD_COLLECTION, index).hex(),
    }

    documents = []
    parent: bytes | None = None
    for index, (data, created, updated, deleted) in enumerate(VERSIONS):
        number = index + 1
        payload = objects.version_payload(
            COLLECTION,
            DOC_ID,
            number,
            parent,
            created,
            updated,
            deleted,
            codec.canonical_document(data),
        )
        frame = (
            frames(index, payload)
            if frames is not None
            else objects.compress(payload)
        )
        encoded = codec_._encode(
            objects.TYPE_VERSION, payload, OBJECT_NONCES[index], frame
        )
        header = encoded.stored[: objects.HEADER_SIZE]
        move = refs.encode_move(
            COLLECTION,
            DOC_ID,
            encoded.address,
            parent,
            number,
            micros(updated),
            deleted,
            names,
        )
        object_record = journal.record(
            journal.RECORD_OBJECT, encoded.address + encoded.stored
        )
        move_record = journal.record(journal.RECORD_REF, move)
        add_frame([object_record, move_record])
        documents.append(
            {
                "version": {
                    "collection": COLLECTION,
                    "id": DOC_ID,
                    "version": number,
                    "parent": parent.hex() if parent else None,
                    "created_at": created,
                    "updated_at": updated,
                    "deleted": deleted,
                    "data": data,
                },
                "payload": payload.decode("utf-8"),
                "typed_content_hex": objects.typed_content(
                    objects.TYPE_VERSION, payload
                ).hex(),
                "address": encoded.address.hex(),
                "unkeyed_address": objects.address_of(
                    objects.TYPE_VERSION, payload
                ).hex(),
                "signature": encoded.signature.hex(),
                "zstd_frame_hex": frame.hex(),
                "header_hex": header.hex(),
                "associated_data_hex": (header + encoded.address).hex(),
                "nonce": OBJECT_NONCES[index].hex(),
                "stored_hex": encoded.stored.hex(),
                "ref_move_hex": move.hex(),
                "object_record_hex": object_record.hex(),
                "move_record_hex": move_record.hex(),
            }
        )
        parent = encoded.address
    out["documents"] = documents

    pack = journal.pack_header(1) + b"".join(pack_frames)
    state = refs.State(names)
    at = journal.PACK_HEADER_SIZE
    for found in journal.parse_frames(pack[at:], 1, at):
        state.apply(found, journal.pack_name(1))
    out["store"] = {
        "pack_hex": pack.hex(),
        "position": list(state.position),
        "heads": {
            f"{name}/{doc_id}": {
                "address": head[refs.HEAD_ADDRESS].hex(),
                "version": head[refs.HEAD_VERSION],
                "deleted": head[refs.HEAD_DELETED],
                "time": head[refs.HEAD_TIME],
            }
            for name, refs_of in sorted(state.collections.items())
            for doc_id, head in refs_of.heads.items()
        },
        "table_nonce": TABLE_NONCE.hex(),
        "table_hex": table._encode(state, keys.sealing_key, TABLE_NONCE).hex(),
        "plain_table_hex": table.encode(state).hex(),
    }
    return out


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--write", action="store_true", help=f"write {OUTPUT}")
    options = args.parse_args()
    text = render(build())
    if options.write:
        with open(OUTPUT, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
