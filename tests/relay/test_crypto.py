"""Crypto primitives: upstream's cascade equals NaCl crypto_box, block chain, SignedExact, fingerprint."""

import base64
import hashlib

import nacl.bindings as nb
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.hashes import SHA512
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smprelay import crypto as c

FX = "/work/shared/reference/upstream-fixtures"


def _der(path):
    return x509.load_pem_x509_certificate(open(path, "rb").read()).public_bytes(serialization.Encoding.DER)


def test_fingerprint_vectors():
    fp = lambda d: base64.urlsafe_b64encode(hashlib.sha256(d).digest()).decode()
    assert fp(_der(f"{FX}/ca.crt")) == "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="
    assert fp(_der(f"{FX}/ed25519/ca.crt")) == "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="


def test_cb_encrypt_is_nacl_crypto_box():
    sk1, pk1 = c.x25519_keypair()
    sk2, pk2 = c.x25519_keypair()
    nonce = bytes(range(24))
    ours = c.cb_encrypt(c.x25519(sk1, pk2), nonce, b"message")
    assert ours == nb.crypto_box(b"message", nonce, pk2, sk1)
    assert c.cb_decrypt(c.x25519(sk2, pk1), nonce, ours) == b"message"


def test_hsalsa20_matches_box_beforenm():
    sk1, _ = c.x25519_keypair()
    _, pk2 = c.x25519_keypair()
    assert c.hsalsa20(c.x25519(sk1, pk2)) == nb.crypto_box_beforenm(pk2, sk1)


def test_hkdf_matches_cryptography():
    for salt in (b"", b"salt-bytes"):
        ref = HKDF(SHA512(), 88, salt or None, b"SimpleXSbChain").derive(b"k" * 32)
        assert c.hkdf_sha512(salt, b"k" * 32, b"SimpleXSbChain", 88) == ref


def test_sb_chain_steps_differ_and_are_deterministic():
    ck1, ck2 = c.sbc_init(b"s" * 32, b"d" * 32)
    assert ck1 != ck2 and len(ck1) == 32
    n1 = c.sbc_next(ck1)
    assert n1 == c.sbc_next(ck1)
    assert c.sbc_next(n1[0])[1] != n1[1]


def test_ed25519_verify_and_reject():
    k = ed25519.Ed25519PrivateKey.generate()
    sig = k.sign(b"data")
    raw = c.public_raw(k)
    assert c.ed25519_verify(raw, sig, b"data")
    assert not c.ed25519_verify(raw, sig, b"datb")
    assert not c.ed25519_verify(raw, sig[:63], b"data")


def test_ed448_verify():
    k = ed448.Ed448PrivateKey.generate()
    pk = c.decode_public_key(c.SPKI_PREFIX["ed448"] + c.public_raw(k))
    assert c.verify_signature(pk, k.sign(b"x"), b"x")
    assert not c.verify_signature(pk, k.sign(b"x"), b"y")


def test_authenticator_roundtrip():
    sk1, pk1 = c.x25519_keypair()
    sk2, pk2 = c.x25519_keypair()
    nonce = c.cb_nonce(b"corr")
    a = c.cb_authenticator(c.x25519(sk1, pk2), nonce, b"authorized")
    assert len(a) == 80
    assert c.cb_verify(c.x25519(sk2, pk1), nonce, a, b"authorized")
    assert not c.cb_verify(c.x25519(sk2, pk1), nonce, a, b"tampered")


def test_decode_public_key_prefixes():
    k = c.decode_public_key(base64.b64decode("MCowBQYDK2VwAyEAfAOflyvbJv1fszgzkQ6buiZJVgSpQWsucXq7U6zjMgY="))
    assert k.alg == "ed25519" and len(k.raw) == 32
    k = c.decode_public_key(base64.b64decode("MCowBQYDK2VuAyEAriy+HcARIhqsgSjVnjKqoft+y6pxrxdY68zn4+LjYhQ="))
    assert k.alg == "x25519"
    for bad in (b"", b"\x30" * 44, c.SPKI_PREFIX["ed25519"] + b"x" * 31):
        try:
            c.decode_public_key(bad)
        except c.CryptoError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def _parse_signed_exact(obj: bytes):
    """Minimal DER walk: SEQUENCE{ tbs=SEQUENCE{SPKI}, algId, BITSTRING }."""
    from smprelay.encoding import Parser

    def tlv(p):
        tag = p.byte()
        n = p.byte()
        if n & 0x80:
            n = int.from_bytes(p.take(n & 0x7F), "big")
        return tag, p.take(n)

    tag, body = tlv(Parser(obj))
    assert tag == 0x30
    p = Parser(body)
    start = p.pos
    t1, tbs_body = tlv(p)
    tbs = body[start : p.pos]
    _, alg = tlv(p)
    t3, bits = tlv(p)
    assert t1 == 0x30 and t3 == 0x03 and bits[0] == 0 and p.at_end()
    return tbs, tbs_body, alg, bits[1:]


def test_signed_exact_sizes_and_signature():
    _, pk = c.x25519_keypair()
    spki = c.x25519_spki(pk)
    k25519 = ed25519.Ed25519PrivateKey.generate()
    obj = c.sign_exact_pubkey(k25519, spki)
    assert len(obj) == 122 and obj[:4] == bytes.fromhex("3078302c")
    tbs, inner, alg, sig = _parse_signed_exact(obj)
    assert inner == spki and len(tbs) == 46 and alg == bytes.fromhex("06032b6570")
    k25519.public_key().verify(sig, tbs)
    k448 = ed448.Ed448PrivateKey.generate()
    obj = c.sign_exact_pubkey(k448, spki)
    assert len(obj) == 173 and obj[:3] == bytes.fromhex("3081aa")
    tbs, inner, _, sig = _parse_signed_exact(obj)
    k448.public_key().verify(sig, tbs)
