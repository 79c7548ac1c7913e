"""Queue and message scenarios against the real ``smp-server start``, modelled on upstream
tests/ServerTests.hs: life cycle through KEY and SKEY, duplex, 100 messages, GET, quota, OFF,
DEL/DELD, END, size limits, create password, notifications, short links, batch order.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from smprelay import client as smp


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def err(e: pytest.ExceptionInfo) -> str:
    return e.value.error


@pytest.mark.parametrize("alg", ["ed25519", "ed448", "x25519"])
def test_create_and_secure_queue_with_key(relay, alg):
    """ServerTests "should create and secure queue": confirmation unsigned, then KEY, then signed."""

    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue(auth_alg=alg)
            assert len(q.rcv_id) == len(q.snd_id) == 24 and q.rcv_id != q.snd_id
            await sc.send(q.snd_id, b"confirmation")  # unsecured queue: unsigned SEND accepted
            m = await rc.receive(q)
            assert m.body == b"confirmation"
            sk = smp.AuthKey.generate(alg)
            await rc.secure(q, sk)
            await rc.secure(q, sk)  # same key again: OK (idempotent)
            with pytest.raises(smp.ServerError) as e:
                await rc.secure(q, smp.AuthKey.generate(alg))
            assert err(e) == "AUTH"
            with pytest.raises(smp.ServerError) as e:
                await sc.send(q.snd_id, b"unsigned")
            assert err(e) == "AUTH"
            with pytest.raises(smp.ServerError) as e:
                await sc.send(q.snd_id, b"wrong key", smp.AuthKey.generate(alg))
            assert err(e) == "AUTH"
            await sc.send(q.snd_id, b"hello", sk)
            m2 = await rc.ack(q, m.msg_id)  # ACK answers with the next message
            assert m2 is not None and m2.body == b"hello"
            assert await rc.ack(q, m2.msg_id) is None
            # recipient key is checked: another key cannot SUB/ACK/DEL
            stranger = smp.Queue(q.rcv_id, q.snd_id, smp.AuthKey.generate(alg), q.dh_secret, q.server_dh_pub)
            for call in (sc.subscribe, sc.delete, sc.off):
                with pytest.raises(smp.ServerError) as e:
                    await call(stranger)
                assert err(e) == "AUTH"

    run(scenario())


def test_sender_secures_queue_with_skey(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue()
            assert q.queue_mode == "M"
            sk = smp.AuthKey.generate()
            await sc.secure_by_sender(q.snd_id, sk)
            await sc.secure_by_sender(q.snd_id, sk)  # idempotent
            with pytest.raises(smp.ServerError) as e:
                await sc.secure_by_sender(q.snd_id, smp.AuthKey.generate())
            assert err(e) == "AUTH"
            with pytest.raises(smp.ServerError) as e:
                await sc.send(q.snd_id, b"unsigned")
            assert err(e) == "AUTH"
            await sc.send(q.snd_id, b"secured", sk)
            assert (await rc.receive(q)).body == b"secured"
            # a contact queue cannot be secured by the sender
            cq = await rc.create_queue(mode="C")
            assert cq.queue_mode == "C"
            with pytest.raises(smp.ServerError) as e:
                await sc.secure_by_sender(cq.snd_id, sk)
            assert err(e) == "AUTH"

    run(scenario())


def test_duplex_between_two_connections(relay):
    """Two parties, each with a receiving queue on its own connection, talk both ways."""

    async def scenario():
        async with await smp.connect(relay.address) as alice, await smp.connect(relay.address) as bob:
            qa = await alice.create_queue()
            qb = await bob.create_queue()
            ka, kb = smp.AuthKey.generate(), smp.AuthKey.generate("ed448")
            await bob.secure_by_sender(qa.snd_id, kb)  # bob sends to alice
            await alice.secure_by_sender(qb.snd_id, ka)
            for i in range(5):
                await bob.send(qa.snd_id, b"to alice %d" % i, kb)
                m = await alice.receive(qa)
                assert m.body == b"to alice %d" % i
                assert await alice.ack(qa, m.msg_id) is None
                await alice.send(qb.snd_id, b"to bob %d" % i, ka)
                m = await bob.receive(qb)
                assert m.body == b"to bob %d" % i
                assert await bob.ack(qb, m.msg_id) is None

    run(scenario())


def test_100_messages_in_order_and_intact(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue()
            sk = smp.AuthKey.generate()
            await sc.secure_by_sender(q.snd_id, sk)
            bodies = [os.urandom(1 + i * 150) for i in range(100)]
            for b in bodies:
                await sc.send(q.snd_id, b, sk)
            got, ids = [], set()
            m = await rc.receive(q)
            while m is not None:
                got.append(m.body)
                ids.add(m.msg_id)
                m = await rc.ack(q, m.msg_id)
            assert got == bodies
            assert len(ids) == 100

    run(scenario())


def test_get_and_sub_exclusive(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue(subscribe=False)
            assert await rc.get(q) is None  # empty: OK
            await sc.send(q.snd_id, b"one")
            await sc.send(q.snd_id, b"two")
            m = await rc.get(q)
            assert m.body == b"one"
            assert (await rc.get(q)).msg_id == m.msg_id  # not yet acknowledged: same message
            with pytest.raises(smp.ServerError) as e:
                await rc.ack(q, os.urandom(24))
            assert err(e) == "NO_MSG"
            assert await rc.ack(q, m.msg_id) is None  # ACK after GET answers OK, not MSG
            assert (await rc.get(q)).body == b"two"
            with pytest.raises(smp.ServerError) as e:
                await rc.subscribe(q)  # GET then SUB on one connection
            assert err(e) == "CMD PROHIBITED"
            q2 = await rc.create_queue()  # subscribed at creation
            with pytest.raises(smp.ServerError) as e:
                await rc.get(q2)
            assert err(e) == "CMD PROHIBITED"

    run(scenario())


def test_quota_then_marker_then_sending_again(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue(subscribe=False)
            sent = 0
            while True:
                try:
                    await sc.send(q.snd_id, b"m%d" % sent)
                    sent += 1
                except smp.ServerError as e:
                    assert e.error == "QUOTA"
                    break
                assert sent <= 1000, "no quota"
            assert sent == 128  # defaultMsgQueueQuota
            with pytest.raises(smp.ServerError) as e:
                await sc.send(q.snd_id, b"still full")
            assert err(e) == "QUOTA"
            got = []
            while (m := await rc.get(q)) is not None:
                got.append(m)
                await rc.ack(q, m.msg_id)
            assert [m.body for m in got[:-1]] == [b"m%d" % i for i in range(128)]
            assert got[-1].quota and got[-1].body == b""
            await sc.send(q.snd_id, b"after drain")
            assert (await rc.get(q)).body == b"after drain"

    run(scenario())


def test_off_stops_senders(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue(subscribe=False)
            await sc.send(q.snd_id, b"before")
            await rc.off(q)
            await rc.off(q)  # idempotent
            with pytest.raises(smp.ServerError) as e:
                await sc.send(q.snd_id, b"after")
            assert err(e) == "AUTH"
            assert (await rc.get(q)).body == b"before"  # recipient still reads what is there

    run(scenario())


@pytest.mark.parametrize("version,event", [(18, "DELD"), (10, "DELD"), (9, "END")])
def test_delete_sends_deld_to_subscriber(relay, version, event):
    async def scenario():
        async with await smp.connect(relay.address, version=version) as sub, await smp.connect(relay.address) as other:
            q = await sub.create_queue()  # subscribed on `sub`
            await other.delete(q)  # same recipient key, other connection
            ev = await sub.next_event(5)
            assert (ev.tag, ev.entity_id, ev.corr_id) == (event, q.rcv_id, b"")
            for call in (other.subscribe, other.delete):
                with pytest.raises(smp.ServerError) as e:
                    await call(q)
                assert err(e) == "AUTH"
            with pytest.raises(smp.ServerError) as e:
                await other.send(q.snd_id, b"x")
            assert err(e) == "AUTH"

    run(scenario())


def test_end_when_another_connection_subscribes(relay):
    async def scenario():
        async with await smp.connect(relay.address) as a, await smp.connect(relay.address) as b:
            q = await a.create_queue()
            await b.subscribe(q)
            ev = await a.next_event(20)  # upstream flushes END within 15 s
            assert (ev.tag, ev.entity_id) == ("END", q.rcv_id)
            await a.send(q.snd_id, b"goes to b")
            assert (await b.receive(q)).body == b"goes to b"
            with pytest.raises(smp.SMPTimeout):
                await a.next_event(0.5)

    run(scenario())


def test_repeated_sub_redelivers_unacknowledged(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue()
            await sc.send(q.snd_id, b"once")
            m = await rc.receive(q)
            await rc.subscribe(q)
            again = await rc.receive(q)
            assert (again.msg_id, again.body) == (m.msg_id, b"once")

    run(scenario())


@pytest.mark.parametrize("version,limit", [(18, 16048), (11, 16048), (10, 16064), (6, 16088)])
def test_largest_message_fits_and_one_more_byte_does_not(relay, version, limit):
    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            q = await c.create_queue()
            big = os.urandom(limit)
            await c.send(q.snd_id, big)
            m = await c.receive(q)
            assert m.body == big
            await c.ack(q, m.msg_id)
            with pytest.raises(smp.ServerError) as e:
                await c.send(q.snd_id, big + b"x")
            assert err(e) == "LARGE_MSG"
            # a message that does not fit a block at all is refused by the client (TELargeMsg)
            with pytest.raises(ValueError, match="capacity"):
                await c.send(q.snd_id, os.urandom(17000))
            await c.ping()

    run(scenario())


def test_create_password_enforced(relay):
    async def scenario():
        async with await smp.connect(relay.address) as c:
            for pw in (None, relay.password + "x", "wrong"):
                with pytest.raises(smp.PasswordRefused) as e:
                    await c.create_queue(password=pw)
                assert err(e) == "AUTH"
            for v in (6, 9, 15, 17):  # the password in each version's NEW encoding
                async with await smp.connect(relay.address, version=v) as cv:
                    await cv.create_queue()
                    with pytest.raises(smp.PasswordRefused):
                        await cv.create_queue(password="nope")

    run(scenario())


def test_no_password_relay_accepts_new(relay_factory):
    r = relay_factory(password=None)
    r.start()

    async def scenario():
        async with await smp.connect(r.address) as c:
            assert smp.parse_address(r.address).password is None
            q = await c.create_queue()
            await c.send(q.snd_id, b"open relay")
            assert (await c.receive(q)).body == b"open relay"

    run(scenario())


def test_notifications_nkey_nsub_nmsg_ndel(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as nc, \
                await smp.connect(relay.address) as sc:
            q = await rc.create_queue()
            await rc.enable_notifications(q)
            assert len(q.notifier_id) == 24
            await nc.subscribe_notifications(q.notifier_id, q.notifier_key)
            await sc.send(q.snd_id, b"notify me", notification=True)
            m = await rc.receive(q)
            assert m.notification
            ev = await nc.next_event(10)  # NMSG are delivered every 1.5 s upstream
            assert (ev.tag, ev.entity_id) == ("NMSG", q.notifier_id)
            msg_id, ts = smp.SMPClient.decrypt_nmsg(q, ev)
            assert (msg_id, ts) == (m.msg_id, m.timestamp)
            # wrong notifier key
            with pytest.raises(smp.ServerError) as e:
                await nc.subscribe_notifications(q.notifier_id, smp.AuthKey.generate())
            assert err(e) == "AUTH"
            await rc.disable_notifications(q)
            with pytest.raises(smp.ServerError) as e:
                await nc.subscribe_notifications(q.notifier_id, q.notifier_key)
            assert err(e) == "AUTH"

    run(scenario())


def test_notifier_credentials_in_new_v17(relay):
    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as nc:
            q = await rc.create_queue(notifier=True)
            assert q.notifier_id is not None and len(q.notifier_id) == 24
            await nc.subscribe_notifications(q.notifier_id, q.notifier_key)
            await rc.send(q.snd_id, b"n", notification=True)
            m = await rc.receive(q)
            ev = await nc.next_event(10)
            assert smp.SMPClient.decrypt_nmsg(q, ev)[0] == m.msg_id

    run(scenario())


def test_short_links_contact_queue(relay):
    async def scenario():
        async with await smp.connect(relay.address) as owner, await smp.connect(relay.address) as guest:
            link_id = os.urandom(24)
            q = await owner.create_queue(mode="C", link_data=(b"fixed", b"user1"), contact_link_id=link_id)
            assert (q.queue_mode, q.link_id) == ("C", link_id)
            assert await guest.link_get(link_id) == (q.snd_id, b"fixed", b"user1")
            await owner.link_set(q, link_id, b"fixed", b"user2")
            assert (await guest.link_get(link_id))[2] == b"user2"
            with pytest.raises(smp.ServerError) as e:
                await owner.link_set(q, link_id, b"other fixed", b"user3")  # fixed part cannot change
            assert err(e) == "AUTH"
            await owner.link_delete(q)
            await owner.link_delete(q)  # always OK
            with pytest.raises(smp.ServerError) as e:
                await guest.link_get(link_id)
            assert err(e) == "AUTH"
            # at v14 there are no short links
            async with await smp.connect(relay.address, version=14) as old:
                r = await old.request(link_id, b"LGET")
                assert r.error is not None

    run(scenario())


def test_short_links_messaging_queue_lkey(relay):
    async def scenario():
        async with await smp.connect(relay.address) as owner, await smp.connect(relay.address) as guest:
            q = await owner.create_queue(mode="M", link_data=(b"inv-fixed", b"inv-user"))
            assert q.link_id is not None and len(q.link_id) == 24
            sk = smp.AuthKey.generate()
            sid, fixed, user = await guest.link_key(q.link_id, sk)
            assert (sid, fixed, user) == (q.snd_id, b"inv-fixed", b"inv-user")
            await guest.send(q.snd_id, b"via link", sk)  # LKEY secured the queue with sk
            assert (await owner.receive(q)).body == b"via link"
            with pytest.raises(smp.ServerError) as e:
                await guest.send(q.snd_id, b"unsigned")
            assert err(e) == "AUTH"

    run(scenario())


def test_new_with_link_requires_sender_id_from_corr_id(relay):
    """With link data the sender id must be SHA3-384(corrId)[:24], else CMD PROHIBITED."""

    async def scenario():
        async with await smp.connect(relay.address) as c:
            k = smp.AuthKey.generate()
            dh, _ = smp.sodium.crypto_box_keypair()
            cmd = smp.encode_new(c.version, k, dh, relay.password.encode(), True, "M",
                                 (None, os.urandom(24), b"f", b"u"))
            r = await c.request(b"", cmd, k)
            assert r.error == "CMD PROHIBITED"

    run(scenario())


def test_batch_executes_right_to_left_answers_in_order(relay):
    """Upstream processes a block's commands last-first: 3 SENDs in one block are stored
    in reverse order, while their OKs come back in request order."""

    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            q = await rc.create_queue(subscribe=False)
            rs = await sc.request_batch([(q.snd_id, b"SEND F " + b, None) for b in (b"1", b"2", b"3")])
            assert [r.tag for r in rs] == ["OK", "OK", "OK"]
            got = []
            while (m := await rc.get(q)) is not None:
                got.append(m.body)
                await rc.ack(q, m.msg_id)
            assert got == [b"3", b"2", b"1"]

    run(scenario())


@pytest.mark.parametrize("version,want", [(9, b"OK"), (15, b"OK"), (16, b"SOK 0"), (18, b"SOK 0")])
def test_sub_answer_per_version(relay, version, want):
    """SUB answers OK below v16 and ``SOK`` with an empty service id (``0``) from v16."""

    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            q = await c.create_queue(subscribe=False)
            r = await c.request(q.rcv_id, b"SUB", q.rcv_key)
            assert (r.command, r.entity_id) == (want, q.rcv_id)
            await c.send(q.snd_id, b"pushed")
            m = await c.receive(q)  # MSG event with empty corrId, entity = recipient id
            assert m.body == b"pushed"

    run(scenario())


def test_unacknowledged_message_survives_subscriber_disconnect(relay):
    """A subscriber that vanishes before ACK loses nothing: the next SUB gets the same message."""

    async def scenario():
        sc = await smp.connect(relay.address)
        a = await smp.connect(relay.address)
        q = await a.create_queue()
        await sc.send(q.snd_id, b"keep me")
        m = await a.receive(q)
        a.writer.transport.abort()  # no goodbye
        await a.close()
        async with await smp.connect(relay.address) as b:
            await b.subscribe(q)
            again = await b.receive(q)
            assert (again.msg_id, again.body) == (m.msg_id, b"keep me")
            assert await b.ack(q, again.msg_id) is None
        await sc.close()

    run(scenario())


@pytest.mark.parametrize("version", [6, 7])
def test_ed448_life_cycle_at_old_versions(relay, version):
    async def scenario():
        async with await smp.connect(relay.address, version=version) as c:
            q = await c.create_queue(auth_alg="ed448")
            sk = smp.AuthKey.generate("ed448")
            await c.secure(q, sk)
            await c.send(q.snd_id, b"old", sk)
            m = await c.receive(q)
            assert m.body == b"old"
            await c.ack(q, m.msg_id)
            await c.off(q)
            await c.delete(q)

    run(scenario())


def test_msg_packing_after_sub_follows_upstream(relay):
    """Server ``send``: with at most 4 responses in a block the first MSG rides in the same block
    as the responses; with more, responses go together and every MSG follows in its own block."""

    async def scenario():
        async with await smp.connect(relay.address) as rc, await smp.connect(relay.address) as sc:
            qs = [await rc.create_queue(subscribe=False) for _ in range(6)]
            for q in qs:
                await sc.send(q.snd_id, b"pending")
            async with await smp.connect(relay.address) as a:
                rs = await a.request_batch([(qs[0].rcv_id, b"SUB", qs[0].rcv_key), (b"", b"PING", None)])
                ev = await a.next_event(5)
                assert ev.tag == "MSG" and ev.entity_id == qs[0].rcv_id
                assert rs[0].block == rs[1].block == ev.block  # 2 responses + MSG: one block
            async with await smp.connect(relay.address) as b:
                rs = await b.request_batch([(q.rcv_id, b"SUB", q.rcv_key) for q in qs[1:]])  # 5 responses
                evs = [await b.next_event(5) for _ in qs[1:]]
                assert [e.tag for e in evs] == ["MSG"] * 5
                assert {e.entity_id for e in evs} == {q.rcv_id for q in qs[1:]}
                layout = [(r.tag, r.block) for r in rs] + [(e.tag, e.block) for e in evs]
                # upstream Server.hs `send` (sendTransmissions, >4 responses): all SOKs in one tPut,
                # then msgQ -> sendMsg sends every MSG in its own tPut (block)
                assert len({r.block for r in rs}) == 1, layout
                blocks = [e.block for e in evs]
                assert len(set(blocks)) == 5 and min(blocks) > rs[0].block, layout

    run(scenario())


def test_four_responses_and_msg_fold_like_upstream(relay):
    """Upstream ``tSend (ts <> [msg])`` packs with a right fold: the last block is filled first. With
    4 SUBs whose queues hold a message, the first MSG (16 180 bytes with its length) takes the last
    3 SOKs (58 bytes each) into its block, the first SOK goes in the block before, and the other
    MSGs follow one per block."""

    async def scenario():
        async with await smp.connect(relay.address) as rc:
            qs = [await rc.create_queue(subscribe=False) for _ in range(4)]
            for q in qs:
                await rc.send(q.snd_id, b"pending")
            async with await smp.connect(relay.address) as a:
                rs = await a.request_batch([(q.rcv_id, b"SUB", q.rcv_key) for q in qs])
                evs = [await a.next_event(5) for _ in qs]
                layout = [(r.tag, r.block) for r in rs] + [(e.tag, e.block) for e in evs]
                b0 = rs[0].block
                want = [b0, b0 + 1, b0 + 1, b0 + 1, b0 + 1, b0 + 2, b0 + 3, b0 + 4]
                assert [blk for _, blk in layout] == want, layout
                assert evs[0].entity_id == qs[0].rcv_id  # the first SUB's message rides with the responses

    run(scenario())
