"""Handshake scenarios against the real ``smp-server start`` (upstream tests/ServerTests.hs,
tests/CoreTests): every version a client may choose, the legacy no-ALPN range, TLS 1.2,
wrong key hashes on both sides, unsupported versions, and the upstream fixture certificates.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from smprelay import client as smp

FIXTURES = Path("/work/shared/reference/upstream-fixtures")
FIXTURE_FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def queue_roundtrip(c: smp.SMPClient) -> None:
    """NEW, secure (SKEY from v9, else KEY), SEND, MSG, ACK, DEL at the connection's version."""
    q = await c.create_queue()
    sk = smp.AuthKey.generate("ed25519")
    if c.version >= 9:
        assert q.queue_mode == "M"
        await c.secure_by_sender(q.snd_id, sk)
    else:
        assert q.queue_mode is None
        await c.secure(q, sk)
    body = os.urandom(100)
    await c.send(q.snd_id, body, sk)
    m = await c.receive(q, timeout=5)
    assert m.body == body and not m.notification
    assert await c.ack(q, m.msg_id) is None
    await c.delete(q)


@pytest.mark.parametrize("version", [6, 7, 10, 11, 14, 15, 16, 18])
def test_handshake_at_version(relay, version):
    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            assert c.alpn == "smp/1"
            assert c.server_versions == (6, 18)
            assert c.version == version
            assert len(c.session_id) == 32  # TLS 1.3 tls-unique (client Finished)
            assert (c._snd is not None) == (version >= 11)  # block encryption from v11
            await c.ping()
            await queue_roundtrip(c)

    run(scenario())


def test_default_version_is_highest_common(relay):
    async def scenario():
        async with await smp.connect(relay.address) as c:
            assert c.version == 18
            assert c.tls[0] == "TLSv1.3"
            assert len(c.server_hello.chain) == 2
            assert hashlib.sha256(c.server_chain[1]).digest() == smp.parse_address(relay.address).key_hash
            leaf = x509.load_der_x509_certificate(c.server_chain[0]).public_key()
            want = 122 if isinstance(leaf, ed25519.Ed25519PublicKey) else 173  # SignedExact sizes (§6.5)
            assert len(c.server_hello.signed_key) == want

    run(scenario())


def test_no_alpn_offers_only_version_6(relay):
    async def scenario():
        async with await smp.connect(relay.address, alpn=False) as c:
            assert c.alpn is None
            assert c.server_versions == (6, 6)
            assert c.version == 6
            assert c.server_hello.chain == []  # a v6 hello has no chain and no signed key
            await queue_roundtrip(c)
        # the legacy range does not admit v7
        c = await smp.connect(relay.address, alpn=False, version=7)
        with pytest.raises(smp.ConnectionClosed):
            await c.ping()
        await c.close()

    run(scenario())


def test_tls12_chacha20(relay):
    async def scenario():
        async with await smp.connect(relay.address, tls12_only=True) as c:
            assert c.tls == ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")
            assert len(c.session_id) == 12  # TLS 1.2 tls-unique
            await queue_roundtrip(c)

    run(scenario())


def test_wrong_fingerprint_in_address_is_refused_by_client(relay):
    a = smp.parse_address(relay.address)
    wrong = smp.SMPAddress(bytes(32), a.hosts, a.port, a.password)

    async def scenario():
        with pytest.raises(smp.WrongFingerprint, match="fingerprint"):
            await smp.connect(wrong)

    run(scenario())


def test_wrong_key_hash_closes_connection(relay):
    """Server side of the check: a client hello with another key hash ⇒ HANDSHAKE IDENTITY, closed."""

    async def scenario():
        for v in (6, 18):
            c = await smp.connect(relay.address, version=v, key_hash=os.urandom(32))
            with pytest.raises(smp.ConnectionClosed):
                await c.ping()
            await c.close()
        async with await smp.connect(relay.address) as c:  # and it still serves
            await c.ping()

    run(scenario())


@pytest.mark.parametrize("version", [5, 19, 0xFFFF])
def test_unsupported_version_closes_connection(relay, version):
    async def scenario():
        c = await smp.connect(relay.address, version=version)
        with pytest.raises(smp.ConnectionClosed):
            await c.ping()
        await c.close()

    run(scenario())


def test_hello_without_dh_key_has_no_block_encryption(relay):
    """A v18 client hello without an X25519 key: no block encryption, signatures still work."""

    async def scenario():
        async with await smp.connect(relay.address, send_dh_key=False) as c:
            assert c._snd is None
            await queue_roundtrip(c)

    run(scenario())


def test_upstream_fixture_certificates(relay_factory):
    """A relay with simplexmq tests/fixtures certificates has upstream's testKeyHash address."""
    r = relay_factory(fixture_certs=FIXTURES)
    r.start()
    assert r.fingerprint == FIXTURE_FP
    assert f"smp://{FIXTURE_FP}:" in r.address

    async def scenario():
        async with await smp.connect(r.address) as c:
            want = [
                x509.load_pem_x509_certificate((FIXTURES / n).read_bytes()).public_bytes(Encoding.DER)
                for n in ("server.crt", "ca.crt")
            ]
            assert c.server_chain == want
            assert len(c.server_hello.signed_key) == 173  # Ed448 SignedExact
            await queue_roundtrip(c)

    run(scenario())


def _ctx_offering(tls13_suites: bytes | None, tls12_ciphers: str | None) -> "ssl.SSLContext":
    import ctypes
    import ssl
    import _ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["smp/1"])
    if tls12_ciphers:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(tls12_ciphers)
    if tls13_suites:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        f = ctypes.CDLL(_ssl.__file__).SSL_CTX_set_ciphersuites
        f.argtypes, f.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
        assert f(ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value, tls13_suites) == 1
        assert ctx.get_ciphers()[0]["name"] == tls13_suites.decode()
    return ctx


@pytest.mark.parametrize(
    "tls13,tls12",
    [(b"TLS_AES_256_GCM_SHA384", None), (b"TLS_AES_128_GCM_SHA256", None), (None, "ECDHE-ECDSA-AES256-GCM-SHA384")],
)
def test_tls_refuses_ciphers_other_than_chacha20(relay, tls13, tls12):
    """Upstream ``defaultSupportedParams`` (Transport.hs) lists only TLS13 CHACHA20POLY1305 and
    ECDHE-ECDSA-CHACHA20POLY1305: a client offering nothing else fails the TLS handshake."""
    import ssl

    async def scenario():
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _, w = await asyncio.open_connection("127.0.0.1", relay.port, ssl=_ctx_offering(tls13, tls12),
                                                 server_hostname="")
            w.close()
        async with await smp.connect(relay.address) as c:  # ChaCha20 offer still works
            assert c.tls[1] == "TLS_CHACHA20_POLY1305_SHA256"

    run(scenario())


def test_many_concurrent_connections(relay):
    """100 clients handshake at once (mixed versions) and are all served."""

    async def one(i: int) -> int:
        async with await smp.connect(relay.address, version=(6, 10, 18)[i % 3]) as c:
            await c.ping()
            return c.version

    async def scenario():
        versions = await asyncio.gather(*(one(i) for i in range(100)))
        assert sorted(set(versions)) == [6, 10, 18] and len(versions) == 100

    run(scenario())
