"""sentinel.crypto: fixed vectors, every error case, nonce uniqueness.

The vectors use fixed keys, salts and nonces (through the internal
`_build_keyfile` and `_seal_with_nonce`) and the fast `TEST_PARAMS`; the
key file vector is also rebuilt here from the documented layout with the
primitives alone, so the module docstring cannot drift from the code.
Two published vectors (RFC 8452, RFC 8032) anchor the primitives.
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata
import warnings
from collections.abc import Callable
from typing import Any

import blake3
import figures
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel import crypto, signing
from sentinel.errors import (
    CorruptionError,
    InvalidInputError,
    SentinelError,
    UnsupportedFormatError,
)

PASSPHRASE = "correct horse battery staple"
MASTER = bytes(range(0, 32))
SEED = bytes(range(32, 64))
SALT = bytes(range(64, 80))
WRAP_NONCE = bytes(range(80, 92))
SEED_NONCE = bytes(range(92, 104))
BOX_NONCE = bytes(range(104, 116))
MESSAGE = b'version 7\x00{"a":1}'

KEK = "8c7763972c5fb5e1e42a87202e659767c30f080109825dd278b0287890a85ac5"
SEALING = "351b589c13c8c7b8757a77de2402ef7ef9f336cb2c7573fbfcf120cfe4290831"
ADDRESSING = "13a85a6d6903adbe62326b9d8dbd162562b7c890c2583ad88b6d9bd51db2da52"
NAME = "759912aca8b57033e9198a1f2d5d9f9dd528ed6cde62cd840d30e8ca92100877"
SEED_SEAL = "49e23cb753e5f37197f3545f21b3fb7c75f63261cd0cff3078b857084249ca2d"
PUBLIC = "29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc9322966dd7"
SIGNER = "17cd540e60ff9edb"
KEYFILE = bytes.fromhex(
    "534e544b01010100000000080000000100000001404142434445464748494a4b"
    "4c4d4e4f29acbae141bccaf0b22e1a94d34d0bc7361e526d0bfe12c89794bc93"
    "22966dd7505152535455565758595a5bb4cb28e417cffc68a5b0d0e747f3454e"
    "e91e166b999c1a10f9b09b7c02f30293b81cdcdcb86c2a21ca4878c4d74bbcb8"
    "5c5d5e5f60616263646566678de74c1c475a5a3f877b1bc95da34c927136edcf"
    "8a4ecb5dff076fa4236bfd58c029a78a314d37c8722c224eae62f4d81e7ce47a"
    "fc2fd9129da0949e4763dc505df341bad3743a4448c51ed178cb3eac"
)
BOX = (
    "68696a6b6c6d6e6f70717273c4a59d936f5bfeb94b0322dca72e4e62d9679856"
    "b8c90fef83ae04abf0a705"
)
ADDRESS = "ca01fcd5e7b33daf45d66e0c2ff1509e5f355bb121db94f0db2793e94fb0b9b8"
SEALED_COLLECTION = (
    "3e48b81dac126665b183b9b7b67b78a7b2d88e0d12d0b6ed99753266e35eb03a"
    "55beff94f4e4483d26e35c078a8bcf1c"
)
SEALED_ID = (
    "3ac8877fa62d45c9bd38687eba8e380187ca6dc9a8ce0908e25694bbd0283eab"
    "92e3af1190f53f0f590dae987dbf96b4"
)
SEALING_BYTES = bytes.fromhex(SEALING)
SIGNATURE = (
    "8c2fa21486b6e09e90123a9c49271ec0f44d53a122578a67aabe9b55f0939fb4"
    "49bf32571c04da3a5c0dba41daa1f812c0eeb9f3a84558cdbd2f346243cc0f08"
)


def expect(
    cls: type[BaseException],
    call: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> BaseException:
    """Run `call`; it must raise exactly `cls` (not a subclass, and
    never a bare `cryptography` exception)."""
    with pytest.raises(BaseException) as info:
        call(*args, **kwargs)
    assert type(info.value) is cls, repr(info.value)
    return info.value


def build_vector() -> tuple[bytes, crypto.Keys]:
    return crypto._build_keyfile(
        PASSPHRASE,
        crypto.TEST_PARAMS,
        salt=SALT,
        master_key=MASTER,
        signing_seed=SEED,
        wrap_nonce=WRAP_NONCE,
        seed_nonce=SEED_NONCE,
    )


def with_checksum(body: bytes) -> bytes:
    """What an attacker who edits the key file can always do."""
    return body[:188] + blake3.blake3(body[:188]).digest()


def flip(data: bytes, at: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[at] ^= mask
    return bytes(changed)


@pytest.fixture(scope="module")
def keys() -> crypto.Keys:
    return build_vector()[1]


@pytest.fixture(scope="module")
def other_keys() -> crypto.Keys:
    return crypto.create_keyfile("another one", crypto.TEST_PARAMS)[1]


# -- published vectors anchor the primitives ----------------------------------


def test_rfc8452_aes_256_gcm_siv_vectors_through_seal() -> None:
    key = bytes.fromhex("01" + "00" * 31)
    nonce = bytes.fromhex("03" + "00" * 11)
    assert crypto._seal_with_nonce(key, nonce, b"", b"") == nonce + (
        bytes.fromhex("07f5f4169bbf55a8400cd47ea6fd400f")
    )
    assert crypto._seal_with_nonce(
        key, nonce, bytes.fromhex("0100000000000000"), b""
    ) == nonce + bytes.fromhex(
        "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28"
    )


def test_rfc8032_seed_gives_the_published_public_key() -> None:
    seed = bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
    )
    keys = crypto.Keys.from_secrets(MASTER, seed)
    assert keys.public_key.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert keys.signing_seed() == seed
    # Without the domain prefix, the raw key signs as RFC 8032 test 1.
    assert keys.signing_key.sign(b"").hex().startswith("e5564300c360ac72")


# -- fixed vectors ------------------------------------------------------------


def test_kek_vector() -> None:
    kek = crypto.derive_kek(PASSPHRASE, SALT, crypto.TEST_PARAMS)
    assert kek.hex() == KEK


def test_subkey_vectors(keys: crypto.Keys) -> None:
    assert keys.master_key == MASTER
    assert keys.sealing_key.raw.hex() == SEALING
    assert keys.addressing_key.hex() == ADDRESSING
    assert keys.name_key.raw.hex() == NAME
    assert crypto._signing_seal_key(MASTER).raw.hex() == SEED_SEAL
    assert keys.public_key.hex() == PUBLIC
    assert crypto.signer_id(keys.public_key).hex() == SIGNER
    # The subkeys are BLAKE3 derive_key of the master key, nothing more.
    derived = blake3.blake3(MASTER, derive_key_context=crypto.CONTEXT_SEALING)
    assert derived.hexdigest() == SEALING
    assert len({SEALING, ADDRESSING, NAME, SEED_SEAL, MASTER.hex()}) == 5


def test_keyfile_vector_byte_for_byte() -> None:
    data, _ = build_vector()
    assert len(data) == crypto.KEYFILE_SIZE == 220
    assert data == KEYFILE


def test_keyfile_vector_matches_the_documented_layout() -> None:
    """Rebuild the key file from the module docstring's table."""
    params = (8).to_bytes(4, "big") + (1).to_bytes(4, "big") * 2
    head = b"SNTK\x01\x01\x01\x00" + params + SALT + bytes.fromhex(PUBLIC)
    assert len(head) == 68
    kek = Argon2id(
        salt=SALT, length=32, iterations=1, lanes=1, memory_cost=8
    ).derive(PASSPHRASE.encode())
    wrapped = WRAP_NONCE + AESGCMSIV(kek).encrypt(
        WRAP_NONCE, MASTER, head[:36]
    )
    sealed_seed = SEED_NONCE + AESGCMSIV(bytes.fromhex(SEED_SEAL)).encrypt(
        SEED_NONCE, SEED, head
    )
    body = head + wrapped + sealed_seed
    assert body + blake3.blake3(body).digest() == KEYFILE
    assert KEYFILE[68:80] == WRAP_NONCE and KEYFILE[128:140] == SEED_NONCE


