"""Syntax and transmission-level errors (upstream tests/ServerTests.hs ``serverSyntaxTests``,
reference §6.6/§6.8) and batching capacities (tests/CoreTests/BatchingTests.hs), against the
real ``smp-server start``.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from smprelay import client as smp

SIG = base64.b64decode(
    "e8JK+8V3fq6kOLqco/SaKlpNaQ7i1gfOrXoqekEl42u4mF8Bgu14T5j0189CGcUhJHw2RwCMvON+qbvQ9ecJAA=="
)
PK = smp.ss(base64.b64decode("MCowBQYDK2VwAyEAfAOflyvbJv1fszgzkQ6buiZJVgSpQWsucXq7U6zjMgY="))
DH = smp.ss(base64.b64decode("MCowBQYDK2VuAyEAriy+HcARIhqsgSjVnjKqoft+y6pxrxdY68zn4+LjYhQ="))
NEW_TAIL = b"0S1M00"  # no basic auth, subscribe, Just (QRMessaging Nothing), no ntf creds (v18)
Q = b"12345678"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def no_params(cmd: bytes):
    return [
        (SIG, Q, cmd, "ERR AUTH"),
        (SIG, Q, cmd + b"=", "ERR CMD UNKNOWN"),  # wrong terminator
        (b"", Q, cmd, "ERR CMD NO_AUTH"),
        (SIG, b"", cmd, "ERR CMD NO_AUTH"),
    ]


# (authorization, entity id, command bytes, expected response); entity and corrId are echoed
CASES = [
    (b"", b"1234", b"HELLO", "ERR CMD UNKNOWN"),
    (SIG, b"", b"NEW", "ERR CMD SYNTAX"),
    (SIG, b"", b"NEW \x01A" + PK + DH, "ERR CMD SYNTAX"),
    (SIG, Q, b"KEY " + PK, "ERR AUTH"),
    (SIG, Q, b"KEY", "ERR CMD SYNTAX"),
    (SIG, Q, b"KEY \x01A" + PK, "ERR CMD SYNTAX"),
    (b"", Q, b"KEY " + PK, "ERR CMD NO_AUTH"),
    (SIG, b"", b"KEY " + PK, "ERR CMD NO_AUTH"),
    *no_params(b"SUB"),
    *no_params(b"OFF"),
    *no_params(b"DEL"),
    (SIG, Q, b"SEND F hello", "ERR AUTH"),
    (SIG, Q, b"SEND", "ERR CMD SYNTAX"),
    (SIG, b"", b"SEND F hello", "ERR CMD NO_ENTITY"),
    (SIG, Q, b"ACK \x041234", "ERR AUTH"),
    (SIG, Q, b"ACK", "ERR CMD SYNTAX"),
    (SIG, b"", b"ACK \x041234", "ERR CMD NO_AUTH"),
    (b"", Q, b"ACK \x041234", "ERR CMD NO_AUTH"),
    (b"", b"", b"PING", "PONG"),
    (SIG, Q, b"OK", "ERR CMD UNKNOWN"),  # broker responses are not commands
    # credential rules of checkCredentials (§6.6)
    (SIG, b"", b"PING", "ERR CMD HAS_AUTH"),
    (b"", Q, b"PING", "ERR CMD HAS_AUTH"),
    (b"", Q, b"SEND F unsecured to nowhere", "ERR AUTH"),
    (SIG, Q, b"GET", "ERR AUTH"),
    (b"", Q, b"GET", "ERR CMD NO_AUTH"),
    (SIG, Q, b"NSUB", "ERR AUTH"),
    (b"", Q, b"NSUB", "ERR CMD NO_AUTH"),
    (SIG, Q, b"SKEY " + PK, "ERR AUTH"),
    (SIG, Q, b"SKEY", "ERR CMD SYNTAX"),
]
V18_ONLY = [
    (b"", b"", b"NEW " + PK + DH + NEW_TAIL, "ERR CMD NO_AUTH"),
    (SIG, Q, b"NEW " + PK + DH + NEW_TAIL, "ERR CMD HAS_AUTH"),
    (SIG, Q, b"LGET", "ERR CMD HAS_AUTH"),
    (b"", b"", b"LGET", "ERR CMD NO_ENTITY"),
    (b"", Q, b"LGET", "ERR AUTH"),
    (SIG, Q, b"LSET \x04link\x00\x01f\x00\x01u", "ERR AUTH"),
    (SIG, Q, b"LKEY " + PK, "ERR AUTH"),
]


@pytest.mark.parametrize("version", [6, 18])
def test_server_syntax_errors(relay, version):
    cases = CASES + (V18_ONLY if version == 18 else [])

    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            for i, (auth, ent, cmd, want) in enumerate(cases):
                corr = b"abcd%03d" % i
                _, t = c.transmission(ent, cmd, corr_id=corr, auth=auth)
                fut = c.expect(corr)
                await c.send_transmissions([t])
                r = await c.wait(fut)
                assert (r.command.decode(), r.entity_id) == (want, ent), (auth[:1], ent, cmd[:12])
            await c.ping()

    run(scenario())


def test_all_cases_in_one_block(relay):
    """The same transmissions batched into one block get the same answers."""

    async def scenario():
        async with await smp.connect(relay.address) as c:
            cases = CASES + V18_ONLY
            pairs = [c.transmission(ent, cmd, auth=auth) for auth, ent, cmd, _ in cases]
            futs = [c.expect(corr) for corr, _ in pairs]
            await c.send_transmissions([t for _, t in pairs])
            got = [(await c.wait(f)).command.decode() for f in futs]
            assert got == [want for *_, want in cases]

    run(scenario())


def test_authorization_of_impossible_length_is_block_error(relay):
    async def scenario():
        async with await smp.connect(relay.address) as c:
            for n in (1, 63, 65, 100, 255):
                corr = os.urandom(24)
                _, t = c.transmission(Q, b"SUB", corr_id=corr, auth=os.urandom(n))
                fut = c.expect(corr)
                await c.send_transmissions([t])
                r = await c.wait(fut)
                assert (r.command, r.entity_id) == (b"ERR BLOCK", b"")
            await c.ping()

    run(scenario())


def test_v6_wrong_session_id_is_session_error(relay):
    async def scenario():
        async with await smp.connect(relay.address, version=6) as c:
            corr = os.urandom(24)
            t = smp.encode_transmission(6, os.urandom(32), corr, b"", b"PING")
            fut = c.expect(corr)
            await c.send_transmissions([t])
            r = await c.wait(fut)
            assert (r.command, r.entity_id) == (b"ERR SESSION", b"")
            await c.ping()

    run(scenario())


@pytest.mark.parametrize("version", [7, 18])
def test_signature_over_wrong_session_is_auth_error(relay, version):
    """From v7 the session id is implied: a signature made for another session does not verify."""

    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            q = await c.create_queue(subscribe=False)
            corr = os.urandom(24)
            t = smp.encode_transmission(version, os.urandom(32), corr, q.rcv_id, b"GET", q.rcv_key, c.server_key)
            fut = c.expect(corr)
            await c.send_transmissions([t])
            assert (await c.wait(fut)).command == b"ERR AUTH"
            assert await c.get(q) is None  # the right signature works

    run(scenario())


def test_unparsable_transmission_is_block_error_with_empty_corr_id(relay):
    async def scenario():
        async with await smp.connect(relay.address) as c:
            # truncated: the corrId length says 24, only 3 bytes follow
            await c.send_block_plain(smp.encode_batch([b"\x00\x18abc"]))
            ev = await c.next_event(5)
            assert (ev.corr_id, ev.entity_id, ev.command) == (b"", b"", b"ERR BLOCK")
            await c.ping()

    run(scenario())


@pytest.mark.parametrize("version,n", [(18, 135), (16, 135), (7, 136), (6, 106)])
def test_batch_capacity_signed_subs(relay, version, n):
    """BatchingTests: 135 Ed25519-signed SUBs fit one block at v18, 106 at v6; all are answered."""

    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            key = smp.AuthKey.generate()
            pairs = [c.transmission(os.urandom(24), b"SUB", key) for _ in range(n)]
            assert smp.batch_capacity(len(pairs[0][1])) == n
            with pytest.raises(ValueError):
                smp.encode_batch([t for _, t in pairs] + [pairs[0][1]])
            futs = [c.expect(corr) for corr, _ in pairs]
            await c.send_transmissions([t for _, t in pairs])
            rs = [await c.wait(f) for f in futs]
            assert [r.command for r in rs] == [b"ERR AUTH"] * n
            assert [r.entity_id for r in rs] == [_entity(t, version) for _, t in pairs]

    run(scenario())


def _entity(t: bytes, version: int) -> bytes:
    r = smp.Reader(t)
    if r.ss() and version >= 16:
        r.take(1)
    if version < 7:
        r.ss()
    r.ss()
    return r.ss()


def test_255_transmissions_per_block(relay):
    async def scenario():
        async with await smp.connect(relay.address) as c:
            pairs = [c.transmission(b"", b"PING") for _ in range(255)]
            futs = [c.expect(corr) for corr, _ in pairs]
            await c.send_transmissions([t for _, t in pairs])
            assert [(await c.wait(f)).command for f in futs] == [b"PONG"] * 255
            with pytest.raises(ValueError, match="1..255"):
                smp.encode_batch([pairs[0][1]] * 256)

    run(scenario())


def test_real_subs_batched_deliver_pending_messages(relay):
    """A batch of SUBs for real queues with pending messages: every queue's MSG arrives."""

    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            qs = [await rc.create_queue(subscribe=False) for _ in range(20)]
            await sc.request_batch([(q.snd_id, b"SEND F for " + q.rcv_id.hex().encode(), None) for q in qs])
            async with await smp.connect(relay.address) as rc2:
                rs = await rc2.request_batch([(q.rcv_id, b"SUB", q.rcv_key) for q in qs])
                assert {r.tag for r in rs} == {"SOK"}
                by_id = {q.rcv_id: q for q in qs}
                seen = set()
                for _ in qs:
                    ev = await rc2.next_event(10)
                    assert ev.tag == "MSG"
                    m = rc2.decrypt(by_id[ev.entity_id], ev)
                    assert m.body == b"for " + ev.entity_id.hex().encode()
                    seen.add(ev.entity_id)
                assert seen == set(by_id)

    run(scenario())


