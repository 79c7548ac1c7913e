"""Upstream byte vectors and the client's pure parts (no server needed).

Vectors come from simplexmq tests/CoreTests (EncodingTests, BatchingTests), tests/fixtures and
the reference §3.3/§6.5/§9; the client must reproduce them for its scenario tests to mean anything.
"""

from __future__ import annotations

import calendar
import hashlib
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smprelay import client as smp

FIX = Path("/work/shared/reference/upstream-fixtures")
ED448_FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="
ED25519_FP = "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="


def der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(serialization.Encoding.DER)


def test_int64_vector():
    assert smp.i64(1234567890123456789) == bytes.fromhex("112210f47de98115")
    assert smp.Reader(bytes.fromhex("112210f47de98115")).i64() == 1234567890123456789


def test_timestamp_vector_in_msg_body():
    ts = calendar.timegm((2022, 1, 1, 10, 24, 5))
    assert ts == 1641032645
    # a MSG body as the server builds it (§6.10) decrypts to that timestamp
    rk_pub, rk_priv = smp.sodium.crypto_box_keypair()
    srv_pub, srv_priv = smp.sodium.crypto_box_keypair()
    msg_id = os.urandom(24)
    plain = smp.pad(smp.i64(ts) + b"T " + b"hello", smp.MSG_PADDED)
    enc = smp.sodium.crypto_box(plain, msg_id, rk_pub, srv_priv)
    assert len(enc) == 16122
    m = smp.decrypt_msg(smp.sodium.crypto_box_beforenm(srv_pub, rk_priv), msg_id, enc)
    assert (m.timestamp, m.notification, m.body, m.quota) == (ts, True, b"hello", False)
    quota = smp.sodium.crypto_box(smp.pad(b"QUOTA " + smp.i64(ts), smp.MSG_PADDED), msg_id, rk_pub, srv_priv)
    q = smp.decrypt_msg(smp.sodium.crypto_box_beforenm(srv_pub, rk_priv), msg_id, quota)
    assert q.quota and q.timestamp == ts


@pytest.mark.parametrize("path,fp", [(FIX / "ca.crt", ED448_FP), (FIX / "ed25519/ca.crt", ED25519_FP)])
def test_fingerprint_vectors(path, fp):
    assert smp.fingerprint(der(path)) == fp


@pytest.mark.parametrize("sub", ["", "ed25519/"])
def test_fixture_chain_accepted_and_wrong_hash_rejected(sub):
    chain = [der(FIX / sub / "server.crt"), der(FIX / sub / "ca.crt")]
    kh = hashlib.sha256(chain[1]).digest()
    leaf = smp.check_chain(chain, kh)
    assert leaf.public_bytes(serialization.Encoding.DER) == chain[0]
    with pytest.raises(smp.WrongFingerprint, match="expects"):
        smp.check_chain(chain, bytes(32))
    with pytest.raises(smp.HandshakeError, match="2 to 4"):
        smp.check_chain(chain[:1], kh)
    with pytest.raises(smp.HandshakeError, match="2 to 4"):
        smp.check_chain(chain * 3, kh)
    # a leaf not issued by the CA: the other fixture's server cert
    other = "ed25519/" if sub == "" else ""
    with pytest.raises(smp.HandshakeError, match="does not validate"):
        smp.check_chain([der(FIX / other / "server.crt"), chain[1]], kh)