def test_open_keyfile_vector(keys: crypto.Keys) -> None:
    opened = crypto.open_keyfile(KEYFILE, PASSPHRASE)
    assert opened.master_key == MASTER
    assert opened.signing_seed() == SEED
    assert opened.public_key == keys.public_key
    assert crypto.public_key(KEYFILE).hex() == PUBLIC


def test_seal_vector(keys: crypto.Keys) -> None:
    box = crypto._seal_with_nonce(
        keys.sealing_key, BOX_NONCE, b"hello, sentinel", b"SNTO header"
    )
    assert box.hex() == BOX
    assert len(box) == len(b"hello, sentinel") + crypto.SEAL_OVERHEAD
    opened = crypto.open(keys.sealing_key, box, b"SNTO header")
    assert opened == b"hello, sentinel"
    assert crypto.open(SEALING_BYTES, box, b"SNTO header") == opened


def test_keyed_address_vector(keys: crypto.Keys) -> None:
    address = crypto.keyed_address(keys.addressing_key, MESSAGE)
    assert address.hex() == ADDRESS
    assert crypto.keyed_address(
        keys.addressing_key, b"version 7\x00", b'{"a":1}'
    ) == bytes.fromhex(ADDRESS)
    # Without the key the address is not the plain BLAKE3 of the content.
    assert address != blake3.blake3(MESSAGE).digest()


