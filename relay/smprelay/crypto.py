"""Cryptographic primitives of SMP (upstream ``Crypto.hs``), pure functions over bytes.

libsodium (PyNaCl's bundled copy) does the hot path: Ed25519 verification, X25519 and the
XSalsa20-Poly1305 box, because it is about twice as fast as ``cryptography`` for these.
``cryptography`` covers what libsodium lacks (Ed448, signing with the server key).

Upstream's ``xSalsa20`` is a *cascade*: the key first goes through HSalsa20 with a zero
nonce, then standard XSalsa20. For a raw X25519 output that is exactly NaCl ``crypto_box``
(whose ``beforenm`` does the same HSalsa20); for block encryption keys it means
``crypto_secretbox(m, nonce, HSalsa20(key, 0))`` — not plain secretbox.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
from dataclasses import dataclass

import nacl._sodium
import nacl.bindings as nb
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

_lib = ctypes.CDLL(nacl._sodium.__file__)
_lib.crypto_core_hsalsa20.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
_lib.crypto_sign_verify_detached.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulonglong,
    ctypes.c_char_p,
]
_ZERO16 = bytes(16)
_ZERO_SALT = bytes(64)

# -- key formats (DER SubjectPublicKeyInfo with fixed prefixes) ----------------------------
SPKI_PREFIX = {
    "ed25519": bytes.fromhex("302a300506032b6570032100"),
    "x25519": bytes.fromhex("302a300506032b656e032100"),
    "ed448": bytes.fromhex("3043300506032b6571033a00"),
    "x448": bytes.fromhex("3042300506032b656f033900"),
}
_RAW_LEN = {"ed25519": 32, "x25519": 32, "ed448": 57, "x448": 56}
_BY_PREFIX = {p: alg for alg, p in SPKI_PREFIX.items()}


class CryptoError(ValueError):
    """Bad key, bad signature encoding or failed decryption."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    alg: str  # "ed25519" | "ed448" | "x25519" | "x448"
    raw: bytes

    @property
    def der(self) -> bytes:
        return SPKI_PREFIX[self.alg] + self.raw


def decode_public_key(der: bytes) -> PublicKey:
    """Parse a DER SPKI of one of the four curve keys SMP uses."""
    alg = _BY_PREFIX.get(der[:12])
    if alg is None or len(der) != 12 + _RAW_LEN[alg]:
        raise CryptoError("not an Ed25519/Ed448/X25519/X448 public key")
    return PublicKey(alg, der[12:])


def x25519_spki(raw: bytes) -> bytes:
    return SPKI_PREFIX["x25519"] + raw


# -- X25519 ---------------------------------------------------------------------------------
def x25519_keypair() -> tuple[bytes, bytes]:
    """(private, public) raw 32-byte X25519 keys."""
    sk = os.urandom(32)
    return sk, nb.crypto_scalarmult_base(sk)


def x25519(sk: bytes, pk: bytes) -> bytes:
    """Raw X25519 shared secret (upstream ``dh'``); rejects the all-zero result."""
    try:
        return nb.crypto_scalarmult(sk, pk)
    except Exception as e:  # libsodium refuses low-order points
        raise CryptoError("invalid X25519 public key") from e


# -- the XSalsa20-Poly1305 cascade ------------------------------------------------------------
def hsalsa20(key: bytes) -> bytes:
    """HSalsa20(key, 0^16): the box key that upstream's cascade derives from ``key``."""
    out = ctypes.create_string_buffer(32)
    _lib.crypto_core_hsalsa20(out, _ZERO16, key, None)
    return out.raw


def box_seal(box_key: bytes, nonce: bytes, msg: bytes) -> bytes:
    """tag(16) ‖ ciphertext with a key already passed through :func:`hsalsa20`."""
    return nb.crypto_secretbox_easy(msg, nonce, box_key)


def box_open(box_key: bytes, nonce: bytes, packet: bytes) -> bytes:
    try:
        return nb.crypto_secretbox_open_easy(packet, nonce, box_key)
    except Exception as e:
        raise CryptoError("decryption failed") from e