def test_prxy_without_the_create_password_is_proxy_basic_auth(relay):
    """PRXY (become my sending proxy) needs the server's create password (§6.11): without it, or
    with a wrong one, upstream answers ERR PROXY BASIC_AUTH."""
    a = smp.parse_address(relay.address)
    dest = b"\x01" + smp.ss(b"127.0.0.1") + smp.ss(b"5223") + smp.ss(a.key_hash)  # NE(host) port keyHash

    async def scenario():
        async with await smp.connect(relay.address) as c:
            for auth in (b"0", b"1" + smp.ss(b"wrong-password")):
                r = await c.request(b"", b"PRXY " + dest + auth)
                assert r.command == b"ERR PROXY BASIC_AUTH"
            r = await c.request(b"", b"PRXY " + dest[:5])
            assert r.command == b"ERR CMD SYNTAX"

    run(scenario())


def test_pfwd_to_unknown_session(relay):
    """PFWD for a proxied session this relay does not have: ERR PROXY NO_SESSION; malformed
    parameters are CMD SYNTAX; PFWD needs an entity (the session id) and no authorization."""
    body = b"PFWD " + smp.w16(17) + smp.ss(smp.spki("x25519", os.urandom(32))) + os.urandom(300)

    async def scenario():
        async with await smp.connect(relay.address) as c:
            assert (await c.request(os.urandom(32), body)).command == b"ERR PROXY NO_SESSION"
            assert (await c.request(os.urandom(32), b"PFWD \x00")).command == b"ERR CMD SYNTAX"
            assert (await c.request(b"", body)).command == b"ERR CMD NO_ENTITY"
            corr, t = c.transmission(os.urandom(32), body, auth=SIG)
            fut = c.expect(corr)
            await c.send_transmissions([t])
            assert (await c.wait(fut)).command == b"ERR CMD HAS_AUTH"

    run(scenario())