def test_name_vectors(keys: crypto.Keys) -> None:
    collection = crypto.seal_name(
        keys.name_key, "users", crypto.COLLECTION_CONTEXT
    )
    doc_id = crypto.seal_name(
        keys.name_key, "user-123", crypto.id_context("users")
    )
    assert collection.hex() == SEALED_COLLECTION
    assert doc_id.hex() == SEALED_ID
    assert len(collection) == len(doc_id) == 32 + crypto.TAG_SIZE


def test_signature_vector(keys: crypto.Keys) -> None:
    signature = signing.sign(keys, MESSAGE)
    assert signature.hex() == SIGNATURE
    # An outside verifier needs only the public key and the domain.
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(PUBLIC)).verify(
        signature, b"Sentinel signed object v1\x00" + MESSAGE
    )
    trailer = signing.make_trailer(keys, MESSAGE)
    assert trailer.hex() == SIGNER + SIGNATURE
    assert signing.split_trailer(trailer) == (
        bytes.fromhex(SIGNER),
        bytes.fromhex(SIGNATURE),
    )


# -- passphrases and the key file ---------------------------------------------


def test_create_and_open_round_trip() -> None:
    data, keys = crypto.create_keyfile("s3cret", crypto.TEST_PARAMS)
    opened = crypto.open_keyfile(data, "s3cret")
    assert opened.master_key == keys.master_key
    assert opened.signing_seed() == keys.signing_seed()
    assert crypto.public_key(data) == keys.public_key
    again, other = crypto.create_keyfile("s3cret", crypto.TEST_PARAMS)
    assert again[20:] != data[20:]
    assert other.master_key != keys.master_key


def test_default_params_are_rfc9106_and_work() -> None:
    params = crypto.DEFAULT_PARAMS
    assert (params.memory_kib, params.iterations, params.lanes) == (
        65536,
        3,
        4,
    )
    data, keys = crypto.create_keyfile("slow but strong")
    assert data[8:20] == bytes.fromhex("000100000000000300000004")
    assert crypto.open_keyfile(data, "slow but strong").master_key == (
        keys.master_key
    )


def test_wrong_passphrase_fails_at_open() -> None:
    expect(crypto.WrongPassphraseError, crypto.open_keyfile, KEYFILE, "no")
    expect(
        crypto.WrongPassphraseError,
        crypto.open_keyfile,
        KEYFILE,
        PASSPHRASE + " ",
    )


@pytest.mark.parametrize("bad", ["", None, b"bytes", 7, "\ud800"])
def test_invalid_passphrases_are_refused(bad: Any) -> None:
    expect(crypto.InvalidPassphraseError, crypto.open_keyfile, KEYFILE, bad)
    expect(
        crypto.InvalidPassphraseError,
        crypto.create_keyfile,
        bad,
        crypto.TEST_PARAMS,
    )
    expect(
        crypto.InvalidPassphraseError, crypto.rewrap, KEYFILE, PASSPHRASE, bad
    )
    error = expect(
        crypto.InvalidPassphraseError,
        crypto.derive_kek,
        bad,
        SALT,
        crypto.TEST_PARAMS,
    )
    assert isinstance(error, InvalidInputError)


def test_passphrase_is_normalised_to_nfc() -> None:
    composed = "caf\u00e9 au lait"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    data, keys = crypto.create_keyfile(decomposed, crypto.TEST_PARAMS)
    assert crypto.open_keyfile(data, composed).master_key == keys.master_key


