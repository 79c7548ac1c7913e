"""What a client was told is stored survives restarts (store log, message log saved on SIGINT),
messages expire by the ``[STORE_LOG]`` TTL, and idle clients are dropped per
``[INACTIVE_CLIENTS]`` — all against the real ``smp-server start``.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from smprelay import client as smp


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_restart_keeps_queues_and_messages(relay_factory):
    r = relay_factory()
    r.start()
    sk = smp.AuthKey.generate()
    bodies = [b"first", b"second with notification", b"third"]

    async def before():
        async with await smp.connect(r.address) as c:
            q = await c.create_queue(subscribe=False)
            await c.secure_by_sender(q.snd_id, sk)
            for i, b in enumerate(bodies):
                await c.send(q.snd_id, b, sk, notification=i == 1)
            gone = await c.create_queue()
            await c.delete(gone)
            off = await c.create_queue()
            await c.off(off)
            return q, gone, off

    q, gone, off = run(before())
    assert r.stop() == 0  # SIGINT: graceful, saves messages
    assert (r.log / "smp-server-messages.log").read_text().count("\n") == 3
    r.start()

    async def after():
        async with await smp.connect(r.address) as c:
            await c.subscribe(q)
            got = []
            m = await c.receive(q)
            while m is not None:
                got.append(m)
                m = await c.ack(q, m.msg_id)
            assert [m.body for m in got] == bodies
            assert [m.notification for m in got] == [False, True, False]
            with pytest.raises(smp.ServerError) as e:
                await c.send(q.snd_id, b"unsigned")  # still secured with sk
            assert e.value.error == "AUTH"
            await c.send(q.snd_id, b"after restart", sk)
            assert (await c.receive(q)).body == b"after restart"
            with pytest.raises(smp.ServerError) as e:
                await c.subscribe(gone)  # deleted stays deleted
            assert e.value.error == "AUTH"
            with pytest.raises(smp.ServerError) as e:
                await c.send(off.snd_id, b"x")  # OFF stays off
            assert e.value.error == "AUTH"

    run(after())


def test_sigkill_keeps_queues_from_store_log(relay_factory):
    r = relay_factory()
    r.start()
    sk = smp.AuthKey.generate()

    async def before():
        async with await smp.connect(r.address) as c:
            q = await c.create_queue()
            await c.secure(q, sk)
            await c.enable_notifications(q)
            return q

    q = run(before())
    r.stop(signal.SIGKILL)
    r.start()

    async def after():
        async with await smp.connect(r.address) as c, await smp.connect(r.address) as n:
            await c.subscribe(q)
            await n.subscribe_notifications(q.notifier_id, q.notifier_key)
            with pytest.raises(smp.ServerError):
                await c.send(q.snd_id, b"unsigned")
            await c.send(q.snd_id, b"signed", sk)
            assert (await c.receive(q)).body == b"signed"

    run(after())


def test_old_messages_expire_on_start(relay_factory):
    r = relay_factory(ini={("STORE_LOG", "expire_messages_days"): "1"})
    r.start()

    async def before():
        async with await smp.connect(r.address) as c:
            q = await c.create_queue(subscribe=False)
            for b in (b"old", b"fresh"):
                await c.send(q.snd_id, b)
            return q

    q = run(before())
    assert r.stop() == 0
    log = r.log / "smp-server-messages.log"
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("v3 ") for line in lines)
    # make the first message 2 days old (fields: v3 <rId> <msgId> <ts> ...)
    parts = lines[0].split(" ")
    parts[3] = str(int(time.time()) - 2 * 86400)
    lines[0] = " ".join(parts)
    log.write_text("\n".join(lines) + "\n")
    r.start()

    async def after():
        async with await smp.connect(r.address) as c:
            m = await c.get(q)
            assert m is not None and m.body == b"fresh"
            await c.ack(q, m.msg_id)
            assert await c.get(q) is None

    run(after())


@pytest.mark.slow
def test_inactive_clients_are_disconnected(relay_factory):
    r = relay_factory(ini={("INACTIVE_CLIENTS", "disconnect"): "on", ("INACTIVE_CLIENTS", "ttl"): "1",
                           ("INACTIVE_CLIENTS", "check_interval"): "1"})
    r.start()

    async def scenario():
        idle = await smp.connect(r.address)
        busy = await smp.connect(r.address)
        chatty = await smp.connect(r.address)
        await busy.create_queue()  # subscribed: not inactive
        for _ in range(7):  # traffic every 0.5 s keeps a connection without subscriptions open
            await chatty.ping()
            await asyncio.sleep(0.5)
        with pytest.raises(smp.ConnectionClosed):
            await idle.ping()
        await busy.ping()
        await chatty.ping()
        for c in (idle, busy, chatty):
            await c.close()

    run(scenario())


@pytest.mark.slow
def test_inactive_clients_kept_when_disconnect_off(relay_factory):
    r = relay_factory(ini={("INACTIVE_CLIENTS", "disconnect"): "off", ("INACTIVE_CLIENTS", "ttl"): "1",
                           ("INACTIVE_CLIENTS", "check_interval"): "1"})
    r.start()

    async def scenario():
        async with await smp.connect(r.address) as idle:
            await asyncio.sleep(3)
            await idle.ping()

    run(scenario())
