"""Stores opened with a passphrase: errors, secrecy, signatures, keys.

What RELIABILITY.md calls T22, plus the issue's own list: every error
case with its exact type and an unchanged tree; a byte scan of a whole
encrypted store for the strings a test wrote; signatures that verify
after reopening and fail after tampering, in each verification mode; a
version signed by another key; and `change_passphrase`.  The contract
shared with plain stores is in test_contract.py.
"""

from __future__ import annotations

import os
import pathlib
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import blake3
import pytest
import zstandard
from conftest import PASSPHRASE, Opener
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from hypothesis import given, settings
from hypothesis import strategies as st

import sentinel
from sentinel import (
    codec,
    config,
    crypto,
    journal,
    keyfile,
    objects,
    refs,
    sealed,
    signing,
    table,
)

V = sentinel.VerificationOptions
FAST = crypto.TEST_PARAMS

# -- helpers ------------------------------------------------------------------

Snapshot = dict[str, tuple[str, int, int, str]]


def snapshot(root: pathlib.Path) -> Snapshot:
    """Every path under `root` with its kind, size, mtime and BLAKE3, so
    a call that wrote, created or removed anything shows up."""
    found: Snapshot = {}
    if not root.exists():
        return found
    found["."] = ("dir", 0, root.stat().st_mtime_ns, "")
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs):
            info = os.lstat(os.path.join(folder, name))
            key = os.path.relpath(os.path.join(folder, name), root)
            found[key] = ("dir", 0, info.st_mtime_ns, "")
        for name in sorted(files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            with open(path, "rb") as handle:
                digest = blake3.blake3(handle.read()).hexdigest()
            key = os.path.relpath(path, root)
            found[key] = ("file", info.st_size, info.st_mtime_ns, digest)
    return found


def expect(
    cls: type[BaseException], call: Callable[..., Any], *args: Any, **kw: Any
) -> BaseException:
    """`call` must raise exactly `cls`, not a subclass or a foreign one."""
    with pytest.raises(BaseException) as info:
        call(*args, **kw)
    assert type(info.value) is cls, repr(info.value)
    return info.value


def create(path: pathlib.Path, **options: Any) -> sentinel.Store:
    return sentinel.Store.new(path, PASSPHRASE, kdf=FAST, **options)


def keys_of(path: pathlib.Path) -> crypto.Keys:
    return crypto.open_keyfile(keyfile.read(str(path)), PASSPHRASE)


@pytest.fixture
def encrypted(store_path: pathlib.Path) -> Iterator[sentinel.Store]:
    opened = create(store_path)
    try:
        yield opened
    finally:
        opened.close()


def frame_of(store: sentinel.Store, pack: int, at: int) -> journal.Frame:
    """The frame of `pack` that holds file offset `at`."""
    for found in store._engine.journal.frames(pack, journal.PACK_HEADER_SIZE):
        if found.offset <= at < found.end:
            return found
    raise LookupError(at)


def patch_pack(
    store: sentinel.Store, pack: int, at: int, new: bytes, record: int
) -> None:
    """Overwrite bytes of a pack at `at` and recompute the CRCs of the
    record whose content starts at `record` and of its frame: what an
    attacker who edits the folder can always do."""
    path = store._engine.journal.path(pack)
    frame = frame_of(store, pack, at)
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(new)
        handle.seek(record - journal.RECORD_HEADER_SIZE)
        kind, length, _ = journal.RECORD_HEADER.unpack(
            handle.read(journal.RECORD_HEADER_SIZE)
        )
        content = handle.read(length)
        handle.seek(record - 4)
        handle.write(struct.pack(">I", zlib.crc32(content)))
        body_start = frame.offset + journal.FRAME_HEADER_SIZE
        handle.seek(body_start)
        body = handle.read(frame.end - 4 - body_start)
        handle.write(struct.pack(">I", zlib.crc32(body)))


def tamper_object(
    store: sentinel.Store, address: str, at: int, mask: int = 0x01
) -> None:
    """Flip bits of byte `at` of a stored object, CRCs fixed."""
    pack, offset, _ = refs.place(
        store._engine.state.objects[bytes.fromhex(address)]
    )
    data = store._engine.journal.read(pack, offset + at, 1)
    patch_pack(store, pack, offset + at, bytes((data[0] ^ mask,)), offset - 32)


# -- errors at open, each with an unchanged tree ------------------------------


def test_wrong_passphrase_fails_at_open_and_writes_nothing(
    store_path: pathlib.Path,
) -> None:
    with create(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
    before = snapshot(store_path)
    error = expect(
        sentinel.WrongPassphraseError,
        sentinel.Store.new,
        store_path,
        "not the passphrase",
    )
    assert isinstance(error, sentinel.PassphraseError)
    assert not isinstance(error, sentinel.CorruptionError)
    assert snapshot(store_path) == before


def test_encrypted_store_without_passphrase(store_path: pathlib.Path) -> None:
    create(store_path).close()
    before = snapshot(store_path)
    expect(sentinel.PassphraseRequiredError, sentinel.Store.new, store_path)
    expect(
        sentinel.PassphraseRequiredError,
        sentinel.Store.new,
        store_path,
        passphrase=None,
    )
    assert snapshot(store_path) == before


@pytest.mark.parametrize("passphrase", ["secret", ""])
def test_passphrase_for_a_plain_store(
    store_path: pathlib.Path, passphrase: str
) -> None:
    with sentinel.Store.new(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
    before = snapshot(store_path)
    expect(
        sentinel.PassphraseNotExpectedError,
        sentinel.Store.new,
        store_path,
        passphrase,
    )
    assert snapshot(store_path) == before


@pytest.mark.parametrize("bad", ["", 7, b"bytes", "lone \ud800"])
def test_invalid_passphrase_creates_nothing(
    tmp_path: pathlib.Path, bad: Any
) -> None:
    path = tmp_path / "new" / "store"
    expect(
        sentinel.InvalidPassphraseError,
        sentinel.Store.new,
        path,
        bad,
        kdf=FAST,
    )
    assert not (tmp_path / "new").exists()


def test_invalid_passphrase_for_an_existing_store(
    store_path: pathlib.Path,
) -> None:
    create(store_path).close()
    before = snapshot(store_path)
    for bad in ("", 7):
        expect(
            sentinel.InvalidPassphraseError,
            sentinel.Store.new,
            store_path,
            bad,
        )
    assert snapshot(store_path) == before


def test_bad_options_create_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "store"
    cases: list[tuple[dict[str, Any], type[BaseException]]] = [
        ({"verification": V.strict()}, sentinel.InvalidInputError),
        ({"verification": V.warn()}, sentinel.InvalidInputError),
        ({"verification": "strict"}, sentinel.InvalidInputError),
        ({"kdf": FAST}, sentinel.InvalidInputError),
        (
            {"passphrase": "x", "kdf": (8, 1, 1)},
            sentinel.InvalidInputError,
        ),
    ]
    for options, cls in cases:
        expect(cls, sentinel.Store.new, path, **options)
        assert not path.exists()


def test_damaged_or_missing_key_file(store_path: pathlib.Path) -> None:
    create(store_path).close()
    path = store_path / "keys"
    good = path.read_bytes()

    path.write_bytes(good[:100] + bytes((good[100] ^ 1,)) + good[101:])
    before = snapshot(store_path)
    expect(sentinel.CorruptKeyFileError, create, store_path)
    assert snapshot(store_path) == before

    # An edit with the checksum recomputed: the sealed signing seed
    # fails its tag, which is tampering, not a wrong passphrase.
    edited = bytearray(good)
    edited[150] ^= 1
    edited[188:] = blake3.blake3(bytes(edited[:188])).digest()
    path.write_bytes(bytes(edited))
    expect(sentinel.IntegrityError, create, store_path)

    path.unlink()
    before = snapshot(store_path)
    expect(sentinel.CorruptKeyFileError, create, store_path)
    assert snapshot(store_path) == before
    expect(sentinel.CorruptKeyFileError, sentinel.read_public_key, store_path)


def test_unknown_encryption_in_config(store_path: pathlib.Path) -> None:
    create(store_path).close()
    path = store_path / config.FILE_NAME
    path.write_bytes(path.read_bytes().replace(b"aes-256-gcm-siv", b"rot13"))
    expect(sentinel.UnsupportedFormatError, create, store_path)


def test_config_and_files_of_an_encrypted_store(
    encrypted: sentinel.Store, store_path: pathlib.Path
) -> None:
    assert config.read(str(store_path))["encryption"] == "aes-256-gcm-siv"
    assert sorted(os.listdir(store_path)) == [
        "keys",
        "lock",
        "objects",
        "refs",
        "sentinel.json",
    ]
    assert len((store_path / "keys").read_bytes()) == crypto.KEYFILE_SIZE
    assert encrypted.encrypted and encrypted.verification == V.silent()


def test_unfinished_creation_is_resumed(tmp_path: pathlib.Path) -> None:
    # A crash after the key file but before the config: nothing was
    # sealed yet, so a new creation replaces or removes the key file.
    for second in ("other passphrase", None):
        path = tmp_path / f"store-{second}"
        create(path).close()
        (path / config.FILE_NAME).unlink()
        old_keys = (path / "keys").read_bytes()
        if second is None:
            sentinel.Store.new(path).close()
            assert not (path / "keys").exists()
        else:
            sentinel.Store.new(path, second, kdf=FAST).close()
            assert (path / "keys").read_bytes() != old_keys
            sentinel.Store.new(path, second).close()


def test_options_per_read_are_checked(
    any_store: sentinel.Store,
) -> None:
    users = any_store.collection("users")
    users.insert("u1", {"v": 1})
    expect(sentinel.InvalidInputError, users.get, "u1", verification="x")
    for call in (
        lambda options: users.get("u1", verification=options),
        lambda options: users.get_many(["u1"], verification=options),
        lambda options: users.history("u1", verification=options),
        lambda options: users.all(verification=options),
        lambda options: users.get_at(
            "u1", "2099-01-01T00:00:00+00:00", verification=options
        ),
        lambda options: users.query({"v": 1}, verification=options),
        lambda options: users.aggregate("sum", "v", verification=options),
    ):
        assert call(V.silent()) is not None
        if any_store.encrypted:
            assert call(V.strict()) is not None
        else:
            expect(sentinel.InvalidInputError, call, V.strict())
            expect(sentinel.InvalidInputError, call, V.warn())


# -- what an encrypted folder reveals -----------------------------------------

SECRETS = {
    "collection": "zebracollectionqx",
    "other collection": "quagga.ledger",
    "id": "okapi-identifier-77",
    "batch id": "narwhal-batch-id",
    "bulk id": "pangolin-bulk-id",
    "key": "axolotlkeyname",
    "value": "platypus value text",
    "nested value": "ocelot-nested-value",
    "updated value": "capybara-update",
    "list item": "wombat-list-item",
    "index field": "manatee.indexed-field",
    "dropped index field": "dugong-dropped-field",
}


def write_secrets(store: sentinel.Store) -> list[sentinel.Document]:
    """Use every write path with the distinctive strings above."""
    s = SECRETS
    docs = []
    main = store.collection(s["collection"])
    other = store.collection(s["other collection"])
    docs.append(
        main.insert(
            s["id"],
            {
                s["key"]: s["value"],
                "n": {"deep": s["nested value"]},
                "l": [s["list item"]] * 3,
            },
        )
    )
    docs.append(main.update(s["id"], {"later": s["updated value"]}))
    with main.batch() as batch:
        batch.insert(s["batch id"], {"x": s["value"]})
    docs.extend(main.bulk_insert([(s["bulk id"], {"y": s["value"]})]))
    other.insert(s["id"], {s["key"]: s["value"]})
    main.delete(s["batch id"])
    main.restore(s["batch id"])
    store.delete_collection(s["other collection"])
    store.restore_collection(s["other collection"])
    store.delete_collection(s["other collection"])
    # Index records and the table's index definitions (format 2).
    main.create_index(s["index field"])
    main.create_index(s["dropped index field"])
    main.drop_index(s["dropped index field"])
    assert [e.field for e in store.log() if e.field] == [
        s["index field"],
        s["dropped index field"],
        s["dropped index field"],
    ]
    store._engine.checkpoint()
    return docs


def folder_bytes(root: pathlib.Path) -> bytes:
    chunks = []
    for folder, _, files in os.walk(root):
        for name in files:
            chunks.append(name.encode())
            with open(os.path.join(folder, name), "rb") as handle:
                chunks.append(handle.read())
    return b"\x00".join(chunks)


def test_scan_finds_no_id_name_or_data(
    opener: Opener, store_path: pathlib.Path
) -> None:
    with opener(store_path) as store:
        docs = write_secrets(store)
        unkeyed = []
        for doc in docs:
            payload = objects.version_payload(
                doc.collection,
                doc.id,
                doc.version,
                bytes.fromhex(doc.parent) if doc.parent else None,
                doc.created_at,
                doc.updated_at,
                doc.deleted,
                codec.canonical(doc.data),
            )
            unkeyed.append(objects.address_of(objects.TYPE_VERSION, payload))
    data = folder_bytes(store_path)
    lowered = data.lower()
    found = {
        label: text
        for label, text in SECRETS.items()
        if text.encode().lower() in lowered
    }
    fingerprints = [
        address.hex()
        for address in unkeyed
        if address in data or address.hex().encode() in lowered
    ]
    if opener.encrypted:
        assert found == {}
        assert fingerprints == []
        assert PASSPHRASE.encode() not in data
    else:
        # The control: the scan does see a plain store's names, and
        # plain addresses are the unkeyed BLAKE3 of the content.
        assert {
            "collection",
            "id",
            "batch id",
            "bulk id",
            "index field",
            "dropped index field",
        } <= set(found)
        assert len(fingerprints) == len(docs)


# -- signatures ---------------------------------------------------------------


def trailer_for(signer: Ed25519PrivateKey, message: bytes) -> bytes:
    public = signer.public_key().public_bytes_raw()
    return crypto.signer_id(public) + signer.sign(
        crypto.SIGNATURE_DOMAIN + message
    )


def forge(
    keys: crypto.Keys,
    kind: int,
    payload: bytes,
    trailer: bytes | None,
    address: bytes | None = None,
) -> objects.Encoded:
    """A sealed object built from the primitives as the spec describes
    it, with any trailer (or none) and optionally sealed for another
    `address`: what a holder of the sealing key but not of the store's
    signing key, or a faulty writer, could write."""
    typed = b"version %d\x00" % len(payload) + payload
    if address is None:
        address = blake3.blake3(typed, key=keys.addressing_key).digest()
    plaintext = zstandard.ZstdCompressor(level=3).compress(payload)
    plaintext += trailer or b""
    header = struct.pack(
        ">4sBBBBI",
        b"SNTO",
        kind,
        2,
        0 if trailer is None else 1,
        0,
        len(plaintext) + 28,
    )
    nonce = os.urandom(12)
    box = AESGCMSIV(keys.sealing_key.raw).encrypt(
        nonce, plaintext, header + address
    )
    signature = trailer[8:] if trailer else b""
    return objects.Encoded(
        objects.Address(address), header + nonce + box, signature
    )


class Forger:
    """A codec that writes forged objects and reads as the store does."""

    signed = True

    def __init__(
        self,
        real: objects.ObjectCodec,
        make: Callable[[int, bytes], objects.Encoded],
    ) -> None:
        self.real = real
        self.make = make

    def encode(self, kind: int, payload: bytes) -> objects.Encoded:
        return self.make(kind, payload)

    def decode(self, *args: Any, **options: Any) -> objects.Opened:
        return self.real.decode(*args, **options)


def insert_forged(
    store: sentinel.Store,
    doc_id: str,
    make_trailer: Callable[[bytes], bytes | None],
) -> sentinel.Document:
    keys = keys_of(pathlib.Path(store.path))
    engine = store._engine
    real = engine.codec

    def make(kind: int, payload: bytes) -> objects.Encoded:
        typed = objects.typed_content(kind, payload)
        return forge(keys, kind, payload, make_trailer(typed))

    engine.codec = Forger(real, make)
    try:
        return store.collection("users").insert(doc_id, {"forged": True})
    finally:
        engine.codec = real


def test_signatures_verify_after_reopen(store_path: pathlib.Path) -> None:
    with create(store_path) as store:
        users = store.collection("users")
        written = [users.insert("u1", {"n": n}) for n in range(3)]
        public = store.public_key
    with create(store_path, verification=V.strict()) as store:
        users = store.collection("users")
        found = users.history("u1")
        assert [doc.signature for doc in found] == [
            doc.signature for doc in reversed(written)
        ]
        for doc in found:
            sentinel.verify_version(public, doc)
            signing.verify(
                public,
                sealed.signed_message(doc),
                bytes.fromhex(doc.signature),
            )
        assert users.get("u1", verification=V.strict()) == written[-1]
        assert list(users.all()) == [written[-1]]
        report = store.verify()
        assert report.ok and report.signatures == 3
    assert sentinel.read_public_key(store_path) == public


@pytest.mark.parametrize(
    "case, cls",
    [
        ("bad signature", sentinel.SignatureError),
        ("missing signature", sentinel.SignatureError),
        ("other signer", sentinel.UnknownSignerError),
        ("other key, our signer id", sentinel.SignatureError),
    ],
)
def test_bad_signatures_in_each_mode(
    encrypted: sentinel.Store,
    case: str,
    cls: type[sentinel.SignatureError],
) -> None:
    ours = Ed25519PrivateKey.from_private_bytes(
        keys_of(pathlib.Path(encrypted.path)).signing_seed()
    )
    other = Ed25519PrivateKey.generate()

    def make_trailer(typed: bytes) -> bytes | None:
        if case == "missing signature":
            return None
        if case == "bad signature":
            good = bytearray(trailer_for(ours, typed))
            good[20] ^= 1
            return bytes(good)
        if case == "other signer":
            return trailer_for(other, typed)
        return trailer_for(ours, typed)[:8] + trailer_for(other, typed)[8:]

    forged = insert_forged(encrypted, "forged", make_trailer)
    users = encrypted.collection("users")

    # Hashes and tags pass: the forger held the sealing key.  Silent
    # mode (the default) checks nothing more and warns about nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert users.get("forged").data == {"forged": True}
        assert users.get("forged", verification=V.silent()) == forged

    error = expect(cls, users.get, "forged", verification=V.strict())
    assert error.address == forged.hash and error.path
    expect(cls, users.history, "forged", verification=V.strict())
    expect(cls, lambda: list(users.all(verification=V.strict())))
    strict = {"verification": V.strict()}
    expect(cls, users.query, {"forged": True}, **strict)
    expect(cls, users.query, None, as_of="2099-01-01T00:00:00+00:00", **strict)
    expect(cls, users.aggregate, "count", where={"forged": True}, **strict)

    with pytest.warns(sentinel.SignatureWarning, match=forged.hash) as caught:
        found = users.get("forged", verification=V.warn())
    assert found == forged
    # The warning points at the caller's line, not into the library.
    assert caught[0].filename == __file__

    report = encrypted.verify()
    assert [(p.kind, p.address) for p in report.problems] == [
        ("bad-signature", forged.hash)
    ]
    with pytest.raises(sentinel.SignatureError):
        sentinel.verify_version(encrypted.public_key, found)


def test_content_under_a_wrong_address(encrypted: sentinel.Store) -> None:
    # A writer holding the keys sealed version content under an address
    # that is not its keyed hash.  The tag passes (it binds whatever
    # was sealed), but every read recomputes the keyed address, in
    # every mode, and so does verify().
    keys = keys_of(pathlib.Path(encrypted.path))
    signer = Ed25519PrivateKey.from_private_bytes(keys.signing_seed())
    engine = encrypted._engine
    real = engine.codec

    def make(kind: int, payload: bytes) -> objects.Encoded:
        typed = objects.typed_content(kind, payload)
        wrong = blake3.blake3(b"other" + typed).digest()
        return forge(keys, kind, payload, trailer_for(signer, typed), wrong)

    engine.codec = Forger(real, make)
    try:
        doc = encrypted.collection("users").insert("odd", {"v": 1})
    finally:
        engine.codec = real
    users = encrypted.collection("users")
    expect(sentinel.CorruptObjectError, users.get, "odd")
    expect(sentinel.CorruptObjectError, lambda: list(users.all()))
    for options in (V.silent(), V.strict(), V.warn()):
        error = expect(
            sentinel.CorruptObjectError, users.get, "odd", verification=options
        )
        assert error.expected == doc.hash and error.actual != doc.hash
    # As for any damaged object: the object and the ref naming it.
    report = encrypted.verify()
    assert sorted((p.kind, p.address) for p in report.problems) == [
        ("bad-ref", doc.hash),
        ("corrupt-object", doc.hash),
    ]


def test_store_wide_strict_default(store_path: pathlib.Path) -> None:
    with create(store_path) as store:
        insert_forged(store, "forged", lambda typed: None)
        store.collection("users").insert("fine", {"v": 1})
    with create(store_path, verification=V.strict()) as store:
        users = store.collection("users")
        assert users.get("fine").data == {"v": 1}
        expect(sentinel.SignatureError, users.get, "forged")
        assert users.get("forged", verification=V.silent()) is not None
    with create(store_path, verification=V.warn()) as store:
        with pytest.warns(sentinel.SignatureWarning):
            assert store.collection("users").get("forged") is not None


def test_tampered_objects_fail_in_every_mode(
    encrypted: sentinel.Store,
) -> None:
    users = encrypted.collection("users")
    doc = users.insert("u1", {"secret": "x" * 50})
    _, _, length = refs.place(
        encrypted._engine.state.objects[bytes.fromhex(doc.hash)]
    )
    kinds: dict[str, int] = {}
    for at in range(length):
        tamper_object(encrypted, doc.hash, at, 0x80)
        for options in (V.silent(), V.warn(), V.strict()):
            with pytest.raises(sentinel.CorruptionError) as info:
                users.get("u1", verification=options)
            assert not isinstance(info.value, sentinel.SignatureError)
            assert info.value.address == doc.hash
        name = type(info.value).__name__
        kinds[name] = kinds.get(name, 0) + 1
        tamper_object(encrypted, doc.hash, at, 0x80)
    assert users.get("u1", verification=V.strict()) == doc
    # The header's checks catch what they can name; the tag the rest.
    assert set(kinds) == {"CorruptObjectError", "IntegrityError"}
    assert kinds["IntegrityError"] == length - objects.HEADER_SIZE


def test_tampering_is_reported_by_verify(encrypted: sentinel.Store) -> None:
    users = encrypted.collection("users")
    doc = users.insert("u1", {"v": 1})
    users.insert("u2", {"v": 2})
    tamper_object(encrypted, doc.hash, 40)
    report = encrypted.verify()
    kinds = sorted((p.kind, p.address) for p in report.problems)
    assert kinds == [("bad-ref", doc.hash), ("corrupt-object", doc.hash)]
    assert "authentication" in report.problems[0].detail


def test_moved_object_fails_its_tag(encrypted: sentinel.Store) -> None:
    # Valid sealed bytes under another address: the address is
    # associated data, so the tag fails before anything is decrypted.
    users = encrypted.collection("users")
    one = users.insert("u1", {"v": 1})
    two = users.insert("u2", {"v": 1})
    engine = encrypted._engine
    stored = engine.journal.read(
        *refs.place(engine.state.objects[bytes.fromhex(two.hash)])
    )
    expect(
        sentinel.IntegrityError,
        engine.codec.decode,
        stored,
        bytes.fromhex(one.hash),
    )


def test_tampered_sealed_name_in_the_journal(
    store_path: pathlib.Path,
) -> None:
    with create(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
        engine = store._engine
        for frame in engine.journal.frames(1, journal.PACK_HEADER_SIZE):
            for item in journal.records(frame.body, frame.body_offset):
                if item.kind == journal.RECORD_REF:
                    at = item.offset + 5
                    old = engine.journal.read(1, at, 1)
                    patch_pack(store, 1, at, bytes((old[0] ^ 1,)), item.offset)
    before = snapshot(store_path)
    error = expect(sentinel.CorruptJournalError, create, store_path)
    assert "sealed name" in str(error)
    assert snapshot(store_path) == before


def test_tampered_sealed_index_record(store_path: pathlib.Path) -> None:
    with create(store_path) as store:
        users = store.collection("users")
        users.insert("u1", {"v": 1})
        users.create_index("v")
        engine = store._engine
        for frame in engine.journal.frames(1, journal.PACK_HEADER_SIZE):
            for item in journal.records(frame.body, frame.body_offset):
                operation = item.content[:1]
                if item.kind == journal.RECORD_COLLECTION and operation == (
                    bytes((refs.OP_CREATE_INDEX,))
                ):
                    # The last byte of the record: the sealed field path.
                    at = item.offset + len(item.content) - 1
                    old = engine.journal.read(1, at, 1)
                    patch_pack(store, 1, at, bytes((old[0] ^ 1,)), item.offset)
    before = snapshot(store_path)
    error = expect(sentinel.CorruptJournalError, create, store_path)
    assert "sealed field" in str(error)
    assert snapshot(store_path) == before


def test_planted_plain_table_is_ignored(store_path: pathlib.Path) -> None:
    with create(store_path) as store:
        store.collection("users").insert("u1", {"v": 1})
        store._engine.checkpoint()
        state = store._engine.state
        plain = table.encode(state)
    (store_path / "refs" / "table").write_bytes(plain)
    with create(store_path) as store:
        assert "authentication" in (store._engine.table_problem or "")
        assert store.collection("users").get("u1").data == {"v": 1}


# -- keys ---------------------------------------------------------------------


def test_change_passphrase(store_path: pathlib.Path) -> None:
    with create(store_path) as store:
        users = store.collection("users")
        docs = [users.insert(f"u{n}", {"n": n}) for n in range(5)]
        public = store.public_key
        before = snapshot(store_path)
        store.change_passphrase(PASSPHRASE, "new passphrase")
        after = snapshot(store_path)
        # Only the key file (and so the folder's mtime) changed: no
        # object, ref or table was rewritten.
        changed = {
            path
            for path in before.keys() | after.keys()
            if before.get(path) != after.get(path)
        }
        assert changed == {".", "keys"}
        # This handle keeps working: the keys did not change.
        users.insert("after", {"n": 9})
        assert users.get("u1") == docs[1]

    before = snapshot(store_path)
    expect(sentinel.WrongPassphraseError, create, store_path)
    assert snapshot(store_path) == before
    with sentinel.Store.new(
        store_path, "new passphrase", verification=V.strict()
    ) as store:
        users = store.collection("users")
        assert [users.get(f"u{n}") for n in range(5)] == docs
        assert users.get("after").data == {"n": 9}
        assert store.public_key == public
        assert store.verify().ok


def test_change_passphrase_errors(
    store_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with create(store_path) as store:
        before = snapshot(store_path)
        expect(
            sentinel.WrongPassphraseError,
            store.change_passphrase,
            "wrong",
            "new",
        )
        expect(
            sentinel.InvalidPassphraseError,
            store.change_passphrase,
            PASSPHRASE,
            "",
        )
        expect(
            sentinel.InvalidInputError,
            store.change_passphrase,
            PASSPHRASE,
            "new",
            kdf="cheap",
        )
        assert snapshot(store_path) == before
    with sentinel.Store.new(tmp_path / "plain") as plain:
        expect(
            sentinel.PassphraseNotExpectedError,
            plain.change_passphrase,
            "a",
            "b",
        )
    closed = create(tmp_path / "closed")
    closed.close()
    expect(sentinel.StoreClosedError, closed.change_passphrase, "a", "b")


def test_change_passphrase_can_change_the_kdf_cost(
    store_path: pathlib.Path,
) -> None:
    stronger = crypto.KdfParams(memory_kib=64, iterations=2, lanes=1)
    with create(store_path) as store:
        store.change_passphrase(PASSPHRASE, "next", kdf=stronger)
    header = (store_path / "keys").read_bytes()[8:20]
    assert struct.unpack(">III", header) == (64, 2, 1)
    sentinel.Store.new(store_path, "next").close()


def test_concurrent_changes_lose_no_passphrase(
    store_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create(store_path)
    second = create(store_path)
    real = crypto.rewrap
    raced = threading.Event()

    def slow_rewrap(*args: Any, **kwargs: Any) -> bytes:
        result = real(*args, **kwargs)
        if not raced.is_set():
            # While the first change derives its key, the other handle
            # changes the passphrase: the first must notice.
            raced.set()
            second.change_passphrase(PASSPHRASE, "second wins")
        return result

    monkeypatch.setattr(crypto, "rewrap", slow_rewrap)
    expect(
        sentinel.WrongPassphraseError,
        first.change_passphrase,
        PASSPHRASE,
        "first",
    )
    first.close()
    second.close()
    sentinel.Store.new(store_path, "second wins").close()
    expect(
        sentinel.WrongPassphraseError, sentinel.Store.new, store_path, "first"
    )


def test_public_key_without_the_passphrase(
    encrypted: sentinel.Store, store_path: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    doc = encrypted.collection("users").insert("u1", {"v": 1})
    public = sentinel.read_public_key(store_path)
    assert public == encrypted.public_key and len(public) == 32
    assert public == keys_of(store_path).public_key

    sentinel.verify_version(public, doc)
    sentinel.verify_version(public.hex(), doc)
    exported = {
        "collection": doc.collection,
        "id": doc.id,
        "version": doc.version,
        "parent": doc.parent,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
        "deleted": doc.deleted,
        "data": doc.data,
        "signature": doc.signature,
    }
    sentinel.verify_version(public, exported)
    for field, value in (
        ("data", {"v": 2}),
        ("version", 2),
        ("updated_at", doc.created_at[:-1] + "1"),
        ("id", "u2"),
        ("collection", "other"),
    ):
        changed = {**exported, field: value}
        if changed == exported:
            continue
        expect(
            sentinel.SignatureError, sentinel.verify_version, public, changed
        )
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    expect(sentinel.SignatureError, sentinel.verify_version, other, doc)
    for bad_key, version in (
        (b"short", doc),
        ("zz", doc),
        (public, {"id": "u1"}),
        (public, {**exported, "signature": "not hex"}),
        (public, {**exported, "version": 0}),
        (public, {**exported, "parent": 5}),
        (public, 7),
    ):
        with pytest.raises(sentinel.InvalidInputError):
            sentinel.verify_version(bad_key, version)

    plain_path = tmp_path / "plain"
    with sentinel.Store.new(plain_path) as plain:
        unsigned = plain.collection("users").insert("u1", {"v": 1})
        assert plain.public_key is None and not plain.encrypted
    assert unsigned.signature == ""
    expect(sentinel.SignatureError, sentinel.verify_version, public, unsigned)
    expect(sentinel.NotFoundError, sentinel.read_public_key, plain_path)
    expect(
        sentinel.UnsupportedFormatError,
        sentinel.read_public_key,
        tmp_path / "nothing",
    )


# -- the sealed codec, property-tested ----------------------------------------

CODEC_KEYS = crypto.Keys.from_secrets(bytes(range(32)), bytes(range(32, 64)))
CODEC = sealed.SealedCodec(CODEC_KEYS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_sealed_codec_round_trip(payload: bytes) -> None:
    encoded = CODEC.encode(objects.TYPE_VERSION, payload)
    for options in (V.silent(), V.strict()):
        opened = CODEC.decode(
            encoded.stored, encoded.address, verification=options
        )
        assert opened == (objects.TYPE_VERSION, payload, encoded.signature)
    assert encoded.address == CODEC.address(objects.TYPE_VERSION, payload)
    # Sealing is randomised; addressing and signing are not.
    again = CODEC.encode(objects.TYPE_VERSION, payload)
    assert again.stored != encoded.stored
    assert (again.address, again.signature) == (
        encoded.address,
        encoded.signature,
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.binary(min_size=32, max_size=32))
def test_garbage_is_a_corruption_error(garbage: bytes, address: bytes) -> None:
    # Random bytes, and random bytes behind a valid sealed header, never
    # escape as a foreign exception nor return data.
    header = objects.HEADER.pack(
        objects.MAGIC, 1, 2, 1, 0, max(len(garbage), 0)
    )
    for stored in (garbage, header + garbage):
        for options in (V.silent(), V.strict()):
            with pytest.raises(sentinel.CorruptionError):
                CODEC.decode(stored, address, verification=options)


def test_plain_objects_are_refused_in_an_encrypted_store() -> None:
    address, stored = objects.encode(objects.TYPE_VERSION, b"{}")
    error = expect(sentinel.CorruptObjectError, CODEC.decode, stored, address)
    assert "encoding 1" in str(error)
    sealed_object = CODEC.encode(objects.TYPE_VERSION, b"{}")
    expect(
        sentinel.CorruptObjectError,
        objects.PLAIN.decode,
        sealed_object.stored,
        sealed_object.address,
    )