def test_rewrap_keeps_keys_and_retires_the_old_passphrase() -> None:
    rewrapped = crypto.rewrap(KEYFILE, PASSPHRASE, "a new passphrase")
    opened = crypto.open_keyfile(rewrapped, "a new passphrase")
    assert opened.master_key == MASTER
    assert opened.signing_seed() == SEED
    assert crypto.public_key(rewrapped) == bytes.fromhex(PUBLIC)
    assert rewrapped[20:36] != SALT
    expect(
        crypto.WrongPassphraseError,
        crypto.open_keyfile,
        rewrapped,
        PASSPHRASE,
    )
    expect(
        crypto.WrongPassphraseError,
        crypto.rewrap,
        KEYFILE,
        "not the passphrase",
        "whatever",
    )


def test_rewrap_can_change_the_kdf_cost() -> None:
    stronger = crypto.KdfParams(memory_kib=64, iterations=2, lanes=2)
    rewrapped = crypto.rewrap(KEYFILE, PASSPHRASE, "next", stronger)
    assert rewrapped[8:20] == bytes.fromhex("000000400000000200000002")
    assert crypto.open_keyfile(rewrapped, "next").master_key == MASTER


def test_every_damaged_byte_is_caught_before_the_kdf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_kdf(*args: object) -> bytes:
        raise AssertionError("the KDF ran on a damaged key file")

    monkeypatch.setattr(crypto, "_argon2id", no_kdf)
    for at in range(len(KEYFILE)):
        damaged = flip(KEYFILE, at)
        if at == 4:
            cls: type[BaseException] = UnsupportedFormatError
        else:
            cls = crypto.CorruptKeyFileError
        expect(cls, crypto.open_keyfile, damaged, PASSPHRASE)
        expect(cls, crypto.public_key, damaged)


def test_malformed_key_files() -> None:
    for data in (b"", b"SNTK", KEYFILE[:-1], KEYFILE + b"\x00"):
        expect(crypto.CorruptKeyFileError, crypto.open_keyfile, data, "x")
    expect(InvalidInputError, crypto.public_key, "not bytes")
    # A newer format is refused as such, whatever its length.
    expect(UnsupportedFormatError, crypto.public_key, b"SNTK\x02")


@pytest.mark.parametrize(
    ("at", "value"),
    [(5, 2), (6, 9), (7, 1)],
    ids=["kdf", "aead", "reserved"],
)
def test_unknown_algorithms_are_unsupported(at: int, value: int) -> None:
    changed = bytearray(KEYFILE)
    changed[at] = value
    data = with_checksum(bytes(changed))
    expect(UnsupportedFormatError, crypto.open_keyfile, data, PASSPHRASE)


@pytest.mark.parametrize(
    "params", ["40000001" + "00000001" * 2, "00000008" + "00000000" * 2]
)
def test_out_of_range_kdf_params_are_refused(params: str) -> None:
    data = KEYFILE[:8] + bytes.fromhex(params) + KEYFILE[20:]
    expect(
        UnsupportedFormatError, crypto.open_keyfile, with_checksum(data), "x"
    )


def test_tampering_with_checksum_recomputed() -> None:
    # Salt and parameters feed the KEK: indistinguishable from a wrong
    # passphrase, as documented.  So is the wrapped master key.
    for at, mask in ((11, 0x10), (15, 0x02), (25, 1), (70, 1), (90, 1)):
        data = with_checksum(flip(KEYFILE, at, mask))
        expect(
            crypto.WrongPassphraseError, crypto.open_keyfile, data, PASSPHRASE
        )
    # The public key and sealed seed are checked under the master key.
    for at in (36, 67, 130, 150, 187):
        data = with_checksum(flip(KEYFILE, at))
        expect(crypto.IntegrityError, crypto.open_keyfile, data, PASSPHRASE)


def test_swapped_public_key_is_an_integrity_error(
    other_keys: crypto.Keys,
) -> None:
    data = KEYFILE[:36] + other_keys.public_key + KEYFILE[68:]
    data = with_checksum(data)
    assert crypto.public_key(data) == other_keys.public_key
    expect(crypto.IntegrityError, crypto.open_keyfile, data, PASSPHRASE)


