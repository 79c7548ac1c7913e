"""Transmission and command codecs at every version, and every syntax error of upstream
``serverSyntaxTests`` (tests/ServerTests.hs), at the pure level."""

import base64

import pytest

from smprelay import crypto as c
from smprelay import encoding as e
from smprelay import protocol as p

SID = b"S" * 32
SIG = b"\x01" * 64
PUB = base64.b64decode("MCowBQYDK2VwAyEAfAOflyvbJv1fszgzkQ6buiZJVgSpQWsucXq7U6zjMgY=")
DH = base64.b64decode("MCowBQYDK2VuAyEAriy+HcARIhqsgSjVnjKqoft+y6pxrxdY68zn4+LjYhQ=")
VERSIONS = [6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18]


def tx(v, auth, corr, ent, cmd, sess=SID):
    body = e.ss(corr) + e.ss(ent) + cmd
    if v < 7:
        body = e.ss(sess) + body
    slot = b"0" if v >= 16 and auth else b""
    return e.ss(auth) + slot + body


def parse(v, auth, corr, ent, cmd):
    return p.parse_transmission(p.Params(v, SID), tx(v, auth, corr, ent, cmd))


def err_of(v, auth, corr, ent, cmd):
    with pytest.raises(p.ProtocolError) as ei:
        parse(v, auth, corr, ent, cmd)
    return ei.value.corr_id, ei.value.entity_id, ei.value.error


def new_cmd(v, auth=None, mode="M"):
    out = b"NEW " + e.ss(PUB) + e.ss(DH)
    if v >= 9:
        out += e.maybe(e.ss(auth) if auth is not None else None) + b"S"
        if v >= 15:
            out += e.maybe(mode.encode() + b"0")
            if v >= 17:
                out += b"0"
        else:
            out += e.boolean(mode == "M")
    else:
        out += (b"A" + e.ss(auth) if auth is not None else b"") + b"S"
    return out


@pytest.mark.parametrize("v", VERSIONS)
def test_new_every_version(v):
    t = parse(v, SIG, b"c", b"", new_cmd(v, auth=b"pw"))
    assert t.cmd.tag == "NEW" and t.cmd.key.alg == "ed25519" and t.cmd.dh_key == DH[12:]
    assert t.cmd.basic_auth == b"pw" and t.cmd.sub_mode == "S"
    assert (t.cmd.queue_req.mode if t.cmd.queue_req else None) == (None if v < 9 else "M")
    assert parse(v, SIG, b"c", b"", new_cmd(v)).cmd.basic_auth is None
    if v >= 9:
        assert parse(v, SIG, b"c", b"", new_cmd(v, mode="C")).cmd.queue_req.mode == "C"


def test_new_with_link_data_and_ntf_creds_v17():
    cmd = (
        b"NEW "
        + e.ss(PUB)
        + e.ss(DH)
        + b"0C"
        + b"1M1"
        + e.ss(b"s" * 24)
        + e.large(b"fixed")
        + e.large(b"user")
        + b"1"
        + e.ss(PUB)
        + e.ss(DH)
    )
    t = parse(17, SIG, b"c", b"", cmd)
    q = t.cmd.queue_req
    assert (q.mode, q.sender_id, q.fixed_data, q.user_data) == ("M", b"s" * 24, b"fixed", b"user")
    assert t.cmd.sub_mode == "C" and t.cmd.ntf_key.der == PUB and t.cmd.ntf_dh_key == DH[12:]
    contact = (
        b"NEW " + e.ss(PUB) + e.ss(DH) + b"0S1C1" + e.ss(b"l" * 24) + e.ss(b"s" * 24) + e.large(b"f") + e.large(b"u")
    )
    q = parse(15, SIG, b"c", b"", contact).cmd.queue_req
    assert (q.mode, q.link_id, q.sender_id) == ("C", b"l" * 24, b"s" * 24)


