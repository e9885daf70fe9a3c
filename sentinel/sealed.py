"""Sealed objects: the object codec of a store opened with a passphrase.

Pure given keys: no I/O.  Normative description:
``objects_spec/encryption.md`` ("Sealed objects").  A sealed object keeps
the 12-byte header of `sentinel.objects`, with encoding 2 and flags bit 0
set, and its length field holding the length of the body that follows::

    header   b"SNTO", type, 2, flags = 1, 0, u32 body length
    body     nonce (12) || ciphertext || tag (16)        AES-256-GCM-SIV
             plaintext: zstd frame of the payload
                        || signer id (8) || Ed25519 signature (64)
             associated data: header (12) || address (32)

The address is the keyed BLAKE3 hash of the typed content (the same
``b"version 123\\x00" + payload`` as a plain store's, but keyed with the
addressing key), so equal versions still share one object while nobody
without the key can test a guess against an address.  The signature,
over ``crypto.SIGNATURE_DOMAIN || typed content``, is inside the sealed
plaintext: it reveals nothing, and a changed signature byte is caught
by the tag like any other.

A read checks, in order: the header and the body's length (bounded
before anything is decrypted), the tag (`IntegrityError`), the trailer,
the zstd frame and its declared size (bounded by `MAX_PAYLOAD`), and
the keyed address of the content (`CorruptObjectError`), in every
verification mode; then, when `VerificationOptions` checks signatures
(strict, warn, and always in `Store.verify`), the signature.

Hashes and tags are checked on every read, always.  The tag alone
already authenticates the content together with the address it was
sealed for, so the recomputed hash adds a check against a writer that
holds the keys and sealed the wrong content for an address (a bug); it
costs a keyed BLAKE3 of the payload, about 1-2 us for 300 bytes (see
``objects_spec/encryption.md``, section 7).

Runtime, 300-byte version, measured here: encode about 50 us, of which
the Ed25519 signature is about 40 us; a silent decode a few us more
than a plain one (the tag and the keyed hash), a strict one about
130-190 us more.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag

from sentinel import codec, crypto, names, objects, signing
from sentinel.document import Document
from sentinel.errors import (
    CorruptObjectError,
    IntegrityError,
    InvalidInputError,
    SignatureError,
)
from sentinel.objects import Address, Encoded, Opened

# The zstd bound of the largest payload, plus the trailer and the seal:
# a header declaring more is refused before the body is decrypted.
MAX_BODY = (
    objects.MAX_PAYLOAD
    + (objects.MAX_PAYLOAD >> 8)
    + 1024
    + crypto.TRAILER_SIZE
    + crypto.SEAL_OVERHEAD
)
SILENT = signing.VerificationOptions.silent()
STRICT = signing.VerificationOptions.strict()

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class SealedCodec:
    """Encrypts, signs and addresses objects with one store's `Keys`.

    Thread-safe and fork-safe: it holds only immutable keys, and every
    seal draws a fresh nonce from `os.urandom`.
    """

    signed = True

    def __init__(self, keys: crypto.Keys) -> None:
        self._keys = keys
        self._sealing_key = keys.sealing_key
        # The cipher's own decrypt, without a wrapper call on every read.
        self._open_box = keys.sealing_key.cipher.decrypt
        self._addressing_key = keys.addressing_key
        # Copying a keyed hasher skips the key setup on every read.
        self._hasher = blake3.blake3(key=keys.addressing_key)
        self._signer = crypto.signer_id(keys.public_key)
        self.public_key = keys.public_key

    def address(self, kind: int, payload: bytes) -> Address:
        """The keyed address of a payload of type `kind`.  ~1 us."""
        return crypto.keyed_address(
            self._addressing_key,
            objects.type_prefix(kind, len(payload)),
            payload,
        )

    def encode(self, kind: int, payload: bytes) -> Encoded:
        """Address, sign, compress and seal one object.

        Cost: about 50 us for a 300-byte payload (40 us of it is the
        signature).  Raises nothing for a valid `kind`.
        """
        return self._encode(kind, payload)

    def _encode(
        self,
        kind: int,
        payload: bytes,
        nonce: bytes | None = None,
        frame: bytes | None = None,
    ) -> Encoded:
        """`encode`, optionally with a fixed `nonce` and a given zstd
        `frame` of the payload: the seams the spec's test vectors use
        (zstd's output may differ between zstd versions)."""
        prefix = objects.type_prefix(kind, len(payload))
        address = crypto.keyed_address(self._addressing_key, prefix, payload)
        signature = signing.sign(self._keys, prefix + payload)
        if frame is None:
            frame = objects.compress(payload)
        plaintext = b"".join((frame, self._signer, signature))
        header = objects.HEADER.pack(
            objects.MAGIC,
            kind,
            objects.ENCODING_SEALED,
            objects.FLAG_SIGNED,
            0,
            len(plaintext) + crypto.SEAL_OVERHEAD,
        )
        associated = header + address
        if nonce is None:
            box = crypto.seal(self._sealing_key, plaintext, associated)
        else:
            box = crypto._seal_with_nonce(
                self._sealing_key, nonce, plaintext, associated
            )
        return Encoded(address, header + box, signature)

    def decode(
        self,
        stored: bytes,
        address: bytes,
        *,
        path: str | None = None,
        verification: signing.VerificationOptions | None = None,
    ) -> Opened:
        """Check and open a sealed object; return type, payload and
        signature.

        Raises `CorruptObjectError` (header, length, zstd frame, keyed
        address: in every mode),
        `IntegrityError` (the tag fails: any changed byte of header,
        body or placement) and, in strict mode, `SignatureError` or
        `UnknownSignerError`; each names the address and the file.  In
        warn mode a bad signature is logged and warned about.
        """

        # The common case is one compound test; the slow path below
        # names what is wrong.
        size = len(stored) - _HEADER_SIZE
        if size >= 0:
            magic, kind, encoding, flags, reserved, length = _unpack(stored)
        if not (
            size >= 0
            and magic == _MAGIC
            and encoding == _SEALED
            and flags in _FLAGS
            and not reserved
            and kind in _TYPES
            and length == size
            and _MIN_BODY[flags] <= length <= MAX_BODY
        ):
            raise _bad_header(stored, address, path)

        try:
            plaintext = self._open_box(
                stored[_HEADER_SIZE:_BOX_START],
                stored[_BOX_START:],
                stored[:_HEADER_SIZE] + address,
            )
        except InvalidTag as exc:
            raise IntegrityError(
                f"object {address.hex()} failed authentication: its bytes "
                "were changed, or it was moved from another address",
                path=path,
                address=address.hex(),
            ) from exc

        signer: bytes | None = None
        signature = b""
        frame = plaintext
        if flags:
            cut = len(plaintext) - _TRAILER
            signer = plaintext[cut : cut + _SIGNER]
            signature = plaintext[cut + _SIGNER :]
            frame = plaintext[:cut]
        # The usual frame is decoded inline; anything unusual goes to
        # `objects.decompress_frame`, which checks again and names it.
        try:
            declared = _frame_size(frame)
            if not 0 <= declared <= _MAX_PAYLOAD:
                raise ValueError(declared)
            payload = objects._codecs.decompressor.decompress(
                frame, max_output_size=declared, allow_extra_data=False
            )
            if len(payload) != declared:
                raise ValueError(declared)
        except (zstandard.ZstdError, ValueError):
            payload = objects.decompress_frame(frame, address, path)

        # The keyed address is recomputed on every read, in every mode:
        # hashes and tags are checked always; only signatures depend on
        # the verification mode.
        prefix = b"%s%d\x00" % (_PREFIXES[kind], len(payload))
        hasher = self._hasher.copy()
        hasher.update(prefix)
        hasher.update(payload)
        actual = hasher.digest()
        if actual != address:
            error = objects.corrupt(
                address, path, "content does not match its address"
            )
            error.expected = address.hex()
            error.actual = actual.hex()
            raise error
        options = verification or SILENT
        if options.checks_signatures:
            try:
                options.check(
                    self.public_key,
                    prefix + payload,
                    signature,
                    signer=signer,
                    what=f"object {address.hex()}",
                    stacklevel=_outside_depth(),
                )
            except SignatureError as exc:
                exc.path = path
                exc.address = address.hex()
                raise
        return Opened(kind, payload, signature)


_unpack = objects.HEADER.unpack_from
_frame_size = zstandard.frame_content_size
_MAX_PAYLOAD = objects.MAX_PAYLOAD
# "version " and the like: the typed content's prefix before the size.
_PREFIXES = {kind: name + b" " for kind, name in objects.TYPE_NAMES.items()}
_HEADER_SIZE = objects.HEADER_SIZE
_MAGIC = objects.MAGIC
_SEALED = objects.ENCODING_SEALED
_FLAGS = (0, objects.FLAG_SIGNED)
_TYPES = objects.TYPE_NAMES
_BOX_START = _HEADER_SIZE + crypto.NONCE_SIZE
_TRAILER = crypto.TRAILER_SIZE
_SIGNER = crypto.SIGNER_ID_SIZE
# The shortest valid body without and with a signature trailer.
_MIN_BODY = (crypto.SEAL_OVERHEAD, crypto.SEAL_OVERHEAD + _TRAILER)


def _bad_header(
    stored: bytes, address: bytes, path: str | None
) -> CorruptObjectError:
    """Name the first header check a sealed object fails."""
    if len(stored) < _HEADER_SIZE:
        return objects.corrupt(address, path, "shorter than its header")
    magic, kind, encoding, flags, reserved, length = _unpack(stored)
    if magic != _MAGIC:
        reason = "bad magic"
    elif kind not in _TYPES:
        reason = f"unknown object type {kind}"
    elif encoding != _SEALED:
        # A plain object in an encrypted store was not written by this
        # store; its address could not verify anyway.
        reason = f"encoding {encoding} in an encrypted store"
    elif flags not in _FLAGS or reserved:
        reason = "reserved header bits are set"
    elif length != len(stored) - _HEADER_SIZE:
        reason = "body length differs from its header"
    else:
        reason = f"sealed body of {length:,} bytes"
    return objects.corrupt(address, path, reason)


def _outside_depth() -> int:
    """How many frames up the first caller outside this package is, as
    seen from `SealedCodec.decode`: a warn-mode warning points there,
    at the user's `get` or loop, whatever path led to the read."""
    # Level 1 is `decode` itself; the walk starts at its caller.
    frame: FrameType | None = sys._getframe(2)
    depth = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        depth += 1
    return depth


# -- verification outside the store ------------------------------------------

_FIELDS = (
    "collection",
    "id",
    "version",
    "parent",
    "created_at",
    "updated_at",
    "deleted",
    "data",
    "signature",
)


def signed_message(version: Document | Mapping[str, Any]) -> bytes:
    """The typed content a version's signature signs, rebuilt from the
    version's fields.

    `version` is a `Document` or a mapping with the keys ``collection,
    id, version, parent, created_at, updated_at, deleted, data`` (the
    version object's fields; ``parent`` is a hex address or None).
    Raises `InvalidInputError` for a missing or mistyped field.  Cost:
    one canonical encoding of the data.
    """
    fields = _fields_of(version)
    parent = fields["parent"]
    if parent is not None and (type(parent) is not str or len(parent) != 64):
        raise InvalidInputError("parent must be a hex address or None")
    for key in ("created_at", "updated_at"):
        if type(fields[key]) is not str or not fields[key].isascii():
            raise InvalidInputError(f"{key} must be an ASCII string")
    number = fields["version"]
    if type(number) is not int or number < 1:
        raise InvalidInputError("version must be an int >= 1")
    if type(fields["deleted"]) is not bool:
        raise InvalidInputError("deleted must be a bool")
    try:
        parent_bytes = bytes.fromhex(parent) if parent is not None else None
    except ValueError as exc:
        raise InvalidInputError("parent must be a hex address") from exc
    payload = objects.version_payload(
        names.collection_name(fields["collection"]),
        names.document_id(fields["id"]),
        number,
        parent_bytes,
        fields["created_at"],
        fields["updated_at"],
        fields["deleted"],
        codec.canonical_document(fields["data"]),
    )
    return objects.typed_content(objects.TYPE_VERSION, payload)


def verify_version(
    public_key: bytes | str, version: Document | Mapping[str, Any]
) -> None:
    """Check that the holder of `public_key` signed `version`.

    For a third party with the store's public key (see
    `sentinel.read_public_key`) and a version given to it, as a
    `Document` or as a mapping of its fields plus ``signature`` (hex).
    Nothing is read from disk and no passphrase is needed.  Raises
    `InvalidInputError` for a malformed key or field, `SignatureError`
    if the signature is missing or does not verify (the data, any
    field, or the signature was changed, or another key signed it).
    Cost: about 130 us.
    """
    key = _public_key_bytes(public_key)
    signature_hex = _fields_of(version)["signature"]
    if type(signature_hex) is not str:
        raise InvalidInputError("signature must be a hex string")
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise InvalidInputError("signature must be a hex string") from exc
    signing.verify(key, signed_message(version), signature)


def _public_key_bytes(public_key: bytes | str) -> bytes:
    if isinstance(public_key, str):
        try:
            public_key = bytes.fromhex(public_key)
        except ValueError as exc:
            raise InvalidInputError("public key must be hex") from exc
    if type(public_key) is not bytes or len(public_key) != 32:
        raise InvalidInputError("an Ed25519 public key is 32 bytes")
    return public_key


def _fields_of(version: Document | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(version, Document):
        return {name: getattr(version, name) for name in _FIELDS}
    if not isinstance(version, Mapping):
        raise InvalidInputError("a version is a Document or a mapping")
    missing = [name for name in _FIELDS if name not in version]
    if missing:
        raise InvalidInputError(f"version lacks {', '.join(missing)}")
    return {name: version[name] for name in _FIELDS}