def test_kdf_params_validation() -> None:
    for args in (
        (7, 1, 1),
        (16, 1, 3),
        (8, 0, 1),
        (8, 65, 1),
        (2**20 + 1, 1, 1),
        (8, 1, 0),
        (True, 1, 1),
    ):
        expect(InvalidInputError, crypto.KdfParams, *args)
    expect(
        InvalidInputError, crypto.derive_kek, "x", b"short", crypto.TEST_PARAMS
    )


def test_passphrase_presence() -> None:
    crypto.check_passphrase_presence(True, "x")
    crypto.check_passphrase_presence(False, None)
    expect(
        crypto.PassphraseRequiredError,
        crypto.check_passphrase_presence,
        True,
        None,
    )
    for given_passphrase in ("x", ""):
        expect(
            crypto.PassphraseNotExpectedError,
            crypto.check_passphrase_presence,
            False,
            given_passphrase,
        )


def test_error_classes_are_distinct_and_rooted() -> None:
    classes = [
        crypto.PassphraseError,
        crypto.InvalidPassphraseError,
        crypto.WrongPassphraseError,
        crypto.PassphraseRequiredError,
        crypto.PassphraseNotExpectedError,
        crypto.CorruptKeyFileError,
        crypto.IntegrityError,
        signing.SignatureError,
        signing.UnknownSignerError,
    ]
    assert len(set(classes)) == len(classes)
    assert all(issubclass(cls, SentinelError) for cls in classes)
    assert issubclass(crypto.IntegrityError, CorruptionError)
    assert issubclass(signing.UnknownSignerError, signing.SignatureError)
    assert not issubclass(crypto.WrongPassphraseError, CorruptionError)


def test_secrets_stay_out_of_reprs(keys: crypto.Keys) -> None:
    text = repr(keys) + repr(keys.sealing_key)
    for secret in (MASTER, SEED, keys.sealing_key.raw, keys.name_key.raw):
        assert secret.hex() not in text
    assert SIGNER in repr(keys)


# -- sealing ------------------------------------------------------------------


def test_every_tampered_byte_fails(keys: crypto.Keys) -> None:
    box = bytes.fromhex(BOX)
    for at in range(len(box)):
        expect(
            crypto.IntegrityError,
            crypto.open,
            keys.sealing_key,
            flip(box, at, 0x80),
            b"SNTO header",
        )


def test_tampered_associated_data_nonce_and_key(
    keys: crypto.Keys, other_keys: crypto.Keys
) -> None:
    box = crypto.seal(keys.sealing_key, b"payload", b"header A")
    key = keys.sealing_key
    expect(crypto.IntegrityError, crypto.open, key, box, b"header B")
    expect(crypto.IntegrityError, crypto.open, key, box, b"")
    swapped = os.urandom(crypto.NONCE_SIZE) + box[crypto.NONCE_SIZE :]
    expect(crypto.IntegrityError, crypto.open, key, swapped, b"header A")
    expect(
        crypto.IntegrityError,
        crypto.open,
        other_keys.sealing_key,
        box,
        b"header A",
    )
    for size in (0, 1, crypto.SEAL_OVERHEAD - 1):
        expect(crypto.IntegrityError, crypto.open, key, box[:size], b"")
    expect(crypto.IntegrityError, crypto.open, key, box[:-1], b"header A")
    expect(crypto.IntegrityError, crypto.open, key, box + b"\0", b"header A")


def test_bad_keys_and_nonces_are_invalid_input() -> None:
    expect(InvalidInputError, crypto.AeadKey, b"short")
    expect(InvalidInputError, crypto.seal, b"short", b"x", b"")
    expect(InvalidInputError, crypto.open, b"x" * 31, bytes(40), b"")
    expect(
        InvalidInputError,
        crypto._seal_with_nonce,
        SEALING_BYTES,
        b"short",
        b"x",
        b"",
    )
    expect(InvalidInputError, crypto.keyed_address, b"short", b"x")
    expect(InvalidInputError, crypto.derive_subkey, b"short", "context")


def test_seal_from_many_threads(keys: crypto.Keys) -> None:
    boxes: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        made = [
            crypto.seal(keys.sealing_key, b"x" * 100, b"") for _ in range(500)
        ]
        with lock:
            boxes.extend(made)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({box[: crypto.NONCE_SIZE] for box in boxes}) == 2000
    assert all(
        crypto.open(keys.sealing_key, box, b"") == b"x" * 100 for box in boxes
    )