@pytest.mark.parametrize("v", VERSIONS)
def test_recipient_sender_commands_every_version(v):
    assert parse(v, SIG, b"c", b"q", b"KEY " + e.ss(PUB)).cmd.key.der == PUB
    assert parse(v, SIG, b"c", b"q", b"ACK " + e.ss(b"m" * 24)).cmd.msg_id == b"m" * 24
    for tag in (b"SUB", b"GET", b"OFF", b"DEL", b"NDEL", b"LDEL", b"QUE"):
        assert parse(v, SIG, b"c", b"q", tag).cmd.tag == tag.decode()
    s = parse(v, b"", b"c", b"q", b"SEND T  hello world").cmd
    assert s.notification is True and s.body == b" hello world"
    s = parse(v, SIG, b"c", b"q", b"SEND Fxyz body").cmd  # reserved flag chars are skipped
    assert s.notification is False and s.body == b"body"
    assert parse(v, SIG, b"c", b"q", b"SKEY " + e.ss(PUB)).cmd.key.der == PUB
    n = parse(v, SIG, b"c", b"q", b"NKEY " + e.ss(PUB) + e.ss(DH)).cmd
    assert n.key.der == PUB and n.dh_key == DH[12:]
    assert parse(v, SIG, b"c", b"n", b"NSUB").cmd.tag == "NSUB"
    assert parse(v, b"", b"c", b"", b"PING").cmd.tag == "PING"
    ls = parse(v, SIG, b"c", b"q", b"LSET " + e.ss(b"l" * 24) + e.large(b"f") + e.large(b"u")).cmd
    assert (ls.link_id, ls.fixed_data, ls.user_data) == (b"l" * 24, b"f", b"u")
    assert parse(v, b"", b"c", b"l", b"LGET").cmd.tag == "LGET"
    assert [k.der for k in parse(v, SIG, b"c", b"q", b"RKEY \x02" + e.ss(PUB) + e.ss(PUB)).cmd.keys] == [PUB, PUB]


@pytest.mark.parametrize("v", [6, 7, 16, 18])
def test_upstream_syntax_cases(v):
    q = b"12345678"
    assert err_of(v, b"", b"abcd", b"1234", b"HELLO") == (b"abcd", b"1234", b"CMD UNKNOWN")
    assert err_of(v, SIG, b"bcda", b"", b"NEW") == (b"bcda", b"", b"CMD SYNTAX")
    assert err_of(v, SIG, b"cdab", b"", b"NEW \x01A" + e.ss(PUB) + e.ss(DH))[2] == b"CMD SYNTAX"
    assert err_of(v, b"", b"dabc", b"", new_cmd(v)) == (b"dabc", b"", b"CMD NO_AUTH")
    assert err_of(v, SIG, b"abcd", q, new_cmd(v)) == (b"abcd", q, b"CMD HAS_AUTH")
    assert err_of(v, SIG, b"cdab", q, b"KEY")[2] == b"CMD SYNTAX"
    assert err_of(v, SIG, b"dabc", q, b"KEY \x01A" + e.ss(PUB))[2] == b"CMD SYNTAX"
    assert err_of(v, b"", b"abcd", q, b"KEY " + e.ss(PUB))[2] == b"CMD NO_AUTH"
    assert err_of(v, SIG, b"bcda", b"", b"KEY " + e.ss(PUB))[2] == b"CMD NO_AUTH"
    for tag in (b"SUB", b"OFF", b"DEL"):
        assert err_of(v, SIG, b"bcda", q, tag + b"=") == (b"bcda", q, b"CMD UNKNOWN")
        assert err_of(v, b"", b"cdab", q, tag)[2] == b"CMD NO_AUTH"
        assert err_of(v, SIG, b"dabc", b"", tag)[2] == b"CMD NO_AUTH"
        assert err_of(v, SIG, b"dabc", q, tag + b" ")[2] == b"CMD SYNTAX"
    assert err_of(v, SIG, b"abcd", q, b"SEND")[2] == b"CMD SYNTAX"
    assert err_of(v, SIG, b"bcda", b"", b"SEND F hello")[2] == b"CMD NO_ENTITY"
    assert err_of(v, SIG, b"abcd", q, b"ACK")[2] == b"CMD SYNTAX"
    assert err_of(v, SIG, b"bcda", b"", b"ACK \x041234")[2] == b"CMD NO_AUTH"
    assert err_of(v, b"", b"cdab", q, b"ACK \x041234")[2] == b"CMD NO_AUTH"
    assert err_of(v, SIG, b"bcda", q, b"OK") == (b"bcda", q, b"CMD UNKNOWN")
    assert err_of(v, SIG, b"c", b"", b"PING")[2] == b"CMD HAS_AUTH"
    assert err_of(v, b"", b"c", q, b"PING")[2] == b"CMD HAS_AUTH"
    assert err_of(v, SIG, b"c", b"l", b"LGET")[2] == b"CMD HAS_AUTH"
    assert err_of(v, b"", b"c", b"", b"LGET")[2] == b"CMD NO_ENTITY"


