"""An asyncio SMP client, written from the protocol reference and upstream's client side.

It exists to prove the relay right from the outside (scenario tests, fuzzing, benchmarks) and
to let ``verify`` talk to deployed relays, so it deliberately shares no code with the server's
protocol modules: a misreading on one side cannot cancel the same misreading on the other.

Layers, bottom up: address parsing; byte encodings; crypto (block chain, crypto_box,
authorizations); handshake (server hello, certificate chain, signed key, client hello);
transmissions and batches; then :class:`SMPClient`, the only part doing I/O.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import datetime as _dt
import hashlib
import ipaddress
import os
import re
import ssl
import _ssl
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

import nacl._sodium
import nacl.bindings as sodium
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.hashes import SHA512
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding as _Enc

BLOCK_SIZE = 16384
ALPN_SMP = "smp/1"
CLIENT_VERSIONS = (6, 18)
DEFAULT_PORT = 5223
#: transmissions of one block: 16384 - 2 (pad length) - 1 (count) - 16 (block-encryption tag)
BATCH_CAPACITY = BLOCK_SIZE - 19
ENCRYPTED_BLOCK_PLAIN = BLOCK_SIZE - 16
MSG_PADDED = 16106  # MaxRcvMessageLen + 2
PROXIED_PADDED = 16226  # paddedProxiedTLength

# version thresholds (upstream Transport.hs)
V_AUTH_CMDS = 7
V_SND_SECURE = 9
V_DELD = 10
V_BLOCK_ENC = 11
V_PROXY_FLAG = 14
V_SHORT_LINKS = 15
V_SERVICE = 16
V_NTF_CREDS = 17


# ---------------------------------------------------------------------------------- errors
class SMPClientError(Exception):
    """Base class of everything this client raises."""


class Unreachable(SMPClientError):
    """TCP, SOCKS or TLS connection could not be established."""


class WrongFingerprint(SMPClientError):
    """The server's identity certificate does not hash to the address' key hash."""


class HandshakeError(SMPClientError):
    """The SMP handshake failed (bad hello, session id, signed key, version, or closed)."""


class ConnectionClosed(SMPClientError):
    """The server closed the connection."""


class SMPTimeout(SMPClientError, TimeoutError):
    """No response in time."""


class ServerError(SMPClientError):
    """The server answered ``ERR <error>``; ``error`` is the text after ``ERR ``."""

    def __init__(self, error: str, command: str = "") -> None:
        super().__init__(f"server answered ERR {error}" + (f" to {command}" if command else ""))
        self.error = error
        self.command = command


class PasswordRefused(ServerError):
    """``ERR AUTH`` to NEW: the create password is wrong/missing or new queues are disabled."""


class UnexpectedResponse(SMPClientError):
    """The server answered with a response the command does not allow."""


# -------------------------------------------------------------------------------- address
_B64U_RE = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_ONION_RE = re.compile(r"^[a-z0-9]*\.onion$")
_DOMAIN_BAD = re.compile(r"[:#,;/\s]")


def b64u_decode(s: str) -> bytes:
    """Base64url with or without ``=`` padding (upstream accepts both)."""
    if not _B64U_RE.match(s):
        raise ValueError(f"not base64url: {s!r}")
    s = s.rstrip("=")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64u_encode(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode()


def fingerprint(ca_der: bytes) -> str:
    """Key hash of an address: padded base64url SHA-256 of the whole DER identity certificate."""
    return b64u_encode(hashlib.sha256(ca_der).digest())


@dataclass(frozen=True)
class SMPAddress:
    key_hash: bytes
    hosts: tuple[str, ...]
    port: int = DEFAULT_PORT
    password: str | None = None

    def __str__(self) -> str:
        auth = f":{self.password}" if self.password is not None else ""
        hosts = ",".join(f"[{h}]" if ":" in h else h for h in self.hosts)
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        return f"smp://{b64u_encode(self.key_hash)}{auth}@{hosts}{port}"

    def choose_host(self, socks: bool) -> str:
        """Upstream ``onionViaSocks``: first onion host through SOCKS, else first public host."""
        onions = [h for h in self.hosts if h.endswith(".onion")]
        public = [h for h in self.hosts if not h.endswith(".onion")]
        preferred = onions if socks else public
        return (preferred or list(self.hosts))[0]


def _check_host(h: str, where: str) -> str:
    if not h:
        raise ValueError(f"empty host in {where}")
    try:
        ipaddress.ip_address(h)
        return h
    except ValueError:
        pass
    if h.endswith(".onion"):
        if not _ONION_RE.match(h):
            raise ValueError(f"bad onion host {h!r} in {where}: only a-z and 0-9 before .onion")
        return h
    if _DOMAIN_BAD.search(h):
        raise ValueError(f"bad host {h!r} in {where}: no ':#,;/' or spaces allowed")
    return h


def parse_address(s: str) -> SMPAddress:
    """Parses ``smp://fp[:password]@host1,host2[:port]`` (upstream ``serverStrP``).

    Raises ValueError saying which part is wrong.
    """
    where = repr(s)
    if not s.startswith("smp://"):
        raise ValueError(f"SMP address {where} must start with smp://")
    rest = s[len("smp://") :]
    if "@" not in rest:
        raise ValueError(f"SMP address {where} has no '@' between fingerprint and hosts")
    cred, _, hostpart = rest.partition("@")
    fp, sep, password = cred.partition(":")
    try:
        key_hash = b64u_decode(fp)
    except ValueError:
        raise ValueError(f"fingerprint {fp!r} in {where} is not base64url") from None
    if len(key_hash) != 32:
        raise ValueError(f"fingerprint in {where} decodes to {len(key_hash)} bytes, expected 32 (SHA-256)")
    pw: str | None = None
    if sep:
        if not password or any(c in "@:/" or not (33 <= ord(c) <= 126) for c in password):
            raise ValueError(
                f"password in {where} must be 1+ printable ASCII characters without spaces, '@', ':' or '/'"
            )
        pw = password
    # path/fragment (queue URIs) are not part of a server address
    hostpart = hostpart.split("/", 1)[0].split("#", 1)[0]
    port = DEFAULT_PORT
    items = hostpart.split(",")
    last = items[-1]
    m = re.match(r"^(\[[^\]]*\]|[^:\[\]]*)(?::(\d+))?$", last)
    if m:
        items[-1] = m.group(1)
        if m.group(2) is not None:
            port = int(m.group(2))
            if not 0 < port < 65536:
                raise ValueError(f"port {port} in {where} is out of range 1..65535")
    elif not _is_ipv6(last):
        raise ValueError(f"cannot read host and port from {last!r} in {where}")
    hosts = tuple(_check_host(h[1:-1] if h.startswith("[") else h, where) for h in items)
    return SMPAddress(key_hash=key_hash, hosts=hosts, port=port, password=pw)


def _is_ipv6(h: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(h), ipaddress.IPv6Address)
    except ValueError:
        return False


# ------------------------------------------------------------------------------ encodings
_W16 = struct.Struct(">H")
_I64 = struct.Struct(">q")


def ss(b: bytes) -> bytes:
    if len(b) > 255:
        raise ValueError(f"short string of {len(b)} bytes exceeds 255")
    return bytes((len(b),)) + b


def large(b: bytes) -> bytes:
    return _W16.pack(len(b)) + b


def w16(n: int) -> bytes:
    return _W16.pack(n)


def i64(n: int) -> bytes:
    return _I64.pack(n)


def pad(msg: bytes, size: int) -> bytes:
    if len(msg) + 2 > size:
        raise ValueError(f"{len(msg)} bytes do not fit a padded block of {size}")
    return _W16.pack(len(msg)) + msg + b"#" * (size - len(msg) - 2)


def unpad(b: bytes) -> bytes:
    (n,) = _W16.unpack_from(b)
    if n > len(b) - 2:
        raise DecodeError(f"padded length {n} exceeds {len(b) - 2} bytes")
    return b[2 : 2 + n]


class DecodeError(SMPClientError, ValueError):
    """Bytes from the server do not parse."""


class Reader:
    """A cursor over received bytes; each method consumes one value or raises DecodeError."""

    __slots__ = ("b", "i")

    def __init__(self, b: bytes) -> None:
        self.b, self.i = b, 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise DecodeError(f"need {n} bytes at {self.i}, have {len(self.b) - self.i}")
        out = self.b[self.i : self.i + n]
        self.i += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def ss(self) -> bytes:
        return self.take(self.byte())

    def large(self) -> bytes:
        return self.take(_W16.unpack(self.take(2))[0])

    def w16(self) -> int:
        return _W16.unpack(self.take(2))[0]

    def i64(self) -> int:
        return _I64.unpack(self.take(8))[0]

    def maybe(self) -> bool:
        c = self.take(1)
        if c not in (b"0", b"1"):
            raise DecodeError(f"bad Maybe tag {c!r}")
        return c == b"1"

    def rest(self) -> bytes:
        out = self.b[self.i :]
        self.i = len(self.b)
        return out

    def at_end(self) -> bool:
        return self.i >= len(self.b)


# ---------------------------------------------------------------------------------- keys
SPKI_PREFIX = {
    "ed25519": bytes.fromhex("302a300506032b6570032100"),
    "x25519": bytes.fromhex("302a300506032b656e032100"),
    "ed448": bytes.fromhex("3043300506032b6571033a00"),
    "x448": bytes.fromhex("3042300506032b656f033900"),
}
_RAW_LEN = {"ed25519": 32, "x25519": 32, "ed448": 57, "x448": 56}


def spki(alg: str, raw: bytes) -> bytes:
    return SPKI_PREFIX[alg] + raw


def spki_decode(der: bytes) -> tuple[str, bytes]:
    for alg, prefix in SPKI_PREFIX.items():
        if der.startswith(prefix) and len(der) == len(prefix) + _RAW_LEN[alg]:
            return alg, der[len(prefix) :]
    raise DecodeError(f"unsupported public key encoding ({len(der)} bytes)")


def hsalsa20(key: bytes, inp: bytes = bytes(16)) -> bytes:
    """``crypto_core_hsalsa20`` from PyNaCl's own libsodium (PyNaCl does not wrap it)."""
    out = ctypes.create_string_buffer(32)
    if _sodium.crypto_core_hsalsa20(out, inp, key, None) != 0:
        raise RuntimeError("crypto_core_hsalsa20 failed")
    return out.raw