def _nonces(keys: crypto.Keys, count: int) -> list[bytes]:
    return [
        crypto.seal(keys.sealing_key, b"", b"")[: crypto.NONCE_SIZE]
        for _ in range(count)
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_nonces_are_distinct_across_seals_and_forks(
    keys: crypto.Keys, slow: bool
) -> None:
    children = 16 if slow else 4
    per_child = 1000
    # Warm up the AEAD state before forking, so children inherit it.
    seen = _nonces(keys, 20_000)

    pipes = []
    for _ in range(children):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            # Child: never return into pytest, whatever happens.
            status = 1
            try:
                os.close(reader)
                payload = b"".join(_nonces(keys, per_child))
                view = memoryview(payload)
                while view:
                    view = view[os.write(writer, view) :]
                status = 0
            finally:
                os._exit(status)
        os.close(writer)
        pipes.append((pid, reader))

    for pid, reader in pipes:
        chunks = []
        while chunk := os.read(reader, 65536):
            chunks.append(chunk)
        os.close(reader)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        data = b"".join(chunks)
        assert len(data) == per_child * crypto.NONCE_SIZE
        seen.extend(
            data[at : at + crypto.NONCE_SIZE]
            for at in range(0, len(data), crypto.NONCE_SIZE)
        )
    seen.extend(_nonces(keys, per_child))

    duplicates = len(seen) - len(set(seen))
    figures.record(
        "fork trials",
        zero=("duplicate nonces",),
        trials=len(seen),
        **{"forked children": children, "duplicate nonces": duplicates},
    )
    assert duplicates == 0


@settings(max_examples=200, deadline=None)
@given(plaintext=st.binary(max_size=4096), associated=st.binary(max_size=64))
def test_seal_open_round_trip(plaintext: bytes, associated: bytes) -> None:
    key = crypto.AeadKey(SEALING_BYTES)
    box = crypto.seal(key, plaintext, associated)
    assert len(box) == len(plaintext) + crypto.SEAL_OVERHEAD
    assert crypto.open(key, box, associated) == plaintext


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=300))
def test_garbage_never_escapes_as_a_foreign_exception(garbage: bytes) -> None:
    key = crypto.AeadKey(SEALING_BYTES)
    checks: list[tuple[Callable[[], object], type[SentinelError]]] = [
        (lambda: crypto.open(key, garbage, b""), crypto.IntegrityError),
        (
            lambda: crypto.open_name(key, garbage, b"collection"),
            crypto.IntegrityError,
        ),
        (lambda: crypto.open_keyfile(garbage, "x"), SentinelError),
        (lambda: crypto.public_key(garbage), SentinelError),
        (
            lambda: signing.verify(bytes.fromhex(PUBLIC), b"m", garbage),
            signing.SignatureError,
        ),
    ]
    for call, family in checks:
        with pytest.raises(BaseException) as info:
            call()
        assert isinstance(info.value, family), repr(info.value)


# -- names --------------------------------------------------------------------


def test_names_round_trip_deterministically(keys: crypto.Keys) -> None:
    context = crypto.id_context("users")
    for name in ("a", "user-123", "x" * 32, "y" * 33, "z" * 200, "caf\u00e9"):
        sealed = crypto.seal_name(keys.name_key, name, context)
        assert sealed == crypto.seal_name(keys.name_key, name, context)
        assert crypto.open_name(keys.name_key, sealed, context) == name
        padded = -(-len(name.encode()) // 32) * 32
        assert len(sealed) == padded + crypto.TAG_SIZE
    longest = crypto.seal_name(keys.name_key, "z" * 200, context)
    assert len(longest) == 240


def test_names_depend_on_context_and_key(
    keys: crypto.Keys, other_keys: crypto.Keys
) -> None:
    in_users = crypto.seal_name(
        keys.name_key, "user-123", crypto.id_context("users")
    )
    in_staff = crypto.seal_name(
        keys.name_key, "user-123", crypto.id_context("staff")
    )
    assert in_users != in_staff
    assert b"user-123" not in in_users
    name_key = keys.name_key
    expect(
        crypto.IntegrityError,
        crypto.open_name,
        name_key,
        in_users,
        crypto.id_context("staff"),
    )
    expect(
        crypto.IntegrityError,
        crypto.open_name,
        other_keys.name_key,
        in_users,
        crypto.id_context("users"),
    )
    for at in range(len(in_users)):
        expect(
            crypto.IntegrityError,
            crypto.open_name,
            name_key,
            flip(in_users, at),
            crypto.id_context("users"),
        )
    for size in (0, 16, 47, 49):
        expect(
            crypto.IntegrityError,
            crypto.open_name,
            name_key,
            bytes(size),
            b"collection",
        )


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 201, "\udc80", 5])
def test_bad_names_are_invalid_input(keys: crypto.Keys, bad: Any) -> None:
    expect(
        InvalidInputError, crypto.seal_name, keys.name_key, bad, b"collection"
    )