def test_block_and_session_errors():
    params = p.Params(6, SID)
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_transmission(params, b"\x05ab")
    assert (ei.value.corr_id, ei.value.error) == (b"", b"BLOCK")
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_transmission(params, tx(6, b"", b"c", b"", b"PING", sess=b"other"))
    assert (ei.value.corr_id, ei.value.error) == (b"c", b"SESSION")
    with pytest.raises(p.ProtocolError) as ei:
        p.parse_transmission(p.Params(18, SID), tx(18, b"x" * 10, b"c", b"q", b"SUB"))
    assert (ei.value.corr_id, ei.value.entity_id, ei.value.error) == (b"c", b"", b"BLOCK")


def test_authorized_bytes_imply_session_id():
    t = parse(7, SIG, b"c", b"q", b"SUB")
    assert t.authorized == e.ss(SID) + e.ss(b"c") + e.ss(b"q") + b"SUB"
    t = parse(6, SIG, b"c", b"q", b"SUB")
    assert t.authorized == e.ss(SID) + e.ss(b"c") + e.ss(b"q") + b"SUB"
    t = parse(18, SIG, b"c", b"q", b"SUB")  # the service slot is not covered
    assert t.authorized == e.ss(SID) + e.ss(b"c") + e.ss(b"q") + b"SUB" and t.service_sig is None
    raw = e.ss(SIG) + b"1" + e.ss(b"\x02" * 64) + e.ss(b"c") + e.ss(b"q") + b"SUB"
    assert p.parse_transmission(p.Params(16, SID), raw).service_sig == b"\x02" * 64


def test_response_encodings():
    params = p.Params(18, SID)
    assert p.encode_response(params, b"c", b"q", b"OK") == b"\x00\x01c\x01qOK"
    assert p.encode_response(p.Params(6, SID), b"c", b"", b"PONG") == b"\x00" + e.ss(SID) + b"\x01c\x00PONG"
    spki = c.x25519_spki(b"k" * 32)
    base = b"IDS " + e.ss(b"r") + e.ss(b"s") + e.ss(spki)
    assert p.ids_msg(6, b"r", b"s", spki, "M", None, None) == base
    assert p.ids_msg(9, b"r", b"s", spki, "M", None, None) == base + b"T"
    assert p.ids_msg(14, b"r", b"s", spki, "C", None, None) == base + b"F"
    assert p.ids_msg(15, b"r", b"s", spki, "M", b"L", None) == base + b"1M1\x01L"
    assert p.ids_msg(16, b"r", b"s", spki, "M", None, None) == base + b"1M00"
    assert p.ids_msg(17, b"r", b"s", spki, "M", None, (b"n", spki)) == base + b"1M001" + e.ss(b"n") + e.ss(spki)
    assert p.sok_msg(15) == b"OK" and p.sok_msg(16) == b"SOK 0"
    assert p.deld_msg(9) == b"END" and p.deld_msg(10) == b"DELD"
    assert [p.max_message_length(v) for v in (6, 8, 11)] == [16088, 16064, 16048]


def test_rcv_msg_body_sizes():
    body = p.rcv_msg_body(1641032645, True, b"hi")
    assert len(body) == 16106 and body[:2] == e.w16(8 + 2 + 2)
    assert body[2:14] == e.i64(1641032645) + b"T hi"
    q = p.rcv_msg_body(5, False, b"", quota=True)
    assert e.unpad(q) == b"QUOTA " + e.i64(5)
    # a full MSG transmission with its L() prefix is 16180 bytes at v>=7 (reference §6.9)
    msg = p.msg_msg(b"m" * 24, b"x" * (16106 + 16))
    assert len(e.large(p.encode_response(p.Params(18, SID), b"", b"r" * 24, msg))) == 16180


# -- PRXY / PFWD parameters (Protocol.hs ``PRXY <$> _smpP <*> smpP``, ``PFWD <$> _smpP <*> smpP <*> Tail``) --
KH = b"\x07" * 32
DEST = b"\x02" + e.ss(b"smp.example.com") + e.ss(b"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion")
DEST += e.ss(b"5223") + e.ss(KH)


