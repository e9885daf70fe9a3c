"""The encryption spec, its vectors and the code, checked against each
other.

``objects_spec/encryption_vectors.json`` is regenerated with the library
(`tools/make_encryption_vectors.py`) and compared member by member; then
every key, sealed object, sealed name and the sealed table is rebuilt
from the primitives alone, following ``objects_spec/encryption.md``, and
opened again with the library.  The constants and layout tables of the
spec are compared with the code.  Spec, vectors and code cannot drift
apart silently.

The zstd frames inside sealed objects are taken from the file (zstd's
output may change between zstd versions) and checked to be single
frames that declare their size and decode to the payload.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
import re
import struct
import sys
import zlib
from types import ModuleType
from typing import Any

import blake3
import pytest
import zstandard
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from sentinel import (
    config,
    crypto,
    journal,
    keyfile,
    names,
    objects,
    refs,
    sealed,
    signing,
    table,
)
from sentinel.errors import CorruptJournalError

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPEC = (ROOT / "objects_spec" / "encryption.md").read_text("utf-8")
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "objects_spec" / "encryption_vectors.json").read_text("utf-8")
)
MODULES: dict[str, ModuleType] = {
    "config": config,
    "crypto": crypto,
    "keyfile": keyfile,
    "objects": objects,
    "sealed": sealed,
}


def load_generator() -> ModuleType:
    path = ROOT / "tools" / "make_encryption_vectors.py"
    spec = importlib.util.spec_from_file_location("make_enc_vectors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
DOCS = VECTORS["documents"]
INPUTS = VECTORS["inputs"]
KEYS = VECTORS["key_file"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def recorded_frame(index: int, payload: bytes) -> bytes:
    frame = h(DOCS[index]["zstd_frame_hex"])
    assert zstandard.frame_content_size(frame) == len(payload)
    assert zstandard.ZstdDecompressor().decompress(frame) == payload
    return frame


# -- the vectors are what the library makes -----------------------------------


def test_vectors_are_regenerated_exactly() -> None:
    rebuilt = json.loads(GENERATOR.render(GENERATOR.build(recorded_frame)))
    for member in VECTORS:
        assert rebuilt[member] == VECTORS[member], member
    assert rebuilt.keys() == VECTORS.keys()


def test_library_compression_gives_a_valid_frame() -> None:
    # With this zstd the generator's own frames may equal the recorded
    # ones or not; either way they must seal and open to the payload.
    fresh = GENERATOR.build()
    for index, doc in enumerate(fresh["documents"]):
        payload = doc["payload"].encode()
        recorded_frame(index, payload)
        frame = h(doc["zstd_frame_hex"])
        assert zstandard.ZstdDecompressor().decompress(frame) == payload


# -- rebuilt from the primitives, as the spec describes -----------------------


def derive(context: str) -> bytes:
    return blake3.blake3(
        h(INPUTS["master_key"]), derive_key_context=context
    ).digest()


def test_keys_from_the_primitives() -> None:
    kdf = INPUTS["kdf"]
    kek = Argon2id(
        salt=h(INPUTS["salt"]),
        length=32,
        iterations=kdf["iterations"],
        lanes=kdf["lanes"],
        memory_cost=kdf["memory_kib"],
    ).derive(INPUTS["passphrase"].encode())
    assert kek.hex() == KEYS["kek"]
    assert derive(crypto.CONTEXT_SEALING).hex() == KEYS["sealing_key"]
    assert derive(crypto.CONTEXT_ADDRESSING).hex() == KEYS["addressing_key"]
    assert derive(crypto.CONTEXT_NAME).hex() == KEYS["name_key"]
    assert (
        derive(crypto.CONTEXT_SIGNING_SEAL).hex() == KEYS["signing_seal_key"]
    )
    seed_key = Ed25519PrivateKey.from_private_bytes(h(INPUTS["signing_seed"]))
    public = seed_key.public_key().public_bytes_raw()
    assert public.hex() == KEYS["public_key"]
    signer = blake3.blake3(
        public, derive_key_context=crypto.CONTEXT_SIGNER_ID
    ).digest(length=8)
    assert signer.hex() == KEYS["signer_id"]

    # The key file, field by field from section 6's table.
    data = h(KEYS["hex"])
    assert len(data) == crypto.KEYFILE_SIZE
    head = struct.pack(
        ">4sBBBBIII16s32s",
        b"SNTK",
        1,
        1,
        1,
        0,
        kdf["memory_kib"],
        kdf["iterations"],
        kdf["lanes"],
        h(INPUTS["salt"]),
        public,
    )
    wrap_nonce = h(INPUTS["wrap_nonce"])
    wrapped = wrap_nonce + AESGCMSIV(kek).encrypt(
        wrap_nonce, h(INPUTS["master_key"]), head[:36]
    )
    seed_nonce = h(INPUTS["seed_nonce"])
    sealed_seed = seed_nonce + AESGCMSIV(
        derive(crypto.CONTEXT_SIGNING_SEAL)
    ).encrypt(seed_nonce, h(INPUTS["signing_seed"]), head)
    body = head + wrapped + sealed_seed
    assert body + blake3.blake3(body).digest() == data

    opened = crypto.open_keyfile(data, INPUTS["passphrase"])
    assert opened.master_key.hex() == INPUTS["master_key"]
    assert crypto.public_key(data).hex() == KEYS["public_key"]


def test_sealed_objects_from_the_primitives() -> None:
    addressing = h(KEYS["addressing_key"])
    sealing = AESGCMSIV(h(KEYS["sealing_key"]))
    signer = Ed25519PrivateKey.from_private_bytes(h(INPUTS["signing_seed"]))
    parent = None
    for doc in DOCS:
        payload = doc["payload"].encode()
        fields = json.loads(payload)
        assert fields == {**doc["version"], "parent": parent}
        typed = b"version %d\x00" % len(payload) + payload
        assert typed.hex() == doc["typed_content_hex"]
        address = blake3.blake3(typed, key=addressing).digest()
        assert address.hex() == doc["address"]
        assert blake3.blake3(typed).hexdigest() == doc["unkeyed_address"]
        assert address.hex() != doc["unkeyed_address"]

        signature = signer.sign(crypto.SIGNATURE_DOMAIN + typed)
        assert signature.hex() == doc["signature"]
        plaintext = h(doc["zstd_frame_hex"]) + h(KEYS["signer_id"])
        plaintext += signature
        header = struct.pack(
            ">4sBBBBI", b"SNTO", 1, 2, 1, 0, len(plaintext) + 28
        )
        assert header.hex() == doc["header_hex"]
        assert (header + address).hex() == doc["associated_data_hex"]
        nonce = h(doc["nonce"])
        stored = (
            header
            + nonce
            + sealing.encrypt(nonce, plaintext, header + address)
        )
        assert stored.hex() == doc["stored_hex"]
        content = address + stored
        record = struct.pack(">BII", 1, len(content), zlib.crc32(content))
        assert (record + content).hex() == doc["object_record_hex"]
        parent = address.hex()


def test_sealed_objects_open_with_the_library() -> None:
    keys = crypto.open_keyfile(h(KEYS["hex"]), INPUTS["passphrase"])
    codec = sealed.SealedCodec(keys)
    for doc in DOCS:
        opened = codec.decode(
            h(doc["stored_hex"]),
            h(doc["address"]),
            verification=signing.VerificationOptions.strict(),
        )
        assert opened.payload == doc["payload"].encode()
        assert opened.signature.hex() == doc["signature"]
        version = {**doc["version"], "signature": doc["signature"]}
        sealed.verify_version(h(KEYS["public_key"]), version)


def seal_name(name: str, context: bytes) -> bytes:
    raw = name.encode()
    padded = raw + bytes(-len(raw) % 32)
    nonce = blake3.blake3(
        context, derive_key_context=crypto.CONTEXT_NAME_NONCE
    ).digest(length=12)
    return AESGCMSIV(h(KEYS["name_key"])).encrypt(nonce, padded, context)


def test_sealed_names_from_the_primitives() -> None:
    for entry in VECTORS["names"]:
        if entry["collection"] is None:
            context = b"collection"
        else:
            context = b"id\x00" + entry["collection"].encode()
        assert context.hex() == entry["context_hex"]
        sealed_name = seal_name(entry["name"], context)
        assert sealed_name.hex() == entry["sealed_hex"]
        size = len(entry["name"].encode())
        assert len(sealed_name) == -(-size // 32) * 32 + 16

    users = seal_name("users", b"collection")
    user = seal_name("user-123", b"id\x00users")
    record = VECTORS["collection_record"]
    assert h(record["content_hex"]) == b"\x01" + users
    for index, doc in enumerate(DOCS):
        move = h(doc["ref_move_hex"])
        version = doc["version"]
        tail = struct.pack(
            ">32s32sQQB",
            h(doc["address"]),
            h(version["parent"]) if version["parent"] else bytes(32),
            index + 1,
            GENERATOR.micros(version["updated_at"]),
            1 if version["deleted"] else 0,
        )
        assert move == b"\x30" + users + b"\x30" + user + tail


def seal_field(path: str, context: bytes) -> bytes:
    raw = path.encode()
    padded = raw + b"\x80" + bytes(-(len(raw) + 1) % 32)
    nonce = blake3.blake3(
        context, derive_key_context=crypto.CONTEXT_NAME_NONCE
    ).digest(length=12)
    return AESGCMSIV(h(KEYS["name_key"])).encrypt(nonce, padded, context)


def test_sealed_index_record_from_the_primitives() -> None:
    entry = VECTORS["index_record"]
    context = b"field\x00" + entry["collection"].encode()
    assert context.hex() == entry["context_hex"]
    sealed_path = seal_field(entry["path"], context)
    assert sealed_path.hex() == entry["sealed_path_hex"]
    size = len(entry["path"].encode())
    assert len(sealed_path) == -(-(size + 1) // 32) * 32 + 16
    users = seal_name(entry["collection"], b"collection")
    content = bytes((entry["operation"], len(users))) + users + sealed_path
    assert content.hex() == entry["content_hex"]
    record = struct.pack(">BII", 3, len(content), zlib.crc32(content))
    assert (record + content).hex() == entry["record_hex"]

    keys = crypto.open_keyfile(h(KEYS["hex"]), INPUTS["passphrase"])
    names_ = refs.SealedNames(keys.name_key)
    assert refs.decode_index(content, names_) == (
        entry["operation"],
        entry["collection"],
        entry["path"],
    )
    # Neither the collection nor the path is readable, and the path
    # cannot be moved to another collection's context.
    assert entry["path"].encode() not in content
    assert b"users" not in content
    other = bytes((4, len(users))) + seal_name("logs", b"collection")
    with pytest.raises(ValueError, match="sealed field"):
        refs.decode_index(other + sealed_path, names_)
    # A path may end in NUL bytes: the 0x80 padding keeps them.
    for path in ("a\x00", "\x00" * 31, "x" * 1024):
        again = crypto.open_field(
            keys.name_key,
            crypto.seal_field(keys.name_key, path, context),
            context,
        )
        assert again == path


def test_sealed_table_with_index_definitions() -> None:
    keys = crypto.open_keyfile(h(KEYS["hex"]), INPUTS["passphrase"])
    state = refs.State(refs.SealedNames(keys.name_key))
    state.collections["users"] = refs.CollectionRefs()
    state.collections["users"].indexes.add(VECTORS["index_record"]["path"])
    plain = table.encode(state)
    sealed_table = table.encode(state, keys.sealing_key)
    # Format 2 as in a plain store; the definitions are inside the box.
    assert plain[4] == sealed_table[4] == table.FORMAT_INDEXES
    assert plain[:20] == sealed_table[:20]
    assert b"users" in plain and b"users" not in sealed_table
    assert b"address.city" not in sealed_table
    decoded = table.decode(
        sealed_table, refs.SealedNames(keys.name_key), keys.sealing_key
    )
    assert decoded.collections["users"].indexes == {
        VECTORS["index_record"]["path"]
    }


def test_store_and_sealed_table() -> None:
    store = VECTORS["store"]
    keys = crypto.open_keyfile(h(KEYS["hex"]), INPUTS["passphrase"])
    pack = h(store["pack_hex"])
    assert pack[:16] == journal.pack_header(1)

    # Replay with the library, names sealed.
    state = refs.State(refs.SealedNames(keys.name_key))
    at = journal.PACK_HEADER_SIZE
    for found in journal.parse_frames(pack[at:], 1, at):
        state.apply(found, "pack-00000001.pack")
    assert list(state.position) == store["position"] == [1, len(pack)]
    address, version, deleted, time = state.collections["users"].heads[
        "user-123"
    ]
    assert store["heads"]["users/user-123"] == {
        "address": address.hex(),
        "version": version,
        "deleted": deleted,
        "time": time,
    }
    # A plain reader cannot replay it: the names are sealed.
    with pytest.raises(CorruptJournalError):
        plain = refs.State()
        for found in journal.parse_frames(pack[at:], 1, at):
            plain.apply(found, "pack-00000001.pack")

    # The table: the plain table's header, then one box over the rest.
    sealed_table = h(store["table_hex"])
    plain_table = h(store["plain_table_hex"])
    header = sealed_table[:20]
    assert header == plain_table[:20]
    body = sealed_table[:-32]
    assert blake3.blake3(body).digest() == sealed_table[-32:]
    assert body[20:32].hex() == store["table_nonce"]
    inner = AESGCMSIV(h(KEYS["sealing_key"])).decrypt(
        body[20:32], body[32:], header
    )
    assert header + inner == plain_table[:-32]
    decoded = table.decode(
        sealed_table, refs.SealedNames(keys.name_key), keys.sealing_key
    )
    assert (
        decoded.collections["users"].heads == state.collections["users"].heads
    )
    with pytest.raises(ValueError, match="authentication"):
        table.decode(plain_table, key=keys.sealing_key)


def test_config_vector() -> None:
    assert VECTORS["config"] == (
        '{"compression":"zstd","encryption":"aes-256-gcm-siv",'
        '"format":"sentinel","hash":"blake3","version":1}\n'
    )
    assert VECTORS["config"].strip() in SPEC


# -- the spec's tables are the code's -----------------------------------------


def spec_constants() -> dict[tuple[str, str], Any]:
    found = {}
    for module, name, value in re.findall(
        r"^\| `(\w+)\.([A-Z][A-Z0-9_]*)` \| `(.+?)` \|", SPEC, re.MULTILINE
    ):
        found[(module, name)] = ast.literal_eval(value)
    return found


def test_constants_table_matches_the_code() -> None:
    constants = spec_constants()
    assert len(constants) >= 30
    for (module, name), value in constants.items():
        assert getattr(MODULES[module], name) == value, (module, name)
    assert crypto.MAX_NAME_BYTES == names.MAX_NAME_BYTES
    assert crypto.MAX_FIELD_BYTES == refs.MAX_INDEX_PATH
    assert crypto.DEFAULT_PARAMS == crypto.KdfParams(65536, 3, 4)
    assert crypto.TEST_PARAMS == crypto.KdfParams(8, 1, 1)
    for module, name in (
        ("objects", "ENCODING_SEALED"),
        ("objects", "FLAG_SIGNED"),
        ("config", "ENCRYPTION_SEALED"),
        ("keyfile", "FILE_NAME"),
    ):
        assert (module, name) in constants


def layout(key: str) -> list[tuple[int, int]]:
    """(offset, size) of the numeric rows after ``<!-- layout: key -->``."""
    start = SPEC.index(f"<!-- layout: {key} -->")
    rows = []
    for line in SPEC[start:].splitlines()[3:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[1].isdigit():
            rows.append((int(cells[0]), int(cells[1])))
    return rows


def test_layout_tables_match_the_code() -> None:
    rows = layout("keyfile")
    assert rows[-1][0] + rows[-1][1] == crypto.KEYFILE_SIZE
    for (offset, size), (following, _) in zip(rows, rows[1:], strict=False):
        assert offset + size == following
    head = crypto._KEYFILE_HEAD
    assert sum(size for _, size in rows[:10]) == head.size
    assert rows[10:12] == [(68, 60), (128, 60)]
    assert crypto._CHECKSUM_AT == rows[12][0]

    header = layout("sealed object header")
    assert [size for _, size in header] == [4, 1, 1, 1, 1, 4]
    assert objects.HEADER.size == sum(size for _, size in header)


def test_sealed_table_keeps_the_plain_format_number() -> None:
    sealed_table = h(VECTORS["store"]["table_hex"])
    assert sealed_table[:4] == table.MAGIC and sealed_table[4] == table.FORMAT
