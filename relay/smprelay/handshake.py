"""SMP transport handshake messages (upstream ``Transport.hs``), pure encode/parse.

The server speaks first: its hello carries the version range it offers, the TLS session id
and, from v7, the certificate chain plus a per-connection X25519 key signed with the online
key. The client answers with the version it chose and the CA fingerprint it expects.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import encoding as e
from .crypto import CryptoError, decode_public_key

MIN_VERSION = 6
MAX_VERSION = 18
LEGACY_RANGE = (6, 6)  # offered when no ALPN was negotiated
AUTH_CMDS_VERSION = 7  # X25519 authenticators, implied session id, signed server key
ENCRYPTED_BLOCK_VERSION = 11
PROXY_SERVER_HANDSHAKE_VERSION = 14
SERVICE_CERTS_VERSION = 16


class HandshakeError(Exception):
    """Handshake failed; ``code`` is the upstream TransportError text."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


@dataclass(frozen=True)
class ServerHello:
    min_version: int
    max_version: int
    session_id: bytes
    cert_chain: list[bytes]  # DER, [server.crt, ca.crt]
    signed_key: bytes  # DER SignedExact of the X25519 SPKI

    def encode(self) -> bytes:
        out = e.w16(self.min_version) + e.w16(self.max_version) + e.ss(self.session_id)
        if self.max_version >= AUTH_CMDS_VERSION:
            out += e.ne_list([e.large(c) for c in self.cert_chain]) + e.large(self.signed_key)
        return out


@dataclass(frozen=True)
class ClientHello:
    version: int
    key_hash: bytes
    dh_key: bytes | None  # raw X25519 public key, v >= 7 when sent
    proxy_server: bool = False
    has_service: bool = False


def parse_client_hello(body: bytes) -> ClientHello:
    """Parse an unpadded client hello; a trailing tail is ignored (future extensions)."""
    p = e.Parser(body)
    try:
        v = p.w16()
        kh = p.ss()
        dh_key = None
        if v >= AUTH_CMDS_VERSION:
            # upstream: ``optional smpP`` - backtracks when it is not an X25519 key
            save = p.pos
            try:
                k = decode_public_key(p.ss())
                if k.alg != "x25519":
                    raise CryptoError("not X25519")
                dh_key = k.raw
            except (e.ParseError, CryptoError):
                p.pos = save
        proxy = p.boolean() if v >= PROXY_SERVER_HANDSHAKE_VERSION else False
        service = p.maybe_tag() if v >= SERVICE_CERTS_VERSION else False
    except e.ParseError as err:
        raise HandshakeError("HANDSHAKE PARSE", str(err)) from err
    return ClientHello(v, kh, dh_key, proxy, service)


def check_client_hello(hello: ClientHello, key_hash: bytes, vrange: tuple[int, int]) -> None:
    """Upstream order: identity first, then version."""
    if hello.key_hash != key_hash:
        raise HandshakeError("HANDSHAKE IDENTITY", "client expects another server fingerprint")
    if not vrange[0] <= hello.version <= vrange[1]:
        raise HandshakeError("VERSION", f"client chose v{hello.version}, offered {vrange[0]}-{vrange[1]}")


def service_error_response(code: str) -> bytes:
    """Third handshake block when a service handshake fails: ``'E' TransportError``."""
    return b"E" + code.encode()


def offered_range(alpn: str | None) -> tuple[int, int]:
    return (MIN_VERSION, MAX_VERSION) if alpn else LEGACY_RANGE
