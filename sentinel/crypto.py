"""Keys and sealing for a store opened with a passphrase.

Pure given keys: no file I/O, no clocks, no global state.  Randomness
comes only from `os.urandom` (the kernel's ``getrandom``), which keeps no
state in the process, so a forked child never repeats its parent's salts
or nonces.  Every failure is a `SentinelError` from `sentinel.errors`;
no `cryptography` exception escapes.  Signatures and what a read does
about them are in `sentinel.signing`.

Key hierarchy
-------------

::

    passphrase --Argon2id(salt, params)--> KEK (32 bytes, never stored)
    KEK --AES-256-GCM-SIV unwrap--> master key (32 random bytes)
    master key --BLAKE3 derive_key(context)--> four subkeys:
        sealing key      AEAD key for object payloads (`seal`, `open`)
        addressing key   BLAKE3 key for object addresses (`keyed_address`)
        name key         AEAD key for collection names and ids
                         (`seal_name`, `open_name`)
        signing seal key AEAD key that seals the Ed25519 seed in the key
                         file
    Ed25519 seed (32 random bytes) --> signing key, public key

The signing seed is random and sealed rather than derived from the
master key, so the signing identity is a separate secret: it can later
be rotated or imported without touching the master key, and the master
key can be re-wrapped without touching the signing key.  The derivation
contexts are the `CONTEXT_*` constants; they are part of the format.

Passphrases are `str`, normalised to Unicode NFC and encoded as UTF-8,
so the same passphrase typed on systems that compose accents differently
opens the same store.  The empty string is refused.

Key file layout (format 1)
--------------------------

Binary, fixed size (220 bytes), integers unsigned big-endian::

    offset size field
    0      4    magic b"SNTK"
    4      1    format version, 1
    5      1    KDF: 1 = Argon2id (version 0x13, RFC 9106)
    6      1    AEAD: 1 = AES-256-GCM-SIV (RFC 8452)
    7      1    reserved, 0
    8      4    Argon2id memory cost in KiB
    12     4    Argon2id iterations
    16     4    Argon2id lanes
    20     16   salt (random)
    36     32   Ed25519 public key, in clear
    68     60   wrapped master key: nonce (12) || ciphertext (32) ||
                tag (16), sealed under the KEK with associated data
                bytes 0..35 (header, parameters, salt)
    128    60   sealed Ed25519 seed: nonce (12) || ciphertext (32) ||
                tag (16), sealed under the signing seal key with
                associated data bytes 0..67 (which binds the public key)
    188    32   BLAKE3-256 of bytes 0..187

The key-check value is the authentication tag of the wrapped master key:
a wrong passphrase gives a wrong KEK, the tag fails, and `open_keyfile`
raises `WrongPassphraseError` before any other byte of the store is
read.  It costs nothing extra and reveals nothing a guesser could not
already test by running Argon2id.  The trailing checksum is not a
security measure (anyone can recompute it); it tells accidental damage
(`CorruptKeyFileError`) apart from a wrong passphrase.  Because the
public key is associated data of the seed, not of the master key, a
public key swapped in the file is reported as `IntegrityError` rather
than as a wrong passphrase; changed salt or parameters change the KEK
and cannot be told apart from a wrong passphrase.

A reader refuses another magic or size (`CorruptKeyFileError`), another
format version, KDF or AEAD, a non-zero reserved byte or parameters
outside `KdfParams`' limits (`UnsupportedFormatError`), before running
the KDF, so a crafted file cannot make it allocate more than 1 GiB.

KDF parameters
--------------

`DEFAULT_PARAMS` is RFC 9106's second recommended option: 64 MiB, 3
iterations, 4 lanes.  Measured here (2-CPU AMD EPYC, cryptography 50,
OpenSSL 4.0): 0.15-0.16 s per derivation; with 1 lane it is 0.23 s.
For comparison, 32 MiB x 3 took 0.11 s and 128 MiB x 2 took 0.37 s.
`TEST_PARAMS` (8 KiB, 1 iteration) takes well under a millisecond and
exists only so tests can create many key files; it offers no protection.

AEAD choice: AES-256-GCM-SIV
----------------------------

Every object gets a fresh random 96-bit nonce.  With AES-GCM a repeated
nonce under one key reveals the XOR of two plaintexts and the GHASH key,
which lets anyone forge tags for every object; NIST therefore caps
random-nonce GCM at 2**32 messages per key, a count a long-lived store
with one master key could approach.  ChaCha20-Poly1305 fails the same
way on a repeat.  AES-GCM-SIV (RFC 8452) is nonce-misuse resistant: a
repeat reveals only whether the two sealed plaintexts (and associated
data) were identical, and its per-nonce key derivation gives much larger
usage limits.  That also covers what random nonces cannot: a cloned
virtual machine or a broken random source.  `AESGCMSIV` is available in
this build (OpenSSL 4.0.3); where it is not, building a key raises
`EncryptionUnavailableError`.

The price is speed.  Measured here at low load (best of 5, including
the 0.5 us `os.urandom` call for seal; other processes on this shared
machine raised every figure by up to 60% in later runs, never changing
the order):

    payload     AES-GCM-SIV       AES-GCM           ChaCha20-Poly1305
                seal    open      seal    open      seal    open
    300 B       3.5 us  2.4 us    1.6 us  1.0 us    1.9 us  1.3 us
    1 KiB       5.1 us  4.5 us    1.8 us  1.3 us    2.2 us  1.5 us
    64 KiB      2.8 us/KiB        0.3 us/KiB        0.5 us/KiB

A plain get of a 300-byte document costs 14-25 us here, so GCM-SIV
adds 10-20% to it and GCM would add 3-5%: with GCM-SIV an encrypted
get runs at about 0.8x a plain one, the edge of the target that
``tools/bench_crypto.py`` checks, and durable writes are bound by fsync
and the signature anyway.  Misuse resistance is worth the 1.4-2 us.
The cipher context is built once per key (`AeadKey`), which saves
2.4 us per call.

Sealed box: ``nonce (12) || ciphertext || tag (16)``, 28 bytes longer
than the plaintext.

Names
-----

Collection names and document ids are sealed deterministically so equal
names give equal bytes (a ref lookup needs no decryption) while the name
stays unreadable: the name's UTF-8 bytes are zero-padded to a multiple
of 32, then sealed with AES-256-GCM-SIV under the name key with a nonce
and associated data fixed by the context (`COLLECTION_CONTEXT`, or
`id_context(collection)` so one id in two collections looks unrelated).
GCM-SIV with a repeated nonce is a deterministic AEAD: it leaks only
equality of names within a context, plus their length rounded up to 32.
A 200-byte name seals to 240 bytes.

Index field paths (`seal_field`) are sealed the same way under the name
key, in the context ``b"field\x00" + collection`` (`field_context`),
but padded with ``0x80`` then zero bytes, since a path may end in NUL;
a 1024-byte path seals to 1072 bytes.

Caveats
-------

Python cannot reliably erase secrets from memory: keys live as `bytes`
until collected.  The public key in the key file is only as trustworthy
as the file; a party that must know who signed should pin it out of
band.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import unicodedata
from dataclasses import dataclass

import blake3
from cryptography.exceptions import (
    InvalidTag,
    UnsupportedAlgorithm,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# The passphrase, key and signature errors live in `sentinel.errors` with
# the rest of the hierarchy; they are imported here too, so code written
# against this module alone (``crypto.IntegrityError``) keeps working.
from sentinel.errors import (
    CorruptKeyFileError,
    EncryptionUnavailableError,
    IntegrityError,
    InvalidInputError,
    InvalidPassphraseError,
    PassphraseError,  # noqa: F401 (re-exported)
    PassphraseNotExpectedError,
    PassphraseRequiredError,
    UnsupportedFormatError,
    WrongPassphraseError,
)
from sentinel.objects import Address

log = logging.getLogger(__name__)

# -- constants ----------------------------------------------------------------

KEY_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
SEAL_OVERHEAD = NONCE_SIZE + TAG_SIZE
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SIGNER_ID_SIZE = 8
TRAILER_SIZE = SIGNER_ID_SIZE + SIGNATURE_SIZE
NAME_BLOCK = 32
MAX_NAME_BYTES = 200
MAX_FIELD_BYTES = 1024
FIELD_PAD = 0x80

KEYFILE_MAGIC = b"SNTK"
KEYFILE_FORMAT = 1
KDF_ARGON2ID = 1
AEAD_AES_256_GCM_SIV = 1
_KEYFILE_HEAD = struct.Struct(">4sBBBBIII16s32s")
_KEYFILE_SEALS = struct.Struct(">60s60s")
_KEK_INPUTS = 36  # magic through salt: what the KEK depends on
_CHECKSUM_AT = _KEYFILE_HEAD.size + _KEYFILE_SEALS.size
KEYFILE_SIZE = _CHECKSUM_AT + 32

# BLAKE3 derive_key contexts: fixed, unique to this format and purpose.
CONTEXT_SEALING = "Sentinel 2026-12-03 v1 object sealing key"
CONTEXT_ADDRESSING = "Sentinel 2026-12-03 v1 object addressing key"
CONTEXT_NAME = "Sentinel 2026-12-03 v1 collection and id name key"
CONTEXT_SIGNING_SEAL = "Sentinel 2026-12-03 v1 signing seed seal key"
CONTEXT_NAME_NONCE = "Sentinel 2026-12-03 v1 name nonce"
CONTEXT_SIGNER_ID = "Sentinel 2026-12-03 v1 signer id"

SIGNATURE_DOMAIN = b"Sentinel signed object v1\x00"
COLLECTION_CONTEXT = b"collection"

# Reader limits: a key file asking for more is refused before the KDF.
MAX_MEMORY_KIB = 1 << 20
MAX_ITERATIONS = 64
MAX_LANES = 64


# -- KDF ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters, stored in the key file.

    Construction raises `InvalidInputError` for values Argon2id refuses
    (fewer than 8 KiB per lane, zero iterations or lanes) or above the
    reader limits (`MAX_MEMORY_KIB`, `MAX_ITERATIONS`, `MAX_LANES`).
    """

    memory_kib: int
    iterations: int
    lanes: int

    def __post_init__(self) -> None:
        for name in ("memory_kib", "iterations", "lanes"):
            if type(getattr(self, name)) is not int:
                raise InvalidInputError(f"KDF {name} must be an int")
        if not 1 <= self.lanes <= MAX_LANES:
            raise InvalidInputError(f"KDF lanes must be 1..{MAX_LANES}")
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise InvalidInputError(
                f"KDF iterations must be 1..{MAX_ITERATIONS}"
            )
        if not 8 * self.lanes <= self.memory_kib <= MAX_MEMORY_KIB:
            raise InvalidInputError(
                f"KDF memory must be 8 KiB per lane up to {MAX_MEMORY_KIB} KiB"
            )


