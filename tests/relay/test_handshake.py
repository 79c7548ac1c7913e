"""Handshake messages (upstream Transport.hs SMPServerHandshake / SMPClientHandshake)."""

import pytest

from smprelay import crypto as c
from smprelay import encoding as e
from smprelay.handshake import (
    ClientHello,
    HandshakeError,
    ServerHello,
    check_client_hello,
    offered_range,
    parse_client_hello,
)

KH = bytes(range(32))
DH = bytes(range(32, 64))


def _client_hello(v, dh=True, proxy=b"F", service=b"0"):
    out = e.w16(v) + e.ss(KH)
    if v >= 7 and dh:
        out += e.ss(c.x25519_spki(DH))
    if v >= 14:
        out += proxy
    if v >= 16:
        out += service
    return out


def test_regular_v18_hello_is_82_bytes():
    assert len(_client_hello(18)) == 82


@pytest.mark.parametrize("v", [6, 7, 10, 11, 14, 15, 16, 18])
def test_parse_client_hello_every_version(v):
    h = parse_client_hello(_client_hello(v) + b"future-tail")
    assert h.version == v and h.key_hash == KH
    assert h.dh_key == (DH if v >= 7 else None)
    assert h.proxy_server is False and h.has_service is False


def test_client_hello_without_key_and_with_proxy_flag():
    h = parse_client_hello(_client_hello(14, dh=False, proxy=b"T"))
    assert h.dh_key is None and h.proxy_server is True


def test_client_hello_service_flag_and_parse_errors():
    assert parse_client_hello(_client_hello(16, service=b"1M")).has_service
    for bad in (b"", b"\x00", e.w16(18) + b"\x20" + b"x", _client_hello(14)[:-1]):
        with pytest.raises(HandshakeError) as ei:
            parse_client_hello(bad)
        assert ei.value.code == "HANDSHAKE PARSE"


def test_checks_identity_before_version():
    with pytest.raises(HandshakeError) as ei:
        check_client_hello(ClientHello(99, b"x" * 32, None), KH, (6, 18))
    assert ei.value.code == "HANDSHAKE IDENTITY"
    with pytest.raises(HandshakeError) as ei:
        check_client_hello(ClientHello(19, KH, None), KH, (6, 18))
    assert ei.value.code == "VERSION"
    with pytest.raises(HandshakeError):
        check_client_hello(ClientHello(7, KH, None), KH, offered_range(None))
    check_client_hello(ClientHello(6, KH, None), KH, offered_range(None))
    check_client_hello(ClientHello(18, KH, None), KH, offered_range("smp/1"))


def test_server_hello_encoding():
    chain = [b"leaf-der", b"ca-der"]
    full = ServerHello(6, 18, b"S" * 32, chain, b"signed").encode()
    p = e.Parser(full)
    assert (p.w16(), p.w16(), p.ss()) == (6, 18, b"S" * 32)
    assert p.ne_large_list() == chain and p.large() == b"signed" and p.at_end()
    legacy = ServerHello(6, 6, b"S" * 12, chain, b"signed").encode()
    assert legacy == e.w16(6) + e.w16(6) + e.ss(b"S" * 12)
