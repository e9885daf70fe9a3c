"""Signatures of versions, and what a read does about them.

Pure given keys, like `sentinel.crypto`, whose keys, sizes and signer ids
it uses; every failure is a `SentinelError`.

`sign` is Ed25519 over ``SIGNATURE_DOMAIN || message``; the domain
prefix keeps a store signature from being valid for any other protocol.
A signature trailer (`make_trailer`) is the 8-byte `signer_id` of the
public key followed by the 64-byte signature, so `verify` can say "a
different key signed this" (`UnknownSignerError`) rather than only "bad
signature" (`SignatureError`).  Measured here: sign 25-40 us, verify
80-190 us depending on the load of the machine.

`VerificationOptions` chooses what a read does with signatures; the
authentication tag and the (keyed or plain) address are checked on
every read whatever the mode (see `sentinel.sealed`):

    strict()   verify the Ed25519 signature of every version read; a
               missing, malformed, foreign or bad signature raises.
               Cost: one verify (~130 us here) per version.
    warn()     the same checks, but a failure is logged and reported
               with `warnings.warn` (`SignatureWarning`); the read goes
               on.  Cost: the same as strict().
    silent()   no signature check.  Cost: nothing.

The default is silent().  Inside the store a signature adds no
protection: anyone without the passphrase is already stopped by the
AEAD tag, and anyone with it also holds the signing key.  Its value is
for a third party holding only the public key, which is what the
store's `verify()` and exported versions serve.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)

from sentinel.crypto import (
    PUBLIC_KEY_SIZE,
    SIGNATURE_DOMAIN,
    SIGNATURE_SIZE,
    SIGNER_ID_SIZE,
    TRAILER_SIZE,
    Keys,
    signer_id,
)
from sentinel.errors import (
    InvalidInputError,
    SignatureError,
    SignatureWarning,
    UnknownSignerError,
)

log = logging.getLogger(__name__)


def sign(keys: Keys, message: bytes) -> bytes:
    """Return the 64-byte Ed25519 signature of `message`.

    Signs ``SIGNATURE_DOMAIN || message``; Ed25519 is deterministic, so
    equal messages give equal signatures.  Cost: about 40 us.
    """
    return keys.signing_key.sign(SIGNATURE_DOMAIN + message)


def make_trailer(keys: Keys, message: bytes) -> bytes:
    """Return the 72-byte signature trailer: signer id, signature."""
    return signer_id(keys.public_key) + sign(keys, message)


def split_trailer(trailer: bytes) -> tuple[bytes, bytes]:
    """Split a trailer into (signer id, signature); `SignatureError`."""
    if len(trailer) != TRAILER_SIZE:
        raise SignatureError(
            f"signature trailer is {len(trailer)} bytes, not {TRAILER_SIZE}"
        )
    return bytes(trailer[:SIGNER_ID_SIZE]), bytes(trailer[SIGNER_ID_SIZE:])


def verify(
    public_key: bytes,
    message: bytes,
    signature: bytes,
    *,
    signer: bytes | None = None,
) -> None:
    """Check that `public_key`'s owner signed `message`.

    `signer` is the signer id a trailer recorded, if any.  Raises
    `InvalidInputError` for a public key that is not 32 bytes;
    `SignatureError` for an empty (missing) or malformed signature or
    one that does not verify; `UnknownSignerError` when `signer` names a
    different key.  Cost: about 130 us here.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidInputError(
            f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes"
        )
    if not signature:
        raise SignatureError("signature is missing")
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(
            f"signature is {len(signature)} bytes, not {SIGNATURE_SIZE}"
        )
    expected = signer_id(public_key)
    if signer is not None and signer != expected:
        raise UnknownSignerError(
            f"signed by key {bytes(signer).hex()}, not by this store's "
            f"key {expected.hex()}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, SIGNATURE_DOMAIN + message
        )
    except InvalidSignature as exc:
        raise SignatureError(
            "signature does not verify: content or signature altered"
        ) from exc


Mode = Literal["strict", "warn", "silent"]
_MODES = ("strict", "warn", "silent")


@dataclass(frozen=True, slots=True)
class VerificationOptions:
    """What a read does about signatures; see the module docstring.

    Hashes and authentication tags are checked in every mode.  Use the
    constructors: `strict()`, `warn()`, `silent()` (the default).
    """

    mode: Mode = "silent"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise InvalidInputError(
                f"verification mode must be one of {', '.join(_MODES)}"
            )

    @classmethod
    def strict(cls) -> VerificationOptions:
        """Verify every signature; a failure raises.  ~130 us a read."""
        return cls("strict")

    @classmethod
    def warn(cls) -> VerificationOptions:
        """Verify every signature; a failure logs and warns."""
        return cls("warn")

    @classmethod
    def silent(cls) -> VerificationOptions:
        """Skip signatures (hashes and tags are still checked)."""
        return cls("silent")

    @property
    def checks_signatures(self) -> bool:
        return self.mode != "silent"

    def check(
        self,
        public_key: bytes,
        message: bytes,
        signature: bytes,
        *,
        signer: bytes | None = None,
        what: str = "object",
        stacklevel: int = 2,
    ) -> bool | None:
        """Apply the mode to one signature; say whether it verified.

        Returns True when it verified, False when it failed in warn
        mode, None in silent mode (nothing checked, nothing spent).

        In strict mode the errors of `verify` propagate.  In warn mode a
        `SignatureError` is logged and issued as a `SignatureWarning`
        naming `what`; `stacklevel` points that warning at the caller.
        """
        if self.mode == "silent":
            return None
        try:
            verify(public_key, message, signature, signer=signer)
        except SignatureError as exc:
            if self.mode == "strict":
                raise
            log.warning("signature check failed for %s: %s", what, exc)
            warnings.warn(
                f"signature check failed for {what}: {exc}",
                SignatureWarning,
                stacklevel=stacklevel + 1,
            )
            return False
        return True


DEFAULT_VERIFICATION = VerificationOptions.silent()