@pytest.mark.parametrize("v", [8, 18])
def test_prxy_parses_server_and_basic_auth(v):
    assert parse(v, b"", b"c", b"", b"PRXY " + DEST + b"0").cmd.basic_auth is None
    assert parse(v, b"", b"c", b"", b"PRXY " + DEST + b"1" + e.ss(b"s3cret")).cmd.basic_auth == b"s3cret"
    # well-formed: the credential rules still apply after the parse
    assert err_of(v, SIG, b"c", b"", b"PRXY " + DEST + b"0")[2] == b"CMD HAS_AUTH"


@pytest.mark.parametrize(
    "params",
    [
        b"",  # no parameters at all
        DEST[:5],  # truncated host list
        DEST,  # Maybe BasicAuth missing
        DEST + b"0x",  # trailing byte
        DEST + b"2",  # bad Maybe tag
        b"\x00" + e.ss(b"5223") + e.ss(KH) + b"0",  # empty NonEmpty host list
        b"\x01" + e.ss(b"host:5223") + e.ss(b"5223") + e.ss(KH) + b"0",  # not a TransportHost
        DEST + b"1" + e.ss(b"pass word"),  # BasicAuth with a space
        DEST + b"1" + e.ss(b"user@pw"),  # BasicAuth with '@'
        DEST + b"1" + e.ss(b"p\x7fw"),  # BasicAuth with a control character
    ],
)
def test_malformed_prxy_is_cmd_syntax_before_credentials(params):
    # the parse comes first: even with a signature and an entity the error is CMD SYNTAX
    assert err_of(18, b"", b"c", b"", b"PRXY " + params) == (b"c", b"", b"CMD SYNTAX")
    assert err_of(18, SIG, b"c", b"q", b"PRXY " + params)[2] == b"CMD SYNTAX"


@pytest.mark.parametrize(
    "host,ok",
    [
        (b"127.0.0.1", True),
        (b"1.2.3.4.5", False),  # the IPv4 alternative wins and must reach the end
        (b"256.1.1.1", True),  # not IPv4 (256), so a domain name
        (b"[::1]", True),
        (b"::1", True),
        (b"[fe80::1]:5", False),
        (b"dead:beef", False),
        (b"abcdef234567.onion", True),
        (b"abc.onionx", False),  # the onion alternative wins and must reach the end
        (b"x.y.onion", False),  # not onion characters, and a domain must not end in .onion
        (b"smp.example.com", True),
        (b"", False),
        (b"a b", False),
        (b"a,b", False),
    ],
)
def test_transport_host_alternatives(host, ok):
    assert p.transport_host_ok(host) is ok


@pytest.mark.parametrize("v", [8, 18])
def test_pfwd_parses_version_key_and_tail(v):
    body = b"PFWD " + e.w16(17) + e.ss(DH) + b"encrypted transmission"
    cmd = parse(v, b"", b"c", b"sess", body).cmd
    assert (cmd.fwd_version, cmd.dh_key, cmd.body) == (17, DH[12:], b"encrypted transmission")
    assert parse(v, b"", b"c", b"sess", b"PFWD " + e.w16(17) + e.ss(DH)).cmd.body == b""


@pytest.mark.parametrize(
    "params",
    [b"", b"\x00", e.w16(17), e.w16(17) + DH[:20], e.w16(17) + e.ss(PUB) + b"x", e.w16(17) + e.ss(DH[:-1])],
)
def test_malformed_pfwd_is_cmd_syntax_before_credentials(params):
    assert err_of(18, b"", b"c", b"sess", b"PFWD " + params)[2] == b"CMD SYNTAX"
    assert err_of(18, b"", b"c", b"", b"PFWD " + params)[2] == b"CMD SYNTAX"  # before NO_ENTITY


@pytest.mark.parametrize("v", [6, 9, 15, 18])
def test_new_password_with_invalid_characters_is_cmd_syntax(v):
    """NEW's password is a ``BasicAuth`` too (printable, no space, '@', ':' or '/')."""
    for pw in (b"pass word", b"a:b", b"a/b", b"a@b", b"\x01"):
        assert err_of(v, SIG, b"c", b"", new_cmd(v, auth=pw))[2] == b"CMD SYNTAX"
    assert parse(v, SIG, b"c", b"", new_cmd(v, auth=b"P4ss-w0rd!")).cmd.basic_auth == b"P4ss-w0rd!"
