"""TLS server context for SMP (reference §6.2): TLS 1.2/1.3, ChaCha20-Poly1305, Ed25519/Ed448
chain [server.crt, ca.crt], ALPN ``smp/1``, no session tickets, and the tls-unique session id.

Tickets are disabled so every connection does a full handshake: the SMP session id is the
client's Finished message, which resumption would change.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

ALPN = ["smp/1", "h2", "http/1.1"]
TLS12_CIPHERS = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"


def server_context(
    server_crt: str | Path,
    ca_crt: str | Path,
    server_key: str | Path,
    password: bytes | None = None,
) -> ssl.SSLContext:
    """An SSLContext serving the chain [server.crt, ca.crt] with server.key.

    The two PEM files are concatenated into a private temporary file because ``ssl`` only
    loads a chain from one file; the key is read from its own path, never copied.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.num_tickets = 0
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(ALPN)
    chain = Path(server_crt).read_bytes().rstrip(b"\n") + b"\n" + Path(ca_crt).read_bytes()
    fd, tmp = tempfile.mkstemp(prefix="smp-chain-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain)
        ctx.load_cert_chain(tmp, str(server_key), password=password)
    finally:
        os.unlink(tmp)
    return ctx


def tls_unique(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """RFC 5929 tls-unique on the server: the client's Finished (also under TLS 1.3)."""
    cb = ssl_object.get_channel_binding("tls-unique")
    if not cb:
        raise ssl.SSLError("no tls-unique channel binding for this connection")
    return cb


def negotiated_alpn(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    return ssl_object.selected_alpn_protocol()
