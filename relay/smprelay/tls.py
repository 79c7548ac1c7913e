"""TLS server context for SMP (reference §6.2): TLS 1.2/1.3, ChaCha20-Poly1305, Ed25519/Ed448
chain [server.crt, ca.crt], ALPN ``smp/1``, no session tickets, and the tls-unique session id.

Tickets are disabled so every connection does a full handshake: the SMP session id is the
client's Finished message, which resumption would change.
"""

from __future__ import annotations

import _ssl
import ctypes
import logging
import os
import ssl
import tempfile
from pathlib import Path

log = logging.getLogger("smprelay.tls")

ALPN = ["smp/1", "h2", "http/1.1"]
TLS12_CIPHERS = "ECDHE-ECDSA-CHACHA20-POLY1305"  # as upstream: the only TLS 1.2 suite SMP uses
TLS13_CIPHERSUITES = b"TLS_CHACHA20_POLY1305_SHA256"
GROUPS = b"X448:X25519"


_SSL_CTRL_SET_GROUPS_LIST = 92


def _restrict_openssl(ctx: ssl.SSLContext, suites: bytes, groups: bytes) -> bool:
    """Python 3.11 has no API for TLS 1.3 suites or key-exchange groups: call OpenSSL.

    The SSL_CTX pointer is the first field after the object header of CPython's SSLContext;
    it is checked (SSL_CTX_get_options must equal ``ctx.options``) before it is used.
    """
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        get_opts, set_suites, ctrl = lib.SSL_CTX_get_options, lib.SSL_CTX_set_ciphersuites, lib.SSL_CTX_ctrl
    except (OSError, AttributeError):
        return False
    get_opts.argtypes, get_opts.restype = [ctypes.c_void_p], ctypes.c_uint64
    set_suites.argtypes, set_suites.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
    ctrl.argtypes, ctrl.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p], ctypes.c_long
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ptr or get_opts(ptr) != ctx.options:
        return False
    return set_suites(ptr, suites) == 1 and ctrl(ptr, _SSL_CTRL_SET_GROUPS_LIST, 0, groups) == 1


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
    if not _restrict_openssl(ctx, TLS13_CIPHERSUITES, GROUPS):
        log.warning("could not restrict TLS 1.3 suites and groups; OpenSSL's defaults stay offered")
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