DEFAULT_PARAMS = KdfParams(memory_kib=64 * 1024, iterations=3, lanes=4)
"""RFC 9106's second recommended option; about 0.16 s here."""

TEST_PARAMS = KdfParams(memory_kib=8, iterations=1, lanes=1)
"""For tests only: under a millisecond, and no protection at all."""


def _passphrase_bytes(passphrase: object) -> bytes:
    """Validate and encode a passphrase; `InvalidPassphraseError`."""
    if type(passphrase) is not str:
        raise InvalidPassphraseError(
            f"passphrase must be a str, not {type(passphrase).__name__}"
        )
    if not passphrase:
        raise InvalidPassphraseError("passphrase must not be empty")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPassphraseError(
            "passphrase holds a lone surrogate, which is not valid Unicode"
        ) from exc


def _argon2id(secret: bytes, salt: bytes, params: KdfParams) -> bytes:
    try:
        kdf = Argon2id(
            salt=salt,
            length=KEY_SIZE,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        )
    except UnsupportedAlgorithm as exc:
        raise EncryptionUnavailableError(
            "this cryptography/OpenSSL build has no Argon2id"
        ) from exc
    return kdf.derive(secret)


def derive_kek(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    """Return the 32-byte key-encryption key for `passphrase`.

    Cost: one Argon2id run, about 0.16 s with `DEFAULT_PARAMS` here and
    `params.memory_kib` KiB of memory.  Raises `InvalidPassphraseError`
    (before the slow part) and `InvalidInputError` for a salt that is
    not 16 bytes.
    """
    secret = _passphrase_bytes(passphrase)
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        raise InvalidInputError(f"salt must be {SALT_SIZE} bytes")
    return _argon2id(secret, salt, params)


# -- AEAD ---------------------------------------------------------------------


class AeadKey:
    """A 32-byte AES-256-GCM-SIV key with its cipher context.

    Building the context costs about 2.4 us, more than sealing a small
    object, so it is built once per key.  Instances are immutable and
    safe to share between threads and across `fork`.  Raises
    `InvalidInputError` for a key that is not 32 bytes and
    `EncryptionUnavailableError` if this build lacks AES-GCM-SIV.
    """

    __slots__ = ("_cipher", "_raw")

    def __init__(self, raw: bytes) -> None:
        if type(raw) is not bytes or len(raw) != KEY_SIZE:
            raise InvalidInputError(f"an AEAD key is {KEY_SIZE} bytes")
        try:
            self._cipher = AESGCMSIV(raw)
        except UnsupportedAlgorithm as exc:
            raise EncryptionUnavailableError(
                "this cryptography/OpenSSL build has no AES-256-GCM-SIV"
            ) from exc
        self._raw = raw

    @property
    def raw(self) -> bytes:
        """The key bytes."""
        return self._raw

    @property
    def cipher(self) -> AESGCMSIV:
        """The cipher context, for a hot path that calls its ``decrypt``
        directly and turns `cryptography`'s ``InvalidTag`` into
        `IntegrityError` itself (as `sentinel.sealed` does)."""
        return self._cipher

    def decrypt(
        self,
        nonce: bytes | memoryview,
        ciphertext: bytes | memoryview,
        associated_data: bytes,
    ) -> bytes:
        """Check and decrypt ``ciphertext || tag`` sealed with `nonce`.

        `open` for a caller that has already split the box (a sealed
        object's reader, on the hot path).  Raises `IntegrityError`
        like `open`.  Cost: about 2.4 us for 300 bytes.
        """
        try:
            return self._cipher.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag as exc:
            raise IntegrityError(
                "sealed box failed authentication: tampered, damaged, or "
                "sealed under another key or associated data"
            ) from exc

    def __repr__(self) -> str:
        return "AeadKey(<secret>)"


def _cipher_of(key: AeadKey | bytes) -> AESGCMSIV:
    return (key if isinstance(key, AeadKey) else AeadKey(key))._cipher


def seal(
    key: AeadKey | bytes, plaintext: bytes, associated_data: bytes
) -> bytes:
    """Encrypt and authenticate; return ``nonce || ciphertext || tag``.

    The 12-byte nonce is fresh from `os.urandom`, so it is safe across
    threads and `fork`.  `associated_data` is authenticated, not stored:
    `open` needs the same bytes.  Cost: about 3.5 us for 300 bytes, 2.8
    us per KiB for large payloads.  Output is 28 bytes longer than
    `plaintext`.
    """
    return _seal_with_nonce(
        key, os.urandom(NONCE_SIZE), plaintext, associated_data
    )


def _seal_with_nonce(
    key: AeadKey | bytes,
    nonce: bytes,
    plaintext: bytes,
    associated_data: bytes,
) -> bytes:
    """`seal` with a given nonce: for test vectors and the key file."""
    if len(nonce) != NONCE_SIZE:
        raise InvalidInputError(f"a nonce is {NONCE_SIZE} bytes")
    return nonce + _cipher_of(key).encrypt(nonce, plaintext, associated_data)


# Named like `os.open`: always called qualified, as `crypto.open`.
def open(key: AeadKey | bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Check and decrypt a sealed box from `seal`; return the plaintext.

    Raises `IntegrityError` if the box is too short or if its nonce,
    ciphertext, tag or `associated_data` differ from what was sealed
    (or the key is another one: AEAD cannot tell these apart).  Cost:
    about 2.4 us for 300 bytes, 2.8 us per KiB for large payloads.
    """
    if len(sealed) < SEAL_OVERHEAD:
        raise IntegrityError(
            f"sealed box is {len(sealed)} bytes, shorter than its "
            f"{SEAL_OVERHEAD}-byte nonce and tag"
        )
    view = memoryview(sealed)
    try:
        return _cipher_of(key).decrypt(
            view[:NONCE_SIZE], view[NONCE_SIZE:], associated_data
        )
    except InvalidTag as exc:
        raise IntegrityError(
            "sealed box failed authentication: tampered, damaged, or "
            "sealed under another key or associated data"
        ) from exc


# -- subkeys and keyed addresses ----------------------------------------------


def derive_subkey(master_key: bytes, context: str) -> bytes:
    """Return the 32-byte BLAKE3 ``derive_key`` of `master_key`.

    Cost: under 1 us.  `context` must be one of the `CONTEXT_*` strings;
    distinct contexts give independent keys.
    """
    if type(master_key) is not bytes or len(master_key) != KEY_SIZE:
        raise InvalidInputError(f"a master key is {KEY_SIZE} bytes")
    return blake3.blake3(master_key, derive_key_context=context).digest()


def keyed_address(addressing_key: bytes, *typed_content: bytes) -> Address:
    """Return the keyed BLAKE3-256 address of an object.

    The parts of `typed_content` are hashed as if concatenated, so the
    caller can pass the type prefix and the payload without copying.
    Equal content still gives equal addresses (deduplication works),
    but without the key nobody can check a guessed document against an
    address.  Cost: the same as unkeyed BLAKE3, about 1 us for 400
    bytes.
    """
    if len(addressing_key) != KEY_SIZE:
        raise InvalidInputError(f"an addressing key is {KEY_SIZE} bytes")
    hasher = blake3.blake3(key=addressing_key)
    for part in typed_content:
        hasher.update(part)
    return Address(hasher.digest())


# -- keys ---------------------------------------------------------------------


_RAW = serialization.Encoding.Raw


def _public_bytes(signing_key: Ed25519PrivateKey) -> bytes:
    return signing_key.public_key().public_bytes(
        _RAW, serialization.PublicFormat.Raw
    )


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Keys:
    """Everything an open encrypted store holds in memory.

    Built by `create_keyfile` and `open_keyfile`; `from_secrets` exists
    for tests and tools.  The repr shows only the signer id.
    """

    master_key: bytes
    sealing_key: AeadKey
    addressing_key: bytes
    name_key: AeadKey
    signing_key: Ed25519PrivateKey
    public_key: bytes

    @classmethod
    def from_secrets(cls, master_key: bytes, signing_seed: bytes) -> Keys:
        """Derive the subkeys and the signing key pair.

        Cost: about 60 us (three BLAKE3 derivations, two cipher
        contexts, one Ed25519 public key).  Raises `InvalidInputError`
        for secrets that are not 32 bytes.
        """
        if type(signing_seed) is not bytes or len(signing_seed) != 32:
            raise InvalidInputError("a signing seed is 32 bytes")
        signing_key = Ed25519PrivateKey.from_private_bytes(signing_seed)
        return cls(
            master_key=master_key,
            sealing_key=AeadKey(derive_subkey(master_key, CONTEXT_SEALING)),
            addressing_key=derive_subkey(master_key, CONTEXT_ADDRESSING),
            name_key=AeadKey(derive_subkey(master_key, CONTEXT_NAME)),
            signing_key=signing_key,
            public_key=_public_bytes(signing_key),
        )

    def signing_seed(self) -> bytes:
        """The 32-byte Ed25519 seed (the private key)."""
        return self.signing_key.private_bytes(
            _RAW,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"Keys(signer={signer_id(self.public_key).hex()})"


def _signing_seal_key(master_key: bytes) -> AeadKey:
    return AeadKey(derive_subkey(master_key, CONTEXT_SIGNING_SEAL))


# -- key file -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _KeyFile:
    head: bytes
    params: KdfParams
    salt: bytes
    public_key: bytes
    wrapped_master: bytes
    sealed_seed: bytes


def create_keyfile(
    passphrase: str, params: KdfParams = DEFAULT_PARAMS
) -> tuple[bytes, Keys]:
    """Create a new master key and signing key; return file and keys.

    Cost: one Argon2id run (about 0.16 s with `DEFAULT_PARAMS`).
    Raises `InvalidPassphraseError` before the slow part.  The caller
    writes the bytes durably before sealing anything with the keys.
    """
    return _build_keyfile(
        passphrase,
        params,
        salt=os.urandom(SALT_SIZE),
        master_key=os.urandom(KEY_SIZE),
        signing_seed=os.urandom(KEY_SIZE),
        wrap_nonce=os.urandom(NONCE_SIZE),
        seed_nonce=os.urandom(NONCE_SIZE),
    )


def _build_keyfile(
    passphrase: str,
    params: KdfParams,
    *,
    salt: bytes,
    master_key: bytes,
    signing_seed: bytes,
    wrap_nonce: bytes,
    seed_nonce: bytes,
) -> tuple[bytes, Keys]:
    """`create_keyfile` with every random input given (test vectors)."""
    secret = _passphrase_bytes(passphrase)
    if type(params) is not KdfParams:
        raise InvalidInputError("params must be a KdfParams")
    if len(salt) != SALT_SIZE:
        raise InvalidInputError(f"salt must be {SALT_SIZE} bytes")
    keys = Keys.from_secrets(master_key, signing_seed)
    head = _KEYFILE_HEAD.pack(
        KEYFILE_MAGIC,
        KEYFILE_FORMAT,
        KDF_ARGON2ID,
        AEAD_AES_256_GCM_SIV,
        0,
        params.memory_kib,
        params.iterations,
        params.lanes,
        salt,
        keys.public_key,
    )

    kek = AeadKey(_argon2id(secret, salt, params))
    wrapped = _seal_with_nonce(kek, wrap_nonce, master_key, head[:_KEK_INPUTS])
    sealed_seed = _seal_with_nonce(
        _signing_seal_key(master_key), seed_nonce, signing_seed, head
    )

    body = head + _KEYFILE_SEALS.pack(wrapped, sealed_seed)
    return body + blake3.blake3(body).digest(), keys


def _parse_keyfile(data: bytes) -> _KeyFile:
    """Check everything that needs no passphrase; see the layout above."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError(
            f"key file must be bytes, not {type(data).__name__}"
        )
    data = bytes(data)
    if data[:4] != KEYFILE_MAGIC:
        raise CorruptKeyFileError("not a Sentinel key file (bad magic)")
    if len(data) > 4 and data[4] != KEYFILE_FORMAT:
        raise UnsupportedFormatError(
            f"key file format {data[4]}; this library reads format "
            f"{KEYFILE_FORMAT} only"
        )
    if len(data) != KEYFILE_SIZE:
        raise CorruptKeyFileError(
            f"key file is {len(data)} bytes; format {KEYFILE_FORMAT} has "
            f"{KEYFILE_SIZE}"
        )
    if blake3.blake3(data[:_CHECKSUM_AT]).digest() != data[_CHECKSUM_AT:]:
        raise CorruptKeyFileError("key file fails its checksum")

    (_, _, kdf, aead, reserved, memory, iterations, lanes, salt, public) = (
        _KEYFILE_HEAD.unpack_from(data)
    )
    if kdf != KDF_ARGON2ID or aead != AEAD_AES_256_GCM_SIV or reserved:
        raise UnsupportedFormatError(
            f"key file asks for KDF {kdf}, AEAD {aead}, reserved "
            f"{reserved}; this library knows 1, 1, 0"
        )
    try:
        params = KdfParams(memory, iterations, lanes)
    except InvalidInputError as exc:
        raise UnsupportedFormatError(
            f"key file KDF parameters are outside the supported range: {exc}"
        ) from exc
    wrapped, sealed_seed = _KEYFILE_SEALS.unpack_from(data, _KEYFILE_HEAD.size)
    return _KeyFile(
        data[: _KEYFILE_HEAD.size], params, salt, public, wrapped, sealed_seed
    )


def open_keyfile(data: bytes, passphrase: str) -> Keys:
    """Unwrap the master key and signing key with `passphrase`.

    Cost: one Argon2id run with the file's parameters (about 0.16 s with
    `DEFAULT_PARAMS`).  Raises, in the order checked:
    `InvalidPassphraseError`; `CorruptKeyFileError` or
    `UnsupportedFormatError` (all before the KDF);
    `WrongPassphraseError` (the key-check value, i.e. the tag of the
    wrapped master key, fails); `IntegrityError` (the sealed seed or the
    public key was altered).
    """
    secret = _passphrase_bytes(passphrase)
    parsed = _parse_keyfile(data)

    kek = AeadKey(_argon2id(secret, parsed.salt, parsed.params))
    try:
        master_key = open(
            kek, parsed.wrapped_master, parsed.head[:_KEK_INPUTS]
        )
    except IntegrityError as exc:
        raise WrongPassphraseError(
            "wrong passphrase: it does not unwrap this store's master key"
        ) from exc

    # The master key is right, so a failure from here on is tampering.
    seed = open(_signing_seal_key(master_key), parsed.sealed_seed, parsed.head)
    keys = Keys.from_secrets(master_key, seed)
    if keys.public_key != parsed.public_key:
        raise IntegrityError(
            "key file public key does not match its sealed signing key"
        )
    return keys


def rewrap(
    data: bytes,
    old: str,
    new: str,
    params: KdfParams | None = None,
) -> bytes:
    """Return a key file for passphrase `new` with the same keys.

    The master key and signing key are unchanged, so no object needs
    rewriting; salt and nonces are fresh.  `params` changes the KDF cost
    (default: keep the file's).  Cost: two Argon2id runs.  Raises what
    `open_keyfile` raises for `data` and `old`, and
    `InvalidPassphraseError` for `new` before any KDF runs.
    """
    _passphrase_bytes(new)
    keys = open_keyfile(data, old)
    return _build_keyfile(
        new,
        params if params is not None else _parse_keyfile(data).params,
        salt=os.urandom(SALT_SIZE),
        master_key=keys.master_key,
        signing_seed=keys.signing_seed(),
        wrap_nonce=os.urandom(NONCE_SIZE),
        seed_nonce=os.urandom(NONCE_SIZE),
    )[0]


def public_key(data: bytes) -> bytes:
    """Return the 32-byte Ed25519 public key; no passphrase needed.

    Cost: one BLAKE3 of 188 bytes.  Raises `CorruptKeyFileError` or
    `UnsupportedFormatError` like `open_keyfile`.
    """
    return _parse_keyfile(data).public_key


def check_passphrase_presence(encrypted: bool, passphrase: str | None) -> None:
    """Refuse a missing or unexpected passphrase before anything else.

    Raises `PassphraseRequiredError` for an encrypted store opened
    without one and `PassphraseNotExpectedError` for a plain store
    opened with one (even an empty one).
    """
    if encrypted and passphrase is None:
        raise PassphraseRequiredError(
            "this store is encrypted: open it with its passphrase"
        )
    if not encrypted and passphrase is not None:
        raise PassphraseNotExpectedError(
            "this store is not encrypted; a passphrase would protect "
            "nothing, so it is refused rather than ignored"
        )


# -- names --------------------------------------------------------------------


def id_context(collection: str) -> bytes:
    """The name-sealing context for document ids of `collection`."""
    return b"id\x00" + collection.encode("utf-8")


# A store has one name context per collection, and deriving a nonce is
# a third of the cost of sealing a short name, so they are remembered.
@functools.lru_cache(maxsize=4096)
def _name_nonce(context: bytes) -> bytes:
    return blake3.blake3(
        context, derive_key_context=CONTEXT_NAME_NONCE
    ).digest(length=NONCE_SIZE)


def seal_name(name_key: AeadKey | bytes, name: str, context: bytes) -> bytes:
    """Seal a collection name or id deterministically.

    Equal `name` and `context` give equal bytes, of length
    ``ceil(len(name) / 32) * 32 + 16`` (at most 240).  Cost: about 3 us.
    Raises `InvalidInputError` for an empty name, one holding NUL, or
    one longer than `MAX_NAME_BYTES` bytes of UTF-8.
    """
    if type(name) is not str or not name or "\x00" in name:
        raise InvalidInputError("a name is a non-empty str without NUL")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError("a name must be valid Unicode") from exc
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidInputError(
            f"a name is at most {MAX_NAME_BYTES} bytes of UTF-8"
        )
    padded = raw + bytes(-len(raw) % NAME_BLOCK)
    return _cipher_of(name_key).encrypt(_name_nonce(context), padded, context)


def open_name(name_key: AeadKey | bytes, sealed: bytes, context: bytes) -> str:
    """Recover a name from `seal_name`; raise `IntegrityError`.

    Fails if the bytes were altered or sealed under another key or
    context.  Cost: about 3 us.
    """
    size = len(sealed) - TAG_SIZE
    if size < NAME_BLOCK or size % NAME_BLOCK:
        raise IntegrityError(f"sealed name has a bad length {len(sealed)}")
    try:
        padded = _cipher_of(name_key).decrypt(
            _name_nonce(context), sealed, context
        )
    except InvalidTag as exc:
        raise IntegrityError("sealed name failed authentication") from exc
    try:
        return padded.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError("sealed name is not UTF-8") from exc


def field_context(collection: str) -> bytes:
    """The name-sealing context for index field paths of `collection`."""
    return b"field\x00" + collection.encode("utf-8")


def seal_field(name_key: AeadKey | bytes, path: str, context: bytes) -> bytes:
    """Seal an index's field path deterministically, like `seal_name`.

    A field path may hold any character, NUL included, so it is padded
    with one ``0x80`` byte and then zero bytes to a multiple of 32 (ISO/IEC
    7816-4 padding), which any content survives.  Equal `path` and
    `context` give equal bytes, of length
    ``ceil((len(path) + 1) / 32) * 32 + 16`` (at most 1072).  Cost: about
    3 us.  Raises `InvalidInputError` for an empty path, one that is not
    valid Unicode, or one longer than `MAX_FIELD_BYTES` bytes of UTF-8.
    """
    if type(path) is not str or not path:
        raise InvalidInputError("a field path is a non-empty str")
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError("a field path must be valid Unicode") from exc
    if len(raw) > MAX_FIELD_BYTES:
        raise InvalidInputError(
            f"a field path is at most {MAX_FIELD_BYTES} bytes of UTF-8"
        )
    padded = raw + bytes((FIELD_PAD,)) + bytes(-(len(raw) + 1) % NAME_BLOCK)
    return _cipher_of(name_key).encrypt(_name_nonce(context), padded, context)


def open_field(
    name_key: AeadKey | bytes, sealed: bytes, context: bytes
) -> str:
    """Recover a field path from `seal_field`; raise `IntegrityError`.

    Fails if the bytes were altered or sealed under another key or
    context, or the padding or UTF-8 inside is malformed.
    """
    size = len(sealed) - TAG_SIZE
    if size < NAME_BLOCK or size % NAME_BLOCK:
        raise IntegrityError(f"sealed field has a bad length {len(sealed)}")
    try:
        padded = _cipher_of(name_key).decrypt(
            _name_nonce(context), sealed, context
        )
    except InvalidTag as exc:
        raise IntegrityError("sealed field failed authentication") from exc
    unpadded = padded.rstrip(b"\x00")
    if not unpadded or unpadded[-1] != FIELD_PAD:
        raise IntegrityError("sealed field has bad padding")
    try:
        return unpadded[:-1].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError("sealed field is not UTF-8") from exc


# -- signer ids ---------------------------------------------------------------


def signer_id(public_key: bytes) -> bytes:
    """An 8-byte name for a public key, used in signature trailers.

    Not a security boundary: it only selects the error message; the
    Ed25519 check decides.
    """
    return blake3.blake3(
        public_key, derive_key_context=CONTEXT_SIGNER_ID
    ).digest(length=SIGNER_ID_SIZE)
