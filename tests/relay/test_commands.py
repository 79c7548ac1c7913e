"""Command semantics at the unit level (no sockets): private-routing RFWD on the destination
side, batch execution order, quota marker. The scenario tests drive the real server."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from smprelay import commands
from smprelay import crypto as c
from smprelay import encoding as e
from smprelay import protocol as p
from smprelay.env import ProtocolSettings, ServerEnv
from smprelay.queue_store import QueueStore
from smprelay.transport import parse_batch

SID = os.urandom(32)
V = 18


def ed_pub(k):
    return c.SPKI_PREFIX["ed25519"] + c.public_raw(k)


def tx(key, corr, ent, cmd, v=V, sid=SID):
    body = e.ss(corr) + e.ss(ent) + cmd
    auth = key.sign(e.ss(sid) + body) if key else b""
    return e.ss(auth) + (b"0" if key and v >= 16 else b"") + body


def parse_resp(t):
    pr = e.Parser(t)
    assert pr.ss() == b""
    return pr.ss(), pr.ss(), pr.tail()


@pytest.fixture
def env():
    return ServerEnv(QueueStore(), ProtocolSettings(msg_queue_quota=3), None, [], b"k" * 32, None)


def mk_client(out, v=V):
    sk, pk = c.x25519_keypair()
    cl = commands.Client(p.Params(v, SID), sk, out.extend)
    return cl, pk


def new_queue(env, client, out, rk):
    _, dpk = c.x25519_keypair()
    cmd = b"NEW " + e.ss(ed_pub(rk)) + e.ss(c.x25519_spki(dpk)) + b"0C1M00"
    commands.process_block(env, client, [tx(rk, b"n" * 24, b"", cmd)])
    _, _, ids = parse_resp(out.pop())
    ip = e.Parser(ids[4:])
    return ip.ss(), ip.ss()


def test_rfwd_send_through_proxy(env):
    out: list[bytes] = []
    owner, _ = mk_client(out)
    rk = ed25519.Ed25519PrivateKey.generate()
    rid, sid = new_queue(env, owner, out, rk)
    # the proxy's connection: its handshake DH gives the session secret
    proxy, srv_pk = mk_client(out)
    proxy_sk, proxy_pk = c.x25519_keypair()
    proxy.sess_secret = c.x25519(proxy.server_dh_sk, proxy_pk)
    # the end client encrypts its SEND to the destination's handshake key
    cli_sk, cli_pk = c.x25519_keypair()
    client_secret = c.x25519(cli_sk, srv_pk)
    fwd_corr = os.urandom(24)
    inner = bytes((1,)) + e.large(tx(None, b"i" * 24, sid, b"SEND F forwarded"))
    et = c.cb_encrypt(client_secret, fwd_corr, e.pad(inner, 16226))
    fwd = e.ss(fwd_corr) + e.w16(V) + e.ss(c.x25519_spki(cli_pk)) + et
    corr = os.urandom(24)
    enc = c.cb_encrypt(c.x25519(proxy_sk, srv_pk), corr, fwd)
    commands.process_block(env, proxy, [tx(None, corr, b"", b"RFWD " + enc)])
    rc, ent, msg = parse_resp(out.pop())
    assert rc == corr and ent == b"" and msg.startswith(b"RRES ")
    r3 = c.cb_decrypt(c.x25519(proxy_sk, srv_pk), corr[::-1], msg[5:])
    rp = e.Parser(r3)
    assert rp.ss() == fwd_corr
    reply = e.unpad(c.cb_decrypt(client_secret, fwd_corr[::-1], rp.tail()))
    assert len(rp.buf) - 25 == 16 + 16226
    assert parse_resp(parse_batch(reply)[0]) == (b"i" * 24, sid, b"OK")
    assert env.store.messages[rid][0].body == b"forwarded"


def test_rfwd_refuses_recipient_commands_and_bad_crypto(env):
    out: list[bytes] = []
    proxy, srv_pk = mk_client(out)
    proxy.sess_secret = None
    commands.process_block(env, proxy, [tx(None, b"c" * 24, b"", b"RFWD xyz")])
    assert parse_resp(out.pop())[2] == b"ERR PROXY BROKER TRANSPORT NO_AUTH"
    proxy_sk, proxy_pk = c.x25519_keypair()
    proxy.sess_secret = c.x25519(proxy.server_dh_sk, proxy_pk)
    commands.process_block(env, proxy, [tx(None, b"c" * 24, b"", b"RFWD " + os.urandom(100))])
    assert parse_resp(out.pop())[2] == b"ERR CRYPTO"
    cli_sk, cli_pk = c.x25519_keypair()
    fwd_corr = os.urandom(24)
    rk = ed25519.Ed25519PrivateKey.generate()
    inner = bytes((1,)) + e.large(tx(rk, b"i" * 24, b"q" * 24, b"SUB"))
    et = c.cb_encrypt(c.x25519(cli_sk, srv_pk), fwd_corr, e.pad(inner, 16226))
    fwd = e.ss(fwd_corr) + e.w16(V) + e.ss(c.x25519_spki(cli_pk)) + et
    corr = os.urandom(24)
    commands.process_block(env, proxy, [tx(None, corr, b"", b"RFWD " + c.cb_encrypt(proxy.sess_secret, corr, fwd))])
    _, _, msg = parse_resp(out.pop())
    r3 = e.Parser(c.cb_decrypt(proxy.sess_secret, corr[::-1], msg[5:]))
    r3.ss()
    reply = e.unpad(c.cb_decrypt(c.x25519(cli_sk, srv_pk), fwd_corr[::-1], r3.tail()))
    assert parse_resp(parse_batch(reply)[0])[2] == b"ERR CMD PROHIBITED"


def test_sends_in_one_block_are_stored_in_reverse_and_answered_in_order(env):
    out: list[bytes] = []
    owner, _ = mk_client(out)
    rk = ed25519.Ed25519PrivateKey.generate()
    rid, sid = new_queue(env, owner, out, rk)
    commands.process_block(env, owner, [tx(rk, b"s" * 24, rid, b"SUB")])
    out.clear()
    sender, _ = mk_client(out)
    ts = [tx(None, b"%d" % i * 24, sid, b"SEND F m%d" % i) for i in range(3)]
    commands.process_block(env, sender, ts)
    # the owner is subscribed: the first stored message (the last SEND) is pushed first
    pushed = [parse_resp(t) for t in out if parse_resp(t)[2].startswith(b"MSG")]
    oks = [parse_resp(t)[0][:1] for t in out if parse_resp(t)[2] == b"OK"]
    assert oks == [b"0", b"1", b"2"] and len(pushed) == 1
    assert [m.body for m in env.store.messages[rid]] == [b"m2", b"m1", b"m0"]


def test_quota_marker_and_recovery(env):
    out: list[bytes] = []
    owner, _ = mk_client(out)
    rk = ed25519.Ed25519PrivateKey.generate()
    rid, sid = new_queue(env, owner, out, rk)
    sender, _ = mk_client(out)
    results = []
    for i in range(5):
        commands.process_block(env, sender, [tx(None, b"c" * 24, sid, b"SEND F x")])
        results.append(parse_resp(out.pop())[2])
    assert results == [b"OK", b"OK", b"OK", b"ERR QUOTA", b"ERR QUOTA"]
    msgs = env.store.messages[rid]
    assert len(msgs) == 4 and msgs[-1].quota
    # drain everything, then sending works again
    out.clear()
    commands.process_block(env, owner, [tx(rk, b"s" * 24, rid, b"SUB")])
    for _ in range(4):
        head = env.store.messages[rid][0].msg_id
        commands.process_block(env, owner, [tx(rk, b"a" * 24, rid, b"ACK " + e.ss(head))])
    assert rid not in env.store.messages
    commands.process_block(env, sender, [tx(None, b"c" * 24, sid, b"SEND F again")])
    assert parse_resp(out[-1])[2] == b"OK"


def test_blocked_error_per_version():
    st = 'blocked,reason=content,notice={"ttl":3600}'
    assert commands.blocked_error(11, st) == b"AUTH"
    assert commands.blocked_error(12, st) == b"BLOCKED reason=content"
    assert commands.blocked_error(18, st) == b'BLOCKED reason=content,notice={"ttl":3600}'


def test_blocked_queue_refuses_send_and_sub(env):
    out: list[bytes] = []
    owner, _ = mk_client(out)
    rk = ed25519.Ed25519PrivateKey.generate()
    rid, sid = new_queue(env, owner, out, rk)
    env.store.get_recipient(rid).status = "blocked,reason=spam"
    commands.process_block(env, owner, [tx(None, b"c" * 24, sid, b"SEND F x"), tx(rk, b"d" * 24, rid, b"SUB")])
    assert [parse_resp(t)[2] for t in out] == [b"ERR BLOCKED reason=spam", b"ERR BLOCKED reason=spam"]


def test_que_info_json(env):
    import base64
    import json

    out: list[bytes] = []
    owner, _ = mk_client(out)
    rk = ed25519.Ed25519PrivateKey.generate()
    rid, sid = new_queue(env, owner, out, rk)
    commands.process_block(env, owner, [tx(rk, b"q" * 24, rid, b"QUE")])
    assert json.loads(parse_resp(out.pop())[2][5:]) == {"qiSnd": False, "qiNtf": False, "qiSize": 0}
    commands.process_block(env, owner, [tx(None, b"c" * 24, sid, b"SEND F x")])
    commands.process_block(env, owner, [tx(rk, b"s" * 24, rid, b"SUB")])
    out.clear()
    commands.process_block(env, owner, [tx(rk, b"q" * 24, rid, b"QUE")])
    info = json.loads(parse_resp(out.pop())[2][5:])
    m = env.store.messages[rid][0]
    b64 = base64.b64encode(m.msg_id).decode()
    assert list(info) == ["qiSnd", "qiNtf", "qiSub", "qiSize", "qiMsg"]
    assert info["qiSub"] == {"qSubThread": "noSub", "qDelivered": b64}
    assert info["qiMsg"]["msgId"] == b64 and info["qiMsg"]["msgType"] == "message"
    assert info["qiMsg"]["msgTs"].endswith("Z")


# -- how a session packs what commands send (upstream Server.hs send/sendMsg/pendingEvents) ----------
async def _session_client(env):
    """A protocol client on the real session edge, writing plain blocks to one end of a socket pair."""
    import asyncio
    import socket

    from smprelay import session
    from smprelay.transport import BlockCodec

    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    _, writer = await asyncio.open_connection(sock=ours)
    sk, _ = c.x25519_keypair()
    cl = session._make_client(env, writer, BlockCodec(), p.Params(V, SID), sk)
    return cl, writer, theirs


async def _read_layout(sock, n_blocks):
    """The tags of the transmissions in each block received, e.g. [["SOK", "SOK"], ["MSG"]]."""
    import asyncio

    from smprelay.transport import BLOCK_SIZE, BlockCodec

    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < n_blocks * BLOCK_SIZE:
        data += await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5)
    await asyncio.sleep(0.05)
    try:
        data += sock.recv(1 << 16)  # nothing more may follow
    except BlockingIOError:
        pass
    assert len(data) == n_blocks * BLOCK_SIZE
    codec = BlockCodec()
    blocks = [parse_batch(codec.decode(data[i : i + BLOCK_SIZE])) for i in range(0, len(data), BLOCK_SIZE)]
    return [[parse_resp(t)[2].split(b" ")[0].decode() for t in b] for b in blocks]


def _queues_with_a_message(env, n):
    out: list[bytes] = []
    owner, _ = mk_client(out)
    qs = []
    for _ in range(n):
        rk = ed25519.Ed25519PrivateKey.generate()
        rid, sid = new_queue(env, owner, out, rk)
        commands.process_block(env, owner, [tx(None, b"c" * 24, sid, b"SEND F pending")])
        qs.append((rid, rk))
    return qs


@pytest.mark.parametrize(
    "n_subs,layout",
    [
        # > 4 responses: all SOKs in one tPut, then every MSG in its own (sendTransmissions + sendMsg)
        (5, [["SOK"] * 5] + [["MSG"]] * 5),
        # <= 4: tSend (ts <> [msg]) folds from the right, so the first MSG takes the last 3 SOKs
        (4, [["SOK"], ["SOK", "SOK", "SOK", "MSG"]] + [["MSG"]] * 3),
        (1, [["SOK", "MSG"]]),
    ],
)
def test_msg_packing_after_subs_follows_upstream_send(env, n_subs, layout):
    import asyncio

    async def scenario():
        qs = _queues_with_a_message(env, n_subs)
        cl, writer, theirs = await _session_client(env)
        try:
            commands.process_block(env, cl, [tx(rk, b"s%d" % i * 8, rid, b"SUB") for i, (rid, rk) in enumerate(qs)])
            assert await _read_layout(theirs, len(layout)) == layout
        finally:
            writer.close()
            theirs.close()

    asyncio.run(scenario())


def test_separate_sends_never_share_a_block_but_share_a_write(env):
    import asyncio

    async def scenario():
        cl, writer, theirs = await _session_client(env)
        try:
            for i in range(3):  # three blocks of PINGs processed in one loop turn
                commands.process_block(env, cl, [tx(None, b"p%d" % i * 8, b"", b"PING")])
            assert await _read_layout(theirs, 3) == [["PONG"]] * 3
        finally:
            writer.close()
            theirs.close()

    asyncio.run(scenario())


def test_ends_of_one_resubscription_go_together_in_upstream_order(env):
    """Upstream ``endPreviousSubscriptions`` prepends each END to the old connection's pending
    events and sends them in one tPut; the SUBs run last-first, so the ENDs come out in the
    order of the SUBs."""
    import asyncio

    async def scenario():
        qs = _queues_with_a_message(env, 3)
        old, writer, theirs = await _session_client(env)
        try:
            for rid, rk in qs:
                commands.process_block(env, old, [tx(rk, b"o" * 24, rid, b"SUB")])
            await _read_layout(theirs, 3)  # SOK+MSG each
            out: list[bytes] = []
            new, _ = mk_client(out)
            commands.process_block(env, new, [tx(rk, b"n" * 24, rid, b"SUB") for rid, rk in qs])
            loop = asyncio.get_running_loop()
            data = b""
            while len(data) < 16384:
                data += await asyncio.wait_for(loop.sock_recv(theirs, 1 << 16), 5)
            ends = [parse_resp(t) for t in parse_batch(e.unpad(data[:16384]))]
            assert len(data) == 16384
            assert [(ent, msg) for _, ent, msg in ends] == [(rid, b"END") for rid, _ in qs]
        finally:
            writer.close()
            theirs.close()

    asyncio.run(scenario())