_sodium = ctypes.CDLL(nacl._sodium.__file__)


@dataclass
class AuthKey:
    """A queue authorization key: Ed25519/Ed448 signs, X25519 makes authenticators (v >= 7)."""

    alg: str
    private: Any
    public_raw: bytes

    @classmethod
    def generate(cls, alg: str = "ed25519") -> "AuthKey":
        if alg == "ed25519":
            pk, sk = sodium.crypto_sign_keypair()
            return cls(alg, sk, pk)
        if alg == "ed448":
            k = ed448.Ed448PrivateKey.generate()
            return cls(alg, k, k.public_key().public_bytes_raw())
        if alg == "x25519":
            pk, sk = sodium.crypto_box_keypair()
            return cls(alg, sk, pk)
        raise ValueError(f"unknown authorization key algorithm {alg!r}: use ed25519, ed448 or x25519")

    @property
    def public_der(self) -> bytes:
        return spki(self.alg, self.public_raw)

    def authorize(self, authorized: bytes, corr_id: bytes, server_key: bytes | None) -> bytes:
        """The transmission's authorization field for the bytes ``authorized``."""
        if self.alg == "ed25519":
            return sodium.crypto_sign(authorized, self.private)[:64]
        if self.alg == "ed448":
            return self.private.sign(authorized)
        if server_key is None:
            raise SMPClientError("X25519 authenticators need v >= 7 (server session key)")
        nonce = corr_id[:24].ljust(24, b"\0")
        return sodium.crypto_box(hashlib.sha512(authorized).digest(), nonce, server_key, self.private)