# -- signatures ---------------------------------------------------------------


def test_sign_and_verify(keys: crypto.Keys) -> None:
    signature = signing.sign(keys, MESSAGE)
    assert len(signature) == crypto.SIGNATURE_SIZE
    signing.verify(keys.public_key, MESSAGE, signature)
    signing.verify(
        keys.public_key,
        MESSAGE,
        signature,
        signer=crypto.signer_id(keys.public_key),
    )


def test_tampered_signature_or_message(keys: crypto.Keys) -> None:
    signature = bytes.fromhex(SIGNATURE)
    public = keys.public_key
    for at in (0, 13, 31, 32, 50, 63):
        expect(
            signing.SignatureError,
            signing.verify,
            public,
            MESSAGE,
            flip(signature, at),
        )
    expect(
        signing.SignatureError,
        signing.verify,
        public,
        MESSAGE + b" ",
        signature,
    )
    # A signature without the domain prefix is not a store signature.
    raw = keys.signing_key.sign(MESSAGE)
    expect(signing.SignatureError, signing.verify, public, MESSAGE, raw)


def test_missing_or_malformed_signature(keys: crypto.Keys) -> None:
    public = keys.public_key
    expect(signing.SignatureError, signing.verify, public, MESSAGE, b"")
    expect(signing.SignatureError, signing.verify, public, MESSAGE, bytes(63))
    expect(signing.SignatureError, signing.split_trailer, bytes(71))
    expect(signing.SignatureError, signing.split_trailer, b"")
    expect(InvalidInputError, signing.verify, public[:31], MESSAGE, bytes(64))


def test_other_key_is_an_unknown_signer(
    keys: crypto.Keys, other_keys: crypto.Keys
) -> None:
    signer, signature = signing.split_trailer(
        signing.make_trailer(other_keys, MESSAGE)
    )
    expect(
        signing.UnknownSignerError,
        signing.verify,
        keys.public_key,
        MESSAGE,
        signature,
        signer=signer,
    )
    # Without a signer id the same failure can only be a bad signature.
    expect(
        signing.SignatureError,
        signing.verify,
        keys.public_key,
        MESSAGE,
        signature,
    )
    signing.verify(other_keys.public_key, MESSAGE, signature, signer=signer)


def test_verification_modes(
    keys: crypto.Keys, caplog: pytest.LogCaptureFixture
) -> None:
    good = signing.sign(keys, MESSAGE)
    bad = flip(good, 5)
    public = keys.public_key
    assert signing.DEFAULT_VERIFICATION == signing.VerificationOptions.silent()
    assert (
        signing.VerificationOptions() == signing.VerificationOptions.silent()
    )

    strict = signing.VerificationOptions.strict()
    assert strict.checks_signatures
    assert strict.check(public, MESSAGE, good) is True
    expect(signing.SignatureError, strict.check, public, MESSAGE, bad)
    expect(signing.SignatureError, strict.check, public, MESSAGE, b"")

    warn = signing.VerificationOptions.warn()
    assert warn.check(public, MESSAGE, good) is True
    with caplog.at_level(logging.WARNING, logger="sentinel.crypto"):
        with pytest.warns(signing.SignatureWarning, match="users/u1"):
            assert warn.check(public, MESSAGE, bad, what="users/u1") is False
    assert "users/u1" in caplog.text

    silent = signing.VerificationOptions.silent()
    assert not silent.checks_signatures
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert silent.check(public, MESSAGE, bad) is None
        assert silent.check(public, MESSAGE, b"") is None

    expect(InvalidInputError, signing.VerificationOptions, "loud")