def signed_exact(key_path: Path, x25519_pub: bytes) -> bytes:
    """The server hello's signed key, built from the reference's byte layout (§6.5)."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    spki = smp.spki("x25519", x25519_pub)
    wrapper = b"\x30" + bytes((len(spki),)) + spki
    sig = key.sign(wrapper)
    if len(sig) == 64:
        alg = bytes.fromhex("300506032b6570")
    else:
        alg = bytes.fromhex("300506032b6571")
    bits = b"\x03" + bytes((len(sig) + 1,)) + b"\x00" + sig
    body = wrapper + alg + bits
    ln = bytes((len(body),)) if len(body) < 128 else b"\x81" + bytes((len(body),))
    return b"\x30" + ln + body


@pytest.mark.parametrize("sub,size", [("ed25519/", 122), ("", 173)])
def test_signed_exact_sizes_and_verification(sub, size):
    pub = os.urandom(32)
    se = signed_exact(FIX / sub / "server.key", pub)
    assert len(se) == size
    leaf = x509.load_pem_x509_certificate((FIX / sub / "server.crt").read_bytes())
    assert smp.verify_signed_key(se, leaf) == pub
    tampered = bytearray(se)
    tampered[20] ^= 1
    with pytest.raises(smp.HandshakeError, match="BAD_AUTH"):
        smp.verify_signed_key(bytes(tampered), leaf)
    other = x509.load_pem_x509_certificate((FIX / ("" if sub else "ed25519/") / "server.crt").read_bytes())
    with pytest.raises(smp.HandshakeError):
        smp.verify_signed_key(se, other)


def test_hsalsa20_nacl_core1_vector():
    # NaCl tests/core1.c: HSalsa20(shared X25519 secret, 0^16) = crypto_box_beforenm key
    k = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert smp.hsalsa20(k).hex() == "1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389"


def test_sb_chain_directions_and_block_size():
    sess, dh = os.urandom(32), os.urandom(32)
    ck1, ck2 = smp.sbc_init(sess, dh)
    assert ck1 != ck2 and len(ck1) == len(ck2) == 32
    a, b = smp.SbChain(ck2), smp.SbChain(ck2)
    for i in range(3):  # each block advances the chain: block i only opens with key i
        blk = a.encrypt(smp.pad(b"x" * i, smp.ENCRYPTED_BLOCK_PLAIN))
        assert len(blk) == smp.BLOCK_SIZE
        assert smp.unpad(b.decrypt(blk)) == b"x" * i
    with pytest.raises(smp.DecodeError):
        smp.SbChain(ck1).decrypt(a.encrypt(smp.pad(b"", smp.ENCRYPTED_BLOCK_PLAIN)))


@pytest.mark.parametrize("version,size,cap", [(18, 119, 135), (16, 119, 135), (7, 118, 136), (6, 151, 106)])
def test_signed_sub_sizes_and_batch_capacity(version, size, cap):
    key = smp.AuthKey.generate("ed25519")
    t = smp.encode_transmission(version, os.urandom(32), os.urandom(24), os.urandom(24), b"SUB", key)
    assert len(t) == size
    assert smp.batch_capacity(len(t)) == cap
    assert len(smp.encode_batch([t] * cap)) <= smp.BATCH_CAPACITY + 1
    with pytest.raises(ValueError, match="capacity"):
        smp.encode_batch([t] * (cap + 1))


def test_authorization_covers_session_and_not_auth_field():
    key = smp.AuthKey.generate("ed25519")
    sess, corr, ent = os.urandom(32), os.urandom(24), os.urandom(24)
    t = smp.encode_transmission(18, sess, corr, ent, b"SUB", key)
    sig = t[1:65]
    assert t[65:66] == b"0"  # v16+ service slot, empty
    authorized = smp.ss(sess) + smp.ss(corr) + smp.ss(ent) + b"SUB"
    smp.sodium.crypto_sign_open(sig + authorized, key.public_raw)  # raises if wrong
    # X25519 authenticator: crypto_box(dh(queue key, server key), corrId, sha512(authorized))
    xk = smp.AuthKey.generate("x25519")
    spub, spriv = smp.sodium.crypto_box_keypair()
    t = smp.encode_transmission(18, sess, corr, ent, b"SUB", xk, spub)
    assert t[0] == 80
    opened = smp.sodium.crypto_box_open(t[1:81], corr, xk.public_raw, spriv)
    assert opened == hashlib.sha512(authorized).digest()
    ek = smp.AuthKey.generate("ed448")
    assert smp.encode_transmission(6, sess, corr, ent, b"SUB", ek)[0] == 114


def test_client_hello_v18_is_82_bytes():
    assert len(smp.encode_client_hello(18, os.urandom(32), os.urandom(32))) == 82
    assert len(smp.encode_client_hello(6, os.urandom(32), os.urandom(32))) == 35  # no key before v7


FP = ED448_FP


@pytest.mark.parametrize(
    "s,hosts,port,pw",
    [
        (f"smp://{FP}@127.0.0.1", ("127.0.0.1",), 5223, None),
        (f"smp://{FP}:pa$s=-_@smp.example.com,abcdefxyz234.onion:443", ("smp.example.com", "abcdefxyz234.onion"), 443, "pa$s=-_"),
        (f"smp://{FP.rstrip('=')}@[::1]:5001", ("::1",), 5001, None),
        (f"smp://{FP}@::1", ("::1",), 5223, None),
        (f"smp://{FP}@a.b,[fe80::1]:7", ("a.b", "fe80::1"), 7, None),
    ],
)
def test_parse_address(s, hosts, port, pw):
    a = smp.parse_address(s)
    assert (a.hosts, a.port, a.password) == (hosts, port, pw)
    assert a.key_hash == smp.b64u_decode(FP)
    assert smp.parse_address(str(a)) == a


@pytest.mark.parametrize(
    "s,msg",
    [
        (f"http://{FP}@h", "smp://"),
        (f"smp://{FP}h", "no '@'"),
        ("smp://abc@h", "32"),
        ("smp://a+b@h", "base64url"),
        (f"smp://{FP}:@h", "password"),
        (f"smp://{FP}:a b@h", "password"),
        (f"smp://{FP}@h:99999", "out of range"),
        (f"smp://{FP}@a;b", "bad host"),
        (f"smp://{FP}@ABC.onion", "onion"),
        (f"smp://{FP}@h,", "empty host"),
    ],
)
def test_parse_address_errors(s, msg):
    with pytest.raises(ValueError, match=msg):
        smp.parse_address(s)


def test_choose_host_prefers_onion_only_through_socks():
    a = smp.parse_address(f"smp://{FP}@pub.example,xyz.onion")
    assert a.choose_host(socks=False) == "pub.example"
    assert a.choose_host(socks=True) == "xyz.onion"
    assert smp.parse_address(f"smp://{FP}@xyz.onion").choose_host(socks=False) == "xyz.onion"


@pytest.mark.parametrize("v", [6, 9, 15, 16, 17, 18])
def test_new_and_ids_encodings(v):
    k = smp.AuthKey.generate("ed25519")
    dh = os.urandom(32)
    cmd = smp.encode_new(v, k, dh, b"pw", True)
    head = b"NEW " + smp.ss(k.public_der) + smp.ss(smp.spki("x25519", dh))
    tail = {6: b"A\x02pwS", 9: b"1\x02pwST", 15: b"1\x02pwS1M0", 16: b"1\x02pwS1M0", 17: b"1\x02pwS1M00", 18: b"1\x02pwS1M00"}
    assert cmd == head + tail[v]
    rid, sid, srv = os.urandom(24), os.urandom(24), os.urandom(32)
    ids = smp.ss(rid) + smp.ss(sid) + smp.ss(smp.spki("x25519", srv))
    extra = {6: b"", 9: b"T", 15: b"1M0", 16: b"1M00", 17: b"1M000", 18: b"1M000"}[v]
    p = smp.parse_ids(v, ids + extra)
    assert (p.rcv_id, p.snd_id, p.server_dh_pub) == (rid, sid, srv)
    assert p.queue_mode == (None if v < 9 else "M")
    with pytest.raises(smp.DecodeError):
        smp.parse_ids(v, ids + extra + b"x")
