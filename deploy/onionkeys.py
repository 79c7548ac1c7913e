"""Tor v3 onion service keys in tor's own file formats.

Pure functions. The key store creates a relay's onion key on the operator's machine (like the
CA key), so the ``.onion`` name is known before the host is touched and the key store is the
backup from the first run: a reinstalled host gets the same key back before tor starts.
Formats (tor ``rend-spec-v3`` and ``src/lib/crypt_ops/crypto_format.c``):

* ``hs_ed25519_secret_key``: 32-byte header ``== ed25519v1-secret: type0 ==\\0\\0\\0`` + the 64-byte
  expanded key (clamped SHA-512(seed)[0:32] ‖ SHA-512(seed)[32:64]);
* ``hs_ed25519_public_key``: header ``== ed25519v1-public: type0 ==\\0\\0\\0`` + 32-byte key;
* ``hostname``: base32(pubkey ‖ SHA3-256(".onion checksum" ‖ pubkey ‖ 0x03)[:2] ‖ 0x03) + ".onion".
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SECRET_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
PUBLIC_HEADER = b"== ed25519v1-public: type0 ==\x00\x00\x00"
VERSION = b"\x03"


@dataclass(frozen=True)
class OnionKeys:
    """The three files tor keeps in a HiddenServiceDir."""

    secret_key_file: bytes  # hs_ed25519_secret_key
    public_key_file: bytes  # hs_ed25519_public_key
    hostname: str  # without newline

    @property
    def files(self) -> dict[str, bytes]:
        return {
            "hs_ed25519_secret_key": self.secret_key_file,
            "hs_ed25519_public_key": self.public_key_file,
            "hostname": (self.hostname + "\n").encode(),
        }


def onion_hostname(public_key: bytes) -> str:
    """The v3 ``.onion`` hostname of a 32-byte ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an onion public key has 32 bytes")
    checksum = hashlib.sha3_256(b".onion checksum" + public_key + VERSION).digest()[:2]
    return base64.b32encode(public_key + checksum + VERSION).decode().lower() + ".onion"


def expand_seed(seed: bytes) -> bytes:
    """The 64-byte expanded ed25519 secret key tor stores, from a 32-byte seed."""
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def from_seed(seed: bytes) -> OnionKeys:
    """Onion keys for a 32-byte seed (deterministic: tests use fixed seeds)."""
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    return OnionKeys(SECRET_HEADER + expand_seed(seed), PUBLIC_HEADER + public, onion_hostname(public))


def generate() -> OnionKeys:
    """Fresh random onion keys."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return from_seed(seed)


def parse_files(secret_key_file: bytes, public_key_file: bytes, hostname: str) -> OnionKeys:
    """Check files taken from a host (or the key store) belong together; raise ValueError if not."""
    if not secret_key_file.startswith(SECRET_HEADER) or len(secret_key_file) != 96:
        raise ValueError("hs_ed25519_secret_key is not a tor v3 secret key file")
    if not public_key_file.startswith(PUBLIC_HEADER) or len(public_key_file) != 64:
        raise ValueError("hs_ed25519_public_key is not a tor v3 public key file")
    public = public_key_file[32:]
    expected = onion_hostname(public)
    if hostname.strip() != expected:
        raise ValueError(f"hostname {hostname.strip()!r} does not match the public key ({expected})")
    # The public key must be the one the secret scalar produces.
    from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp

    scalar = secret_key_file[32:64]
    # tor stores the clamped scalar; reduce mod l before the no-clamp multiplication.
    from nacl.bindings import crypto_core_ed25519_scalar_reduce

    derived = crypto_scalarmult_ed25519_base_noclamp(crypto_core_ed25519_scalar_reduce(scalar + bytes(32)))
    if derived != public:
        raise ValueError("hs_ed25519_secret_key does not belong to hs_ed25519_public_key")
    return OnionKeys(secret_key_file, public_key_file, expected)