def cb_encrypt(secret: bytes, nonce: bytes, msg: bytes) -> bytes:
    """Upstream ``cryptoBox`` with a raw secret (X25519 output or SbKey)."""
    return box_seal(hsalsa20(secret), nonce, msg)


def cb_decrypt(secret: bytes, nonce: bytes, packet: bytes) -> bytes:
    return box_open(hsalsa20(secret), nonce, packet)


def cb_nonce(b: bytes) -> bytes:
    """``cbNonce``: zero-padded or truncated to 24 bytes."""
    return b[:24] if len(b) >= 24 else b + bytes(24 - len(b))


# -- HKDF-SHA512 and the block-encryption chain ----------------------------------------------
def hkdf_sha512(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with SHA-512 (HMAC from the standard library: no per-call object setup)."""
    prk = hmac.digest(salt or _ZERO_SALT, ikm, "sha512")
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.digest(prk, t + info + bytes((i,)), "sha512")
        out += t
        i += 1
    return out[:length]


def sbc_init(session_id: bytes, dh_secret: bytes) -> tuple[bytes, bytes]:
    """(ck1, ck2): the server sends with ck1 and receives with ck2."""
    out = hkdf_sha512(session_id, dh_secret, b"SimpleXSbChainInit", 64)
    return out[:32], out[32:]


def sbc_next(ck: bytes) -> tuple[bytes, bytes, bytes]:
    """One chain step: (next chain key, box key for this block, nonce)."""
    out = hkdf_sha512(b"", ck, b"SimpleXSbChain", 88)
    return out[:32], hsalsa20(out[32:64]), out[64:88]


# -- signatures --------------------------------------------------------------------------------
def ed25519_verify(pk: bytes, sig: bytes, msg: bytes) -> bool:
    if len(sig) != 64 or len(pk) != 32:
        return False
    return _lib.crypto_sign_verify_detached(sig, msg, len(msg), pk) == 0


def ed448_verify(pk: bytes, sig: bytes, msg: bytes) -> bool:
    if len(sig) != 114 or len(pk) != 57:
        return False
    try:
        ed448.Ed448PublicKey.from_public_bytes(pk).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_signature(key: PublicKey, sig: bytes, msg: bytes) -> bool:
    if key.alg == "ed25519":
        return ed25519_verify(key.raw, sig, msg)
    if key.alg == "ed448":
        return ed448_verify(key.raw, sig, msg)
    return False


def cb_authenticator(secret: bytes, nonce: bytes, msg: bytes) -> bytes:
    """``cbAuthenticate``: crypto_box(secret, nonce, SHA-512(msg)), 80 bytes."""
    return cb_encrypt(secret, nonce, hashlib.sha512(msg).digest())


def cb_verify(secret: bytes, nonce: bytes, auth: bytes, msg: bytes) -> bool:
    return len(auth) == 80 and hmac.compare_digest(cb_authenticator(secret, nonce, msg), auth)


# -- SignedExact (X.509-style signed object) ----------------------------------------------------
_ALG_ID = {
    "ed25519": bytes.fromhex("300506032b6570"),
    "ed448": bytes.fromhex("300506032b6571"),
}


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _der_seq(body: bytes) -> bytes:
    return b"\x30" + _der_len(len(body)) + body


def signing_alg(private_key: object) -> str:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, ed448.Ed448PrivateKey):
        return "ed448"
    raise CryptoError("server.key must be an Ed25519 or Ed448 key")


def sign_exact_pubkey(private_key: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey, spki: bytes) -> bytes:
    """crypton-x509 ``objectToSignedExact`` of a PubKey: the signed bytes are SEQUENCE{SPKI}."""
    alg = signing_alg(private_key)
    tbs = _der_seq(spki)
    sig = private_key.sign(tbs)
    bitstr = b"\x03" + _der_len(len(sig) + 1) + b"\x00" + sig
    return _der_seq(tbs + _ALG_ID[alg] + bitstr)


def public_raw(private_key: ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sha3_384(b: bytes) -> bytes:
    return hashlib.sha3_384(b).digest()
