"""SMP transmissions and commands (upstream ``Protocol.hs``): parse what clients send and
encode what the server answers, at every version from 6 to 18. Pure, no I/O.

Parsing follows upstream's order so that each kind of bad input gets the same error:
an unparsable transmission is ``ERR BLOCK`` with an empty correlation id; a wrong session
id (v6) ``ERR SESSION``; an authorization of an impossible length ``ERR BLOCK``; an unknown
tag ``ERR CMD UNKNOWN``; bad parameters ``ERR CMD SYNTAX``; then the credential rules of
``checkCredentials``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import encoding as e
from .crypto import CryptoError, PublicKey, decode_public_key

AUTH_CMDS_VERSION = 7
SENDING_PROXY_VERSION = 8
SND_AUTH_KEY_VERSION = 9
DELETED_EVENT_VERSION = 10
ENCRYPTED_BLOCK_VERSION = 11
BLOCKED_ENTITY_VERSION = 12
SHORT_LINKS_VERSION = 15
SERVICE_CERTS_VERSION = 16
NEW_NTF_CREDS_VERSION = 17
CLIENT_NOTICES_VERSION = 18

AUTH_SIZES = (0, 64, 80, 114)  # none, Ed25519, X25519 authenticator, Ed448


def max_message_length(v: int) -> int:
    if v >= ENCRYPTED_BLOCK_VERSION:
        return 16048
    if v >= SENDING_PROXY_VERSION:
        return 16064
    return 16088


@dataclass(frozen=True, slots=True)
class Params:
    """Per-connection parameters fixed by the handshake."""

    version: int
    session_id: bytes

    @property
    def imply_sess_id(self) -> bool:
        return self.version >= AUTH_CMDS_VERSION

    @property
    def service_auth(self) -> bool:
        return self.version >= SERVICE_CERTS_VERSION


class ProtocolError(Exception):
    """A transmission rejected before execution; ``error`` is the ERR text."""

    def __init__(self, corr_id: bytes, entity_id: bytes, error: bytes) -> None:
        super().__init__(error.decode())
        self.corr_id = corr_id
        self.entity_id = entity_id
        self.error = error


# -- commands ----------------------------------------------------------------------------------
@dataclass(slots=True)
class QueueReq:
    mode: str  # "M" | "C"
    link_id: bytes | None = None
    sender_id: bytes | None = None
    fixed_data: bytes | None = None
    user_data: bytes | None = None


@dataclass(slots=True)
class Command:
    tag: str
    key: PublicKey | None = None  # NEW rcv auth key, KEY/SKEY/LKEY sender key, NKEY notifier key
    dh_key: bytes | None = None  # NEW rcv DH key, NKEY rcv ntf DH key (raw X25519)
    basic_auth: bytes | None = None
    sub_mode: str = "S"
    queue_req: QueueReq | None = None
    ntf_key: PublicKey | None = None  # NEW v17 notifier auth key
    ntf_dh_key: bytes | None = None  # NEW v17 rcv ntf DH key
    msg_id: bytes = b""
    notification: bool = False
    body: bytes = b""
    keys: list[PublicKey] | None = None  # RKEY
    link_id: bytes = b""
    fixed_data: bytes = b""
    user_data: bytes = b""
    fwd_version: int = 0  # PFWD: the client's SMP version with the destination relay


RECIPIENT = {"SUB", "KEY", "RKEY", "LSET", "LDEL", "NKEY", "NDEL", "GET", "ACK", "OFF", "DEL", "QUE"}
SENDER = {"SKEY", "SEND"}
SENDER_LINK = {"LKEY", "LGET"}
NOTIFIER = {"NSUB"}
TAGS = RECIPIENT | SENDER | SENDER_LINK | NOTIFIER | {"NEW", "PING", "SUBS", "NSUBS", "PRXY", "PFWD", "RFWD"}
NO_PARAMS = {"SUB", "LDEL", "NDEL", "GET", "OFF", "DEL", "QUE", "PING", "LGET", "NSUB", "SUBS", "NSUBS"}
# commands for which a service signature is used (``useServiceAuth``)
USE_SERVICE_AUTH = {"NEW", "SUB", "NSUB"}


def _auth_key(p: e.Parser) -> PublicKey:
    try:
        k = decode_public_key(p.ss())
    except CryptoError as err:
        raise e.ParseError(str(err)) from err
    if k.alg == "x448":
        raise e.ParseError("X448 is not an authorization key")
    return k


def _dh_key(p: e.Parser) -> bytes:
    try:
        k = decode_public_key(p.ss())
    except CryptoError as err:
        raise e.ParseError(str(err)) from err
    if k.alg != "x25519":
        raise e.ParseError("DH key must be X25519")
    return k.raw


# BasicAuth characters (upstream ``basicAuth``: isPrint, not isSpace, not '@', ':' or '/'),
# over the Latin-1 code points a Char8 ByteString holds.
_BASIC_AUTH_CHARS = frozenset(
    b for b in range(256) if chr(b).isprintable() and not chr(b).isspace() and b not in b"@:/"
)
_DOMAIN_STOP = frozenset(b":#,;/ \n\r\t")
_DIGITS = frozenset(b"0123456789")
_HEX_OR_COLON = frozenset(b"0123456789abcdefABCDEF:")
_ONION_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789")


def _basic_auth(p: e.Parser) -> bytes:
    """``Encoding BasicAuth``: SS whose every character is allowed, else a syntax error."""
    s = p.ss()
    if not _BASIC_AUTH_CHARS.issuperset(s):
        raise e.ParseError("invalid character in BasicAuth")
    return s


def _digits(s: bytes, i: int) -> int:
    """End of the run of ASCII digits starting at ``i``."""
    while i < len(s) and s[i] in _DIGITS:
        i += 1
    return i


def _ipv4_prefix(s: bytes) -> int | None:
    """Length of the IPv4 alternative of ``TransportHost.strP`` at the start of ``s``, or None:
    three ``decimal '.'`` numbers up to 255, then a decimal (a Word8, so any digits)."""
    i = 0
    for _ in range(3):
        j = _digits(s, i)
        if j == i or j >= len(s) or s[j] != 0x2E or int(s[i:j]) > 255:
            return None
        i = j + 1
    j = _digits(s, i)
    return j if j > i else None


def _ipv6_prefix(s: bytes) -> int | None:
    """Length of the IPv6 alternative (``[addr]`` or hex digits and colons read as IPv6)."""
    if s[:1] == b"[":
        j = s.find(b"]", 1)
        if j <= 1:
            return None
        addr, end = s[1:j], j + 1
    else:
        end = 0
        while end < len(s) and s[end] in _HEX_OR_COLON:
            end += 1
        if end == 0:
            return None
        addr = s[:end]
    try:
        if b"%" in addr:
            return None
        ipaddress.IPv6Address(addr.decode("latin-1"))
    except ValueError:
        return None
    return end


def transport_host_ok(s: bytes) -> bool:
    """Whether upstream ``parseAll strP`` accepts ``s`` as a ``TransportHost``: the first of
    IPv4, IPv6, onion, domain name that parses is taken, and it must use up the whole string."""
    end = _ipv4_prefix(s)
    if end is None:
        end = _ipv6_prefix(s)
    if end is None:
        k = 0
        while k < len(s) and s[k] in _ONION_CHARS:
            k += 1
        if s.startswith(b".onion", k):
            end = k + 6
    if end is None:
        k = 0
        while k < len(s) and s[k] not in _DOMAIN_STOP:
            k += 1
        if k == 0 or s[:k].endswith(b".onion"):
            return False
        end = k
    return end == len(s)


def _smp_server(p: e.Parser) -> None:
    """``Encoding SMPServer``: NonEmpty(SS host) ‖ SS port ‖ SS keyHash; validated, not kept."""
    n = p.byte()
    if n == 0:
        raise e.ParseError("empty host list")
    for _ in range(n):
        if not transport_host_ok(p.ss()):
            raise e.ParseError("bad server host")
    p.ss()  # port (a String)
    p.ss()  # key hash


def _sub_mode(p: e.Parser) -> str:
    c = p.byte()
    if c == 0x53:
        return "S"
    if c == 0x43:
        return "C"
    raise e.ParseError("bad subscription mode")


def _new(v: int, p: e.Parser) -> Command:
    p.space()
    cmd = Command("NEW", key=_auth_key(p), dh_key=_dh_key(p))
    if v >= SND_AUTH_KEY_VERSION:
        if p.maybe_tag():
            cmd.basic_auth = _basic_auth(p)
        cmd.sub_mode = _sub_mode(p)
        if v >= SHORT_LINKS_VERSION:
            if p.maybe_tag():
                mode = p.char()
                if mode == b"M":
                    req = QueueReq("M")
                    if p.maybe_tag():
                        req.sender_id = p.ss()
                        req.fixed_data = p.large()
                        req.user_data = p.large()
                elif mode == b"C":
                    req = QueueReq("C")
                    if p.maybe_tag():
                        req.link_id = p.ss()
                        req.sender_id = p.ss()
                        req.fixed_data = p.large()
                        req.user_data = p.large()
                else:
                    raise e.ParseError("bad queue request data")
                cmd.queue_req = req
            if v >= NEW_NTF_CREDS_VERSION and p.maybe_tag():
                cmd.ntf_key = _auth_key(p)
                cmd.ntf_dh_key = _dh_key(p)
        else:
            cmd.queue_req = QueueReq("M" if p.boolean() else "C")
    else:
        if p.peek() == 0x41:  # 'A' SS(basicAuth), optional and untagged
            save = p.pos
            try:
                p.pos += 1
                cmd.basic_auth = _basic_auth(p)
            except e.ParseError:
                p.pos = save
                cmd.basic_auth = None
        cmd.sub_mode = _sub_mode(p)
    return cmd


def parse_command(v: int, raw: bytes) -> Command:
    """``parseProtocol``: raises UnknownCommand for an unknown tag, ParseError for bad parameters."""
    sp = raw.find(b" ")
    tag_b, params = (raw, b"") if sp < 0 else (raw[:sp], raw[sp:])
    try:
        tag = tag_b.decode("ascii")
    except UnicodeDecodeError:
        raise UnknownCommand() from None
    if tag not in TAGS:
        raise UnknownCommand()
    if tag in NO_PARAMS:
        if params:
            raise e.ParseError(f"{tag} takes no parameters")
        return Command(tag)
    p = e.Parser(params)
    if tag == "NEW":
        cmd = _new(v, p)
    elif tag == "SEND":
        p.space()
        cmd = Command("SEND", notification=p.boolean())
        while p.peek() is not None and p.peek() != 0x20:  # reserved flag characters
            p.pos += 1
        p.space()
        cmd.body = p.tail()
    elif tag == "ACK":
        p.space()
        cmd = Command("ACK", msg_id=p.ss())
    elif tag in ("KEY", "SKEY", "LKEY"):
        p.space()
        cmd = Command(tag, key=_auth_key(p))
    elif tag == "NKEY":
        p.space()
        cmd = Command("NKEY", key=_auth_key(p), dh_key=_dh_key(p))
    elif tag == "RKEY":
        p.space()
        n = p.byte()
        if n == 0:
            raise e.ParseError("empty key list")
        cmd = Command("RKEY", keys=[_auth_key(p) for _ in range(n)])
    elif tag == "LSET":
        p.space()
        cmd = Command("LSET", link_id=p.ss(), fixed_data=p.large(), user_data=p.large())
    elif tag == "RFWD":
        p.space()
        cmd = Command("RFWD", body=p.tail())
    elif tag == "PRXY":
        # ``PRXY <$> _smpP <*> smpP``: the destination server and Maybe BasicAuth are parsed
        # (bad ones are CMD SYNTAX) even though this relay refuses to be a sending proxy.
        p.space()
        _smp_server(p)
        cmd = Command("PRXY", basic_auth=_basic_auth(p) if p.maybe_tag() else None)
    elif tag == "PFWD":
        # ``PFWD <$> _smpP <*> smpP <*> Tail``: version (Word16), X25519 key, encrypted transmission
        p.space()
        cmd = Command("PFWD", fwd_version=p.w16())
        cmd.dh_key = _dh_key(p)
        cmd.body = p.tail()
    else:  # pragma: no cover - TAGS and the branches above are kept in step
        raise UnknownCommand()
    p.end()
    return cmd


class UnknownCommand(Exception):
    pass


# -- transmissions -------------------------------------------------------------------------------
@dataclass(slots=True)
class Transmission:
    auth: bytes  # b"" (none), 64/114 signature, 80 authenticator
    service_sig: bytes | None
    authorized: bytes  # what the signature covers (session id prefixed from v7)
    corr_id: bytes
    entity_id: bytes
    cmd: Command


def check_credentials(has_auth: bool, entity_id: bytes, cmd: Command) -> bytes | None:
    """Upstream ``checkCredentials``: the ERR text, or None when acceptable."""
    tag = cmd.tag
    if tag == "NEW":
        if not has_auth:
            return b"CMD NO_AUTH"
        if entity_id:
            return b"CMD HAS_AUTH"
        return None
    if tag == "SEND":
        return b"CMD NO_ENTITY" if not entity_id else None
    if tag in ("LGET", "PFWD"):
        if not entity_id:
            return b"CMD NO_ENTITY"
        return b"CMD HAS_AUTH" if has_auth else None
    if tag in ("PING", "PRXY", "RFWD"):
        return b"CMD HAS_AUTH" if has_auth or entity_id else None
    if not has_auth or not entity_id:
        return b"CMD NO_AUTH"
    return None


def parse_transmission(params: Params, t: bytes) -> Transmission:
    """``transmissionP`` then ``tDecodeServer``; raises ProtocolError with the response."""
    p = e.Parser(t)
    try:
        auth = p.ss()
        service_sig = None
        if params.service_auth and auth:
            if p.maybe_tag():
                service_sig = p.ss()
                if len(service_sig) != 64:
                    raise e.ParseError("service signature must be Ed25519")
        start = p.pos
        if not params.imply_sess_id:
            sess_id = p.ss()
        corr_id = p.ss()
        entity_id = p.ss()
    except e.ParseError:
        raise ProtocolError(b"", b"", b"BLOCK") from None
    if params.imply_sess_id:
        authorized = e.ss(params.session_id) + t[start:]
    else:
        if sess_id != params.session_id:
            raise ProtocolError(corr_id, b"", b"SESSION")
        authorized = t[start:]
    if len(auth) not in AUTH_SIZES:
        raise ProtocolError(corr_id, b"", b"BLOCK")
    try:
        cmd = parse_command(params.version, t[p.pos :])
    except UnknownCommand:
        raise ProtocolError(corr_id, entity_id, b"CMD UNKNOWN") from None
    except e.ParseError:
        raise ProtocolError(corr_id, entity_id, b"CMD SYNTAX") from None
    err = check_credentials(bool(auth), entity_id, cmd)
    if err is not None:
        raise ProtocolError(corr_id, entity_id, err)
    return Transmission(auth, service_sig, authorized, corr_id, entity_id, cmd)


# -- responses ------------------------------------------------------------------------------------
def encode_response(params: Params, corr_id: bytes, entity_id: bytes, msg: bytes) -> bytes:
    """A server transmission: empty authorization, then (v6) session id, corrId, entity, message."""
    if params.imply_sess_id:
        return b"\x00" + e.ss(corr_id) + e.ss(entity_id) + msg
    return b"\x00" + e.ss(params.session_id) + e.ss(corr_id) + e.ss(entity_id) + msg


def err(code: bytes) -> bytes:
    return b"ERR " + code


def ids_msg(
    v: int,
    rcv_id: bytes,
    snd_id: bytes,
    srv_dh_spki: bytes,
    queue_mode: str | None,
    link_id: bytes | None,
    ntf: tuple[bytes, bytes] | None,
) -> bytes:
    out = b"IDS " + e.ss(rcv_id) + e.ss(snd_id) + e.ss(srv_dh_spki)
    if v >= SHORT_LINKS_VERSION:
        out += e.maybe(queue_mode.encode() if queue_mode else None)
        out += e.maybe(e.ss(link_id) if link_id is not None else None)
        if v >= SERVICE_CERTS_VERSION:
            out += b"0"  # serviceId
        if v >= NEW_NTF_CREDS_VERSION:
            out += e.maybe(e.ss(ntf[0]) + e.ss(ntf[1]) if ntf else None)
    elif v >= SND_AUTH_KEY_VERSION:
        out += e.boolean(queue_mode == "M")
    return out


def sok_msg(v: int) -> bytes:
    return b"SOK 0" if v >= SERVICE_CERTS_VERSION else b"OK"


def deld_msg(v: int) -> bytes:
    return b"DELD" if v >= DELETED_EVENT_VERSION else b"END"


def msg_msg(msg_id: bytes, enc_body: bytes) -> bytes:
    return b"MSG " + e.ss(msg_id) + enc_body


def lnk_msg(sender_id: bytes, fixed: bytes, user: bytes) -> bytes:
    return b"LNK " + e.ss(sender_id) + e.large(fixed) + e.large(user)


def nid_msg(notifier_id: bytes, srv_ntf_dh_spki: bytes) -> bytes:
    return b"NID " + e.ss(notifier_id) + e.ss(srv_ntf_dh_spki)


def nmsg_msg(nonce: bytes, enc_meta: bytes) -> bytes:
    return b"NMSG " + nonce + e.ss(enc_meta)


MAX_RCV_MESSAGE_LEN = 16104


def rcv_msg_body(ts: int, notification: bool, body: bytes, quota: bool = False) -> bytes:
    """``encodeRcvMsgBody`` padded to MaxRcvMessageLen + 2 (= 16106), ready to encrypt."""
    plain = b"QUOTA " + e.i64(ts) if quota else e.i64(ts) + (b"T" if notification else b"F") + b" " + body
    return e.pad(plain, MAX_RCV_MESSAGE_LEN + 2)