# -------------------------------------------------------------------------- block crypto
def hkdf_sha512(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(SHA512(), length, salt, info).derive(ikm)


class SbChain:
    """One direction of transport block encryption (upstream ``sbcHkdf``)."""

    __slots__ = ("ck",)

    def __init__(self, ck: bytes) -> None:
        self.ck = ck

    def next(self) -> tuple[bytes, bytes]:
        out = hkdf_sha512(b"", self.ck, b"SimpleXSbChain", 88)
        self.ck = out[:32]
        return out[32:64], out[64:88]

    def encrypt(self, plain_padded: bytes) -> bytes:
        key, nonce = self.next()
        return sodium.crypto_secretbox(plain_padded, nonce, hsalsa20(key))

    def decrypt(self, block: bytes) -> bytes:
        key, nonce = self.next()
        try:
            return sodium.crypto_secretbox_open(block, nonce, hsalsa20(key))
        except Exception as e:  # nacl CryptoError
            raise DecodeError(f"block decryption failed: {e}") from None


def sbc_init(session_id: bytes, dh: bytes) -> tuple[bytes, bytes]:
    """(server→client chain key, client→server chain key)."""
    out = hkdf_sha512(session_id, dh, b"SimpleXSbChainInit", 64)
    return out[:32], out[32:]


# ------------------------------------------------------------------------------ handshake
@dataclass
class ServerHello:
    vmin: int
    vmax: int
    session_id: bytes
    chain: list[bytes] = field(default_factory=list)
    signed_key: bytes | None = None


def parse_server_hello(block: bytes) -> ServerHello:
    r = Reader(unpad(block))
    hello = ServerHello(r.w16(), r.w16(), r.ss())
    if hello.vmax >= V_AUTH_CMDS and not r.at_end():
        n = r.byte()
        if n == 0:
            raise DecodeError("empty certificate chain in server hello")
        hello.chain = [r.large() for _ in range(n)]
        hello.signed_key = r.large()
    return hello


def encode_client_hello(
    version: int, key_hash: bytes, dh_pub: bytes | None, proxy_server: bool = False
) -> bytes:
    out = w16(version) + ss(key_hash)
    if version >= V_AUTH_CMDS and dh_pub is not None:
        out += ss(spki("x25519", dh_pub))
    if version >= V_PROXY_FLAG:
        out += b"T" if proxy_server else b"F"
    if version >= V_SERVICE:
        out += b"0"
    return out


def _der_tlv(b: bytes, i: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``i``."""
    if i + 2 > len(b):
        raise DecodeError("truncated DER")
    tag, ln = b[i], b[i + 1]
    i += 2
    if ln & 0x80:
        n = ln & 0x7F
        if n == 0 or n > 3 or i + n > len(b):
            raise DecodeError("bad DER length")
        ln = int.from_bytes(b[i : i + n], "big")
        i += n
    if i + ln > len(b):
        raise DecodeError("DER element overruns its container")
    return tag, i, i + ln


def parse_signed_exact(der: bytes) -> tuple[bytes, bytes, bytes]:
    """X.509 SignedExact → (signed bytes, inner object DER, signature)."""
    tag, s, e = _der_tlv(der, 0)
    if tag != 0x30 or e != len(der):
        raise DecodeError("signed object is not one DER SEQUENCE")
    t1, s1, e1 = _der_tlv(der, s)
    signed = der[s:e1]
    t2, _, e2 = _der_tlv(der, e1)
    t3, s3, e3 = _der_tlv(der, e2)
    if (t1, t2, t3) != (0x30, 0x30, 0x03) or e3 != e or der[s3] != 0:
        raise DecodeError("signed object does not have the X.509 SignedExact layout")
    return signed, der[s1:e1], der[s3 + 1 : e3]


def verify_signed_key(signed_exact: bytes, leaf: x509.Certificate) -> bytes:
    """Checks the server's per-connection X25519 key was signed by the TLS leaf key; returns it."""
    signed, inner, sig = parse_signed_exact(signed_exact)
    pub = leaf.public_key()
    if not isinstance(pub, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise HandshakeError("server certificate key is neither Ed25519 nor Ed448")
    try:
        pub.verify(sig, signed)
    except Exception:
        raise HandshakeError("server's session key signature does not verify (HANDSHAKE BAD_AUTH)") from None
    alg, raw = spki_decode(inner)
    if alg != "x25519":
        raise HandshakeError(f"server session key is {alg}, expected x25519")
    return raw


def check_chain(chain: list[bytes], key_hash: bytes, now: _dt.datetime | None = None) -> x509.Certificate:
    """Upstream ``validateCertificateChain``: returns the leaf or raises.

    2 certs: leaf, id=CA; 3: leaf, id, CA; 4: leaf, id, (operator), CA; the id certificate must hash
    to ``key_hash``; the chain must validate up to the CA (no hostname check).
    """
    if not 2 <= len(chain) <= 4:
        raise HandshakeError(f"server sent {len(chain)} certificates; 2 to 4 are allowed")
    id_der = chain[1]
    if hashlib.sha256(id_der).digest() != key_hash:
        raise WrongFingerprint(
            f"server identity certificate has fingerprint {fingerprint(id_der)}, "
            f"the address expects {b64u_encode(key_hash)}"
        )
    try:
        certs = [x509.load_der_x509_certificate(c) for c in chain]
    except ValueError as e:
        raise HandshakeError(f"server certificate does not parse: {e}") from None
    path = certs
    now = now or _dt.datetime.now(_dt.timezone.utc)
    for child, parent in zip(path, path[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as e:
            raise HandshakeError(f"certificate chain does not validate: {e}") from None
        try:
            bc = parent.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise HandshakeError("an issuing certificate in the chain is not a CA")
    for c in certs:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise HandshakeError(f"certificate {c.subject.rfc4514_string()} is not valid now")
    if certs[0].version != x509.Version.v3:
        raise HandshakeError("server leaf certificate is not X.509 v3")
    return certs[0]


# -------------------------------------------------------------------------- transmissions
@dataclass
class Response:
    """One transmission from the server, split into its parts."""

    corr_id: bytes
    entity_id: bytes
    command: bytes  # tag and parameters
    block: int = -1  # sequence number of the block it arrived in (tests of response packing)

    @property
    def tag(self) -> str:
        return self.command.split(b" ", 1)[0].decode("ascii", "replace")

    @property
    def args(self) -> bytes:
        parts = self.command.split(b" ", 1)
        return parts[1] if len(parts) > 1 else b""

    @property
    def error(self) -> str | None:
        return self.args.decode("ascii", "replace") if self.tag == "ERR" else None


def encode_transmission(
    version: int,
    session_id: bytes,
    corr_id: bytes,
    entity_id: bytes,
    command: bytes,
    key: AuthKey | None = None,
    server_key: bytes | None = None,
    auth: bytes | None = None,
) -> bytes:
    """One transmission at ``version`` (without its L() prefix), authorized with ``key``
    (or carrying the verbatim authorization ``auth``, for negative tests)."""
    body = ss(corr_id) + ss(entity_id) + command
    authorized = ss(session_id) + body
    if auth is None:
        auth = b"" if key is None else key.authorize(authorized, corr_id, server_key)
    head = ss(auth)
    if version >= V_SERVICE and auth:
        head += b"0"
    return head + (body if version >= V_AUTH_CMDS else authorized)


def encode_batch(transmissions: list[bytes]) -> bytes:
    """count ‖ L(t)… ; raises ValueError if it does not fit one block."""
    if not 1 <= len(transmissions) <= 255:
        raise ValueError(f"a block holds 1..255 transmissions, not {len(transmissions)}")
    body = b"".join(large(t) for t in transmissions)
    if len(body) > BATCH_CAPACITY:
        raise ValueError(f"{len(body)} bytes of transmissions exceed the block capacity {BATCH_CAPACITY}")
    return bytes((len(transmissions),)) + body


def batch_capacity(transmission_len: int) -> int:
    """How many transmissions of this length fit one block."""
    return min(255, BATCH_CAPACITY // (transmission_len + 2))


def parse_responses(plain: bytes, version: int, session_id: bytes) -> list[Response]:
    """Parses an unpadded response block (count ‖ L(transmission)…)."""
    r = Reader(plain)
    n = r.byte()
    if n == 0:
        raise DecodeError("response block with 0 transmissions")
    out = []
    for _ in range(n):
        t = Reader(r.large())
        auth = t.ss()
        if version >= V_SERVICE and auth:
            if t.maybe():
                t.ss()
        if version < V_AUTH_CMDS and t.ss() != session_id:
            raise DecodeError("response carries a different session id")
        corr, ent = t.ss(), t.ss()
        out.append(Response(corr, ent, t.rest()))
    return out


# ----------------------------------------------------------------------------- messages
@dataclass
class ReceivedMessage:
    msg_id: bytes
    timestamp: int
    body: bytes
    notification: bool = False
    quota: bool = False  # the "queue was full" marker


def decrypt_msg(shared: bytes, msg_id: bytes, enc: bytes) -> ReceivedMessage:
    """MSG body: crypto_box(rcvDhSecret, nonce = msgId, pad(plain, 16106))."""
    try:
        padded = sodium.crypto_box_open_afternm(enc, msg_id[:24].ljust(24, b"\0"), shared)
    except Exception:
        raise DecodeError("MSG body does not decrypt with the queue's DH secret") from None
    if len(padded) != MSG_PADDED:
        raise DecodeError(f"MSG body padded to {len(padded)} bytes, expected {MSG_PADDED}")
    plain = unpad(padded)
    if plain.startswith(b"QUOTA "):
        return ReceivedMessage(msg_id, _I64.unpack(plain[6:14])[0], b"", quota=True)
    r = Reader(plain)
    ts = r.i64()
    flag = r.take(1)
    if flag not in (b"T", b"F") or r.take(1) != b" ":
        raise DecodeError("MSG body has bad flags")
    return ReceivedMessage(msg_id, ts, r.rest(), notification=flag == b"T")


@dataclass
class Queue:
    """What a recipient knows about a queue it created."""

    rcv_id: bytes
    snd_id: bytes
    rcv_key: AuthKey
    dh_secret: bytes  # crypto_box precomputed key (beforenm) of rcvDhSecret
    server_dh_pub: bytes
    queue_mode: str | None = None  # 'M' messaging, 'C' contact, None before v9
    link_id: bytes | None = None
    notifier_id: bytes | None = None
    notifier_key: AuthKey | None = None
    ntf_dh_secret: bytes | None = None
    raw: bytes = b""

    def decrypt(self, msg_id: bytes, enc: bytes) -> ReceivedMessage:
        return decrypt_msg(self.dh_secret, msg_id, enc)


def _key_of(r: Reader) -> bytes:
    return spki_decode(r.ss())[1]


def encode_new(
    version: int,
    rcv_key: AuthKey,
    dh_pub: bytes,
    password: bytes | None,
    subscribe: bool,
    mode: str = "M",
    link: tuple[bytes | None, bytes, bytes, bytes] | None = None,
    ntf: tuple[AuthKey, bytes] | None = None,
) -> bytes:
    """NEW in the given version's encoding. ``link`` = (linkId for contact, senderId, fixed, user)."""
    out = b"NEW " + ss(rcv_key.public_der) + ss(spki("x25519", dh_pub))
    sub = b"S" if subscribe else b"C"
    if version >= V_SHORT_LINKS:
        out += (b"1" + ss(password) if password is not None else b"0") + sub
        if link is None:
            out += b"1" + mode.encode() + b"0"
        elif mode == "M":
            _, sid, fixed, user = link
            out += b"1M1" + ss(sid) + large(fixed) + large(user)
        else:
            lid, sid, fixed, user = link
            out += b"1C1" + ss(lid or b"") + ss(sid) + large(fixed) + large(user)
        if version >= V_NTF_CREDS:
            out += b"0" if ntf is None else b"1" + ss(ntf[0].public_der) + ss(spki("x25519", ntf[1]))
    elif version >= V_SND_SECURE:
        out += (b"1" + ss(password) if password is not None else b"0") + sub + (b"T" if mode == "M" else b"F")
    else:
        out += (b"A" + ss(password) if password is not None else b"") + sub
    return out


@dataclass
class IDS:
    rcv_id: bytes
    snd_id: bytes
    server_dh_pub: bytes
    queue_mode: str | None = None
    link_id: bytes | None = None
    service_id: bytes | None = None
    notifier_id: bytes | None = None
    server_ntf_dh_pub: bytes | None = None


def parse_ids(version: int, args: bytes) -> IDS:
    r = Reader(args)
    ids = IDS(r.ss(), r.ss(), _key_of(r))
    if version >= V_SHORT_LINKS:
        if r.maybe():
            ids.queue_mode = r.take(1).decode()
        if r.maybe():
            ids.link_id = r.ss()
        if version >= V_SERVICE and r.maybe():
            ids.service_id = r.ss()
        if version >= V_NTF_CREDS and r.maybe():
            ids.notifier_id = r.ss()
            ids.server_ntf_dh_pub = _key_of(r)
    elif version >= V_SND_SECURE:
        ids.queue_mode = "M" if r.take(1) == b"T" else "C"
    if not r.at_end():
        raise DecodeError(f"{len(r.rest())} unexpected bytes after IDS")
    return ids


def link_sender_id(corr_id: bytes) -> bytes:
    """Sender id a client must choose when NEW carries link data: SHA3-384(corrId)[:24]."""
    return hashlib.sha3_384(corr_id).digest()[:24]


# -------------------------------------------------------------------------------- client
def _tls_context(alpn: bool, tls12_only: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls12_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the chain is checked against the address' key hash instead
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")  # TLS 1.2; 1.3 suites stay OpenSSL defaults
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION
    if alpn:
        ctx.set_alpn_protocols([ALPN_SMP])
    _restrict_like_upstream(ctx)
    return ctx


def _restrict_like_upstream(ctx: ssl.SSLContext) -> None:
    """Offer what SimpleX clients offer (§6.2): TLS 1.3 ChaCha20-Poly1305 only, groups X448 and
    X25519, signature schemes Ed448 and Ed25519. Python 3.11 has no API for these, so the OpenSSL
    calls are made on the context's ``SSL_CTX*`` (first field after the object header) through the
    libssl that ``_ssl`` is linked with; the cipher list is read back to check it took effect."""
    try:
        lib = ctypes.CDLL(_ssl.__file__)
        ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        suites = lib.SSL_CTX_set_ciphersuites
        suites.argtypes, suites.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_int
        ctrl = lib.SSL_CTX_ctrl
        ctrl.argtypes, ctrl.restype = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p], ctypes.c_long
        if ctx.get_ciphers()[0]["name"].startswith("TLS_") and suites(ptr, b"TLS_CHACHA20_POLY1305_SHA256") == 1:
            ctrl(ptr, 92, 0, b"X448:X25519")  # SSL_CTRL_SET_GROUPS_LIST
            ctrl(ptr, 98, 0, b"ed448:ed25519")  # SSL_CTRL_SET_SIGALGS_LIST
    except (OSError, AttributeError, ValueError):  # another libssl/ABI: keep OpenSSL's defaults
        pass


async def _open(host: str, port: int, socks: str | None, alpn: bool, timeout: float, tls12_only: bool = False):
    ctx = _tls_context(alpn, tls12_only)
    try:
        async with asyncio.timeout(timeout):
            if socks:
                from python_socks.async_.asyncio import Proxy

                url = socks if "://" in socks else f"socks5h://{socks}"
                if not url.startswith(("socks5h://", "socks5://")):
                    raise ValueError(f"SOCKS proxy {socks!r}: use socks5h://HOST:PORT (e.g. tor's 127.0.0.1:9050)")
                # names (.onion) are always resolved by the proxy
                proxy = Proxy.from_url(url.replace("socks5h://", "socks5://", 1), rdns=True)
                sock = await proxy.connect(dest_host=host, dest_port=port)
                return await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="", limit=4 * BLOCK_SIZE)
            # server_hostname="" ⇒ no SNI, as SMP clients do (SNI selects the HTTPS site on port 443)
            return await asyncio.open_connection(host, port, ssl=ctx, server_hostname="", limit=4 * BLOCK_SIZE)
    except TimeoutError:
        raise Unreachable(f"connecting to {host}:{port} timed out after {timeout} s") from None
    except (OSError, ssl.SSLError) as e:
        raise Unreachable(f"cannot connect to {host}:{port}{' via ' + socks if socks else ''}: {e}") from None
    except Exception as e:  # python_socks errors
        if type(e).__module__.startswith("python_socks"):
            raise Unreachable(f"SOCKS proxy {socks} could not reach {host}:{port}: {e}") from None
        raise


_CLOSED = object()


class SMPClient:
    """One SMP connection. Use :func:`connect` to make one.

    Requests are matched to responses by correlation id; server events (MSG after SEND or SUB,
    END, DELD, NMSG) and errors with an empty correlation id go to :meth:`next_event`.
    """

    def __init__(self, reader, writer, address: SMPAddress, timeout: float) -> None:
        self.reader, self.writer = reader, writer
        self.address = address
        self.timeout = timeout
        self.version = 0
        self.server_versions = (0, 0)
        self.session_id = b""
        self.server_key: bytes | None = None  # server's per-connection X25519 key (v >= 7)
        self.server_chain: list[bytes] = []
        self.alpn: str | None = None
        self.tls: tuple[str, str] = ("", "")  # (TLS version, cipher)
        self.server_hello: ServerHello | None = None
        self.sess_secret: bytes | None = None  # X25519(handshake keys), v >= 7 with a client key
        self._hs_priv: bytes | None = None  # this connection's X25519 handshake private key
        self._snd: SbChain | None = None
        self._rcv: SbChain | None = None
        self._waiting: dict[bytes, asyncio.Future] = {}
        self._orphans: dict[bytes, list[Response]] = {}
        self.events: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._outbox: list[bytes] = []
        self._flush_pending = False
        self.closed: BaseException | None = None

    # -- handshake -------------------------------------------------------------------------
    async def _read_block(self) -> bytes:
        try:
            return await self.reader.readexactly(BLOCK_SIZE)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise ConnectionClosed(f"server closed the connection ({type(e).__name__})") from None

    async def _handshake(
        self,
        version: int | None,
        check_fingerprint: bool,
        key_hash: bytes | None,
        send_dh: bool,
        proxy_server: bool,
    ) -> None:
        ssl_obj = self.writer.get_extra_info("ssl_object")
        self.alpn = ssl_obj.selected_alpn_protocol()
        self.tls = (ssl_obj.version() or "", (ssl_obj.cipher() or ("",))[0])
        tls_unique = ssl_obj.get_channel_binding("tls-unique")
        tls_leaf = ssl_obj.getpeercert(binary_form=True)
        try:
            async with asyncio.timeout(self.timeout):
                block = await self._read_block()
        except TimeoutError:
            raise HandshakeError("no server hello within the timeout") from None
        except ConnectionClosed as e:
            raise HandshakeError(f"connection closed before server hello: {e}") from None
        try:
            hello = parse_server_hello(block)
        except DecodeError as e:
            raise HandshakeError(f"server hello does not parse: {e}") from None
        self.server_hello = hello
        if hello.session_id != tls_unique:
            raise HandshakeError("server hello session id differs from TLS tls-unique (SESSION)")
        self.session_id = hello.session_id
        self.server_versions = (hello.vmin, hello.vmax)
        if version is None:
            version = min(hello.vmax, CLIENT_VERSIONS[1])
            if version < max(hello.vmin, CLIENT_VERSIONS[0]):
                raise HandshakeError(f"no common version: server {hello.vmin}-{hello.vmax}, client 6-18")
        # chain: from the hello (v >= 7), else the TLS chain
        chain = hello.chain or [c.public_bytes(_Enc.DER) for c in _tls_chain(ssl_obj)]
        self.server_chain = chain
        if check_fingerprint:
            check_chain(chain, self.address.key_hash)
        if tls_leaf is not None and chain[0] != tls_leaf:
            raise HandshakeError("certificate chain in server hello does not start with the TLS certificate")
        dh_priv = None
        if hello.signed_key is not None:
            self.server_key = verify_signed_key(hello.signed_key, x509.load_der_x509_certificate(tls_leaf or chain[0]))
        dh_pub = None
        if send_dh and version >= V_AUTH_CMDS:
            dh_pub, dh_priv = sodium.crypto_box_keypair()
        self.writer.write(pad(encode_client_hello(version, key_hash or self.address.key_hash, dh_pub, proxy_server), BLOCK_SIZE))
        await self.writer.drain()
        self.version = version
        if dh_priv is not None and self.server_key is not None:
            # the session secret: block encryption (v >= 11, not for proxies) and RFWD
            self.sess_secret = sodium.crypto_scalarmult(dh_priv, self.server_key)
            self._hs_priv = dh_priv
            if version >= V_BLOCK_ENC and not proxy_server:
                ck1, ck2 = sbc_init(self.session_id, self.sess_secret)
                self._rcv, self._snd = SbChain(ck1), SbChain(ck2)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    # -- block I/O -------------------------------------------------------------------------
    def _seal(self, plain: bytes) -> bytes:
        if self._snd is not None:
            return self._snd.encrypt(pad(plain, ENCRYPTED_BLOCK_PLAIN))
        return pad(plain, BLOCK_SIZE)

    async def send_block_plain(self, plain: bytes) -> None:
        """Sends an unpadded block body (count ‖ transmissions…), padded and encrypted as needed."""
        self._check_open()
        self.writer.write(self._seal(plain))
        await self.writer.drain()

    async def send_padded_block(self, padded: bytes) -> None:
        """Sends a block whose padding the caller made (16368 bytes from v11, encrypted here;
        16384 bytes below): lets tests send wrong pad lengths through block encryption."""
        self._check_open()
        self.writer.write(self._snd.encrypt(padded) if self._snd is not None else padded)
        await self.writer.drain()

    @property
    def padded_size(self) -> int:
        return ENCRYPTED_BLOCK_PLAIN if self._snd is not None else BLOCK_SIZE

    async def send_raw_block(self, block: bytes) -> None:
        """Sends ``block`` bytes verbatim (no padding, no encryption): for malformed-input tests.

        With block encryption every full block received consumes one key of the server's chain
        (upstream ``tGetBlock``), so the client's chain is advanced too, to stay in step."""
        self._check_open()
        if self._snd is not None and len(block) == BLOCK_SIZE:
            self._snd.next()
        self.writer.write(block)
        await self.writer.drain()

    async def _read_loop(self) -> None:
        n = 0
        try:
            while True:
                block = await self._read_block()
                if self._rcv is not None:
                    block = self._rcv.decrypt(block)
                n += 1
                for resp in parse_responses(unpad(block), self.version, self.session_id):
                    resp.block = n
                    fut = self._waiting.pop(resp.corr_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(resp)
                    elif resp.corr_id:
                        self._orphans.setdefault(resp.corr_id, []).append(resp)
                    else:
                        self.events.put_nowait(resp)
        except asyncio.CancelledError:
            self.closed = ConnectionClosed("client closed the connection")
            raise
        except BaseException as e:
            self.closed = e if isinstance(e, SMPClientError) else ConnectionClosed(f"reader failed: {e!r}")
        finally:
            if self.closed is None:
                self.closed = ConnectionClosed("connection closed")
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(self.closed)
                    fut.exception()  # retrieved here: a caller that gave up must not log a warning
            self._waiting.clear()
            self.events.put_nowait(_CLOSED)

    def _check_open(self) -> None:
        if self.closed is not None:
            raise self.closed

    # -- requests ------------------------------------------------------------------------
    def transmission(
        self,
        entity_id: bytes,
        command: bytes,
        key: AuthKey | None = None,
        corr_id: bytes | None = None,
        auth: bytes | None = None,
    ) -> tuple[bytes, bytes]:
        """(corrId, encoded transmission) for this connection's version and session."""
        corr_id = os.urandom(24) if corr_id is None else corr_id
        t = encode_transmission(self.version, self.session_id, corr_id, entity_id, command, key, self.server_key, auth)
        return corr_id, t

    def expect(self, corr_id: bytes) -> asyncio.Future:
        """A future for the response with ``corr_id`` (register before sending)."""
        fut = asyncio.get_running_loop().create_future()
        early = self._orphans.pop(corr_id, None)
        if early:
            fut.set_result(early[0])
        elif self.closed is not None:
            fut.set_exception(self.closed)
        else:
            self._waiting[corr_id] = fut
        return fut

    async def wait(self, fut: asyncio.Future, timeout: float | None = None) -> Response:
        try:
            async with asyncio.timeout(timeout or self.timeout):
                return await fut
        except TimeoutError:
            raise SMPTimeout(f"no response within {timeout or self.timeout} s") from None

    async def send_transmissions(self, ts: list[bytes]) -> None:
        """Sends already-encoded transmissions in one block."""
        await self.send_block_plain(encode_batch(ts))

    async def request_batch(self, cmds: Iterable[tuple[bytes, bytes, AuthKey | None]]) -> list[Response]:
        """Sends several (entityId, command, key) in one block; returns the responses in order."""
        pairs = [self.transmission(e, c, k) for e, c, k in cmds]
        futs = [self.expect(cid) for cid, _ in pairs]
        try:
            await self.send_transmissions([t for _, t in pairs])
        except BaseException:
            for cid, _ in pairs:
                self._waiting.pop(cid, None)
            for f in futs:
                f.cancel()
            raise
        return [await self.wait(f) for f in futs]

    async def request(self, entity_id: bytes, command: bytes, key: AuthKey | None = None) -> Response:
        """One command; requests made in the same event-loop turn share blocks (as upstream's
        client batches), so concurrent callers cost fewer blocks and less block crypto."""
        corr_id, t = self.transmission(entity_id, command, key)
        return await self.request_encoded(corr_id, t)

    async def request_encoded(self, corr_id: bytes, t: bytes) -> Response:
        """Sends an already-encoded transmission (auto-batched) and waits for its response."""
        if len(t) + 2 > BATCH_CAPACITY:
            raise ValueError(f"a {len(t)}-byte transmission exceeds the block capacity {BATCH_CAPACITY} (TELargeMsg)")
        self._check_open()
        fut = self.expect(corr_id)
        self._outbox.append(t)
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await self.wait(fut)

    def _flush(self) -> None:
        """Writes the outbox in as few blocks as fit (≤255 transmissions, ≤ capacity bytes each)."""
        self._flush_pending = False
        out, self._outbox = self._outbox, []
        if self.closed is not None:
            return
        batch: list[bytes] = []
        size = 0
        for t in out:
            if batch and (len(batch) == 255 or size + len(t) + 2 > BATCH_CAPACITY):
                self.writer.write(self._seal(encode_batch(batch)))
                batch, size = [], 0
            batch.append(t)
            size += len(t) + 2
        if batch:
            self.writer.write(self._seal(encode_batch(batch)))

    async def next_event(self, timeout: float | None = None) -> Response:
        """The next server event (empty corrId): MSG, END, DELD, NMSG, ERR BLOCK…"""
        try:
            async with asyncio.timeout(timeout or self.timeout):
                ev = await self.events.get()
        except TimeoutError:
            raise SMPTimeout(f"no server event within {timeout or self.timeout} s") from None
        if ev is _CLOSED:
            self.events.put_nowait(_CLOSED)
            raise self.closed or ConnectionClosed("connection closed")
        return ev

    @staticmethod
    def _ok(resp: Response, what: str, allowed: tuple[str, ...] = ("OK",)) -> Response:
        if resp.tag == "ERR":
            raise ServerError(resp.error or "", what)
        if resp.tag not in allowed:
            raise UnexpectedResponse(f"{what}: expected {'/'.join(allowed)}, got {resp.command[:40]!r}")
        return resp

    # -- high level ----------------------------------------------------------------------
    async def ping(self) -> None:
        self._ok(await self.request(b"", b"PING"), "PING", ("PONG",))

    async def create_queue(
        self,
        password: str | bytes | None = ...,  # type: ignore[assignment]
        subscribe: bool = True,
        mode: str = "M",
        auth_alg: str = "ed25519",
        link_data: tuple[bytes, bytes] | None = None,
        contact_link_id: bytes | None = None,
        notifier: bool = False,
    ) -> Queue:
        """NEW → IDS. ``password`` defaults to the address' password; ERR AUTH ⇒ PasswordRefused."""
        if password is ...:
            password = self.address.password
        pw = password.encode() if isinstance(password, str) else password
        rcv_key = AuthKey.generate(auth_alg)
        dh_pub, dh_priv = sodium.crypto_box_keypair()
        corr_id = os.urandom(24)
        link = None
        if link_data is not None:
            link = (contact_link_id, link_sender_id(corr_id), link_data[0], link_data[1])
        ntf = None
        if notifier and self.version >= V_NTF_CREDS:
            nk = AuthKey.generate("ed25519")
            npub, npriv = sodium.crypto_box_keypair()
            ntf = (nk, npub)
        cmd = encode_new(self.version, rcv_key, dh_pub, pw, subscribe, mode, link, ntf)
        _, t = self.transmission(b"", cmd, rcv_key, corr_id)
        fut = self.expect(corr_id)
        await self.send_transmissions([t])
        resp = await self.wait(fut)
        if resp.tag == "ERR":
            cls = PasswordRefused if resp.error == "AUTH" else ServerError
            raise cls(resp.error or "", "NEW")
        self._ok(resp, "NEW", ("IDS",))
        ids = parse_ids(self.version, resp.args)
        q = Queue(
            ids.rcv_id, ids.snd_id, rcv_key, sodium.crypto_box_beforenm(ids.server_dh_pub, dh_priv),
            ids.server_dh_pub, ids.queue_mode, ids.link_id, raw=resp.args,
        )
        if ntf is not None and ids.notifier_id is not None:
            q.notifier_id, q.notifier_key = ids.notifier_id, ntf[0]
            q.ntf_dh_secret = sodium.crypto_box_beforenm(ids.server_ntf_dh_pub, npriv)
        return q

    async def secure(self, q: Queue, sender_key: AuthKey) -> None:
        """KEY: the recipient sets the sender key."""
        self._ok(await self.request(q.rcv_id, b"KEY " + ss(sender_key.public_der), q.rcv_key), "KEY")

    async def secure_by_sender(self, snd_id: bytes, sender_key: AuthKey) -> None:
        """SKEY: the sender secures a messaging queue with its own key (v >= 9)."""
        self._ok(await self.request(snd_id, b"SKEY " + ss(sender_key.public_der), sender_key), "SKEY")

    async def subscribe(self, q: Queue) -> Response:
        """SUB ⇒ OK (SOK at v >= 16); a pending message arrives as an event."""
        return self._ok(await self.request(q.rcv_id, b"SUB", q.rcv_key), "SUB", ("OK", "SOK"))

    async def send(self, snd_id: bytes, body: bytes, sender_key: AuthKey | None = None, notification: bool = False) -> None:
        cmd = b"SEND " + (b"T" if notification else b"F") + b" " + body
        self._ok(await self.request(snd_id, cmd, sender_key), "SEND")

    async def receive(self, q: Queue, timeout: float | None = None) -> ReceivedMessage:
        """Waits for the next MSG event of ``q`` (other events raise UnexpectedResponse)."""
        ev = await self.next_event(timeout)
        if ev.tag != "MSG" or ev.entity_id != q.rcv_id:
            raise UnexpectedResponse(f"expected MSG for the queue, got {ev.command[:40]!r}")
        return self.decrypt(q, ev)

    @staticmethod
    def decrypt(q: Queue, resp: Response) -> ReceivedMessage:
        r = Reader(resp.args)
        msg_id = r.ss()
        return q.decrypt(msg_id, r.rest())

    async def ack(self, q: Queue, msg_id: bytes) -> ReceivedMessage | None:
        """ACK ⇒ OK (None) or the next message."""
        resp = self._ok(await self.request(q.rcv_id, b"ACK " + ss(msg_id), q.rcv_key), "ACK", ("OK", "MSG"))
        return self.decrypt(q, resp) if resp.tag == "MSG" else None

    async def get(self, q: Queue) -> ReceivedMessage | None:
        resp = self._ok(await self.request(q.rcv_id, b"GET", q.rcv_key), "GET", ("OK", "MSG"))
        return self.decrypt(q, resp) if resp.tag == "MSG" else None

    async def off(self, q: Queue) -> None:
        self._ok(await self.request(q.rcv_id, b"OFF", q.rcv_key), "OFF")

    async def delete(self, q: Queue) -> None:
        self._ok(await self.request(q.rcv_id, b"DEL", q.rcv_key), "DEL")

    # notifier commands
    async def enable_notifications(self, q: Queue) -> None:
        """NKEY ⇒ NID: sets q.notifier_id/notifier_key/ntf_dh_secret."""
        nk = AuthKey.generate("ed25519")
        npub, npriv = sodium.crypto_box_keypair()
        resp = self._ok(
            await self.request(q.rcv_id, b"NKEY " + ss(nk.public_der) + ss(spki("x25519", npub)), q.rcv_key),
            "NKEY", ("NID",),
        )
        r = Reader(resp.args)
        q.notifier_id, q.notifier_key = r.ss(), nk
        q.ntf_dh_secret = sodium.crypto_box_beforenm(_key_of(r), npriv)

    async def disable_notifications(self, q: Queue) -> None:
        self._ok(await self.request(q.rcv_id, b"NDEL", q.rcv_key), "NDEL")

    async def subscribe_notifications(self, notifier_id: bytes, notifier_key: AuthKey) -> None:
        self._ok(await self.request(notifier_id, b"NSUB", notifier_key), "NSUB", ("OK", "SOK"))

    @staticmethod
    def decrypt_nmsg(q: Queue, resp: Response) -> tuple[bytes, int]:
        """NMSG nonce enc ⇒ (msgId, timestamp)."""
        nonce, enc = resp.args[:24], Reader(resp.args[24:]).ss()
        plain = unpad(sodium.crypto_box_open_afternm(enc, nonce, q.ntf_dh_secret))
        r = Reader(plain)
        return r.ss(), r.i64()

    # short links (v >= 15)
    async def link_set(self, q: Queue, link_id: bytes, fixed: bytes, user: bytes) -> None:
        self._ok(await self.request(q.rcv_id, b"LSET " + ss(link_id) + large(fixed) + large(user), q.rcv_key), "LSET")

    async def link_delete(self, q: Queue) -> None:
        self._ok(await self.request(q.rcv_id, b"LDEL", q.rcv_key), "LDEL")

    async def link_key(self, link_id: bytes, sender_key: AuthKey) -> tuple[bytes, bytes, bytes]:
        resp = self._ok(await self.request(link_id, b"LKEY " + ss(sender_key.public_der), sender_key), "LKEY", ("LNK",))
        return _parse_lnk(resp.args)

    async def link_get(self, link_id: bytes) -> tuple[bytes, bytes, bytes]:
        resp = self._ok(await self.request(link_id, b"LGET"), "LGET", ("LNK",))
        return _parse_lnk(resp.args)

    # forwarding (private message routing), the proxy's side of RFWD (v >= 8)
    async def forward(
        self, fwd_version: int, entity_id: bytes, command: bytes, key: AuthKey | None = None
    ) -> Response:
        """Sends ``command`` as a proxy would forward it (RFWD, reference §6.11) over this
        connection and returns the destination's decrypted response. The inner transmission
        is authorized for this connection's session at ``fwd_version``."""
        if self.sess_secret is None or self.server_key is None:
            raise SMPClientError("RFWD needs a session secret: connect at v >= 8 with a client key")
        n = os.urandom(24)  # client corrId = nonce of the inner encryption
        inner = encode_transmission(fwd_version, self.session_id, n, entity_id, command, key, self.server_key)
        cmd_pub, cmd_priv = sodium.crypto_box_keypair()
        et = sodium.crypto_box(pad(encode_batch([inner]), PROXIED_PADDED), n, self.server_key, cmd_priv)
        fwd_t = ss(n) + w16(fwd_version) + ss(spki("x25519", cmd_pub)) + et
        p = os.urandom(24)
        eft = sodium.crypto_box(fwd_t, p, self.server_key, self._hs_priv)  # cbEncryptNoPad(sessSecret)
        _, t = self.transmission(b"", b"RFWD " + eft, corr_id=p)
        resp = await self.request_encoded(p, t)
        if resp.tag != "RRES":
            return resp  # ERR from the destination's RFWD handling itself
        try:
            fr = sodium.crypto_box_open(resp.args, p[::-1], self.server_key, self._hs_priv)
            r = Reader(fr)
            if r.ss() != n:
                raise DecodeError("RRES for another forwarded transmission")
            inner_resp = unpad(sodium.crypto_box_open(r.rest(), n[::-1], self.server_key, cmd_priv))
        except DecodeError:
            raise
        except Exception as e:
            raise DecodeError(f"RRES does not decrypt: {e}") from None
        (out,) = parse_responses(inner_resp, fwd_version, self.session_id)
        return out

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (Exception, asyncio.CancelledError):
            pass

    async def __aenter__(self) -> "SMPClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _parse_lnk(args: bytes) -> tuple[bytes, bytes, bytes]:
    r = Reader(args)
    return r.ss(), r.large(), r.large()




def _tls_chain(ssl_obj: ssl.SSLObject) -> list[x509.Certificate]:
    """The TLS certificate chain as sent (v6 hellos carry none)."""
    raw = ssl_obj._sslobj.get_unverified_chain() or []  # public API only from Python 3.13
    return [x509.load_der_x509_certificate(c.public_bytes(_ssl.ENCODING_DER)) for c in raw]


async def connect(
    address: str | SMPAddress,
    socks: str | None = None,
    *,
    version: int | None = None,
    timeout: float = 10.0,
    alpn: bool = True,
    host: str | None = None,
    check_fingerprint: bool = True,
    key_hash: bytes | None = None,
    send_dh_key: bool = True,
    proxy_server: bool = False,
    tls12_only: bool = False,
) -> SMPClient:
    """Connects, checks the server identity against the address and completes the handshake.

    ``socks`` is ``socks5h://host:port`` (names resolved by the proxy: needed for .onion hosts).
    ``version`` forces the version sent in the client hello (default: highest common).
    ``check_fingerprint=False`` / ``key_hash`` / ``send_dh_key`` / ``proxy_server`` are for
    negative tests and proxy-style connections. Raises Unreachable, WrongFingerprint or
    HandshakeError.
    """
    addr = parse_address(address) if isinstance(address, str) else address
    target = host or addr.choose_host(socks is not None)
    reader, writer = await _open(target, addr.port, socks, alpn, timeout, tls12_only)
    c = SMPClient(reader, writer, addr, timeout)
    try:
        await c._handshake(version, check_fingerprint, key_hash, send_dh_key, proxy_server)
    except BaseException:
        writer.close()
        raise
    c._start()
    return c
