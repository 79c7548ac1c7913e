"""Private message routing, destination side (RFWD/RRES, reference §6.11): this client plays the
proxy (hello with ``proxyServer = T``, so no block encryption) and forwards a sender's commands
to the real ``smp-server start``; only SEND, SKEY, LKEY and LGET may be forwarded."""

from __future__ import annotations

import asyncio
import os

import pytest

from smprelay import client as smp


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("fwd_version", [8, 12, 17])
def test_forwarded_skey_and_send_reach_recipient(relay, fwd_version):
    async def scenario():
        async with await smp.connect(relay.address) as rc, \
                await smp.connect(relay.address, proxy_server=True) as px:
            assert px._snd is None and px.sess_secret is not None  # proxies get no block encryption
            q = await rc.create_queue()
            sk = smp.AuthKey.generate()
            if fwd_version >= 9:
                r = await px.forward(fwd_version, q.snd_id, b"SKEY " + smp.ss(sk.public_der), sk)
            else:
                await rc.secure(q, sk)
                r = smp.Response(b"", b"", b"OK")
            assert r.command == b"OK"
            r = await px.forward(fwd_version, q.snd_id, b"SEND F via proxy", sk)
            assert (r.command, r.entity_id) == (b"OK", q.snd_id)
            assert (await rc.receive(q)).body == b"via proxy"
            r = await px.forward(fwd_version, q.snd_id, b"SEND F unsigned")
            assert r.command == b"ERR AUTH"

    run(scenario())


def test_forwarded_x25519_authenticator_and_links(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, \
                await smp.connect(relay.address, proxy_server=True) as px:
            q = await rc.create_queue()
            xk = smp.AuthKey.generate("x25519")  # authenticator with the destination's session key
            assert (await px.forward(17, q.snd_id, b"SKEY " + smp.ss(xk.public_der), xk)).command == b"OK"
            assert (await px.forward(17, q.snd_id, b"SEND F x", xk)).command == b"OK"
            assert (await rc.receive(q)).body == b"x"
            link_id = os.urandom(24)
            cq = await rc.create_queue(mode="C", link_data=(b"fx", b"ud"), contact_link_id=link_id)
            r = await px.forward(17, link_id, b"LGET")
            assert r.tag == "LNK" and smp.Reader(r.args).ss() == cq.snd_id

    run(scenario())


def test_forwarding_refuses_other_commands_and_garbage(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, \
                await smp.connect(relay.address, proxy_server=True) as px:
            q = await rc.create_queue()
            for cmd, key in ((b"SUB", q.rcv_key), (b"GET", q.rcv_key), (b"PING", None)):
                r = await px.forward(17, q.rcv_id if key else b"", cmd, key)
                assert r.command == b"ERR CMD PROHIBITED", cmd
            # an RFWD that does not decrypt with the session secret
            r = await px.request(b"", b"RFWD " + os.urandom(200))
            assert r.command == b"ERR CRYPTO"
            await px.ping()

    run(scenario())
