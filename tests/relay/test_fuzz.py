"""Fuzzing the real ``smp-server start`` with thousands of mutated blocks.

Malformed input of any kind must get the protocol's error or a closed connection — never a
crashed server and never a stuck connection. Mutations start from valid, correctly signed
batches of real commands (so the mutated bytes reach the parser through block encryption)
and also include random blocks, wrong pad lengths, oversized counts, bad L() lengths,
truncations and undecryptable ciphertext. After every mutated block the connection must
either be closed by the server or answer a PING; at the end the server must still serve.

The seed is fixed (override with SMP_FUZZ_SEED) so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest

from smprelay import client as smp

SEED = int(os.environ.get("SMP_FUZZ_SEED", "20261125"))
BLOCKS = int(os.environ.get("SMP_FUZZ_BLOCKS", "3000"))
VERSIONS = (6, 10, 18)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 600))


class Corpus:
    """Valid batches for one connection, built on real queues."""

    def __init__(self, c: smp.SMPClient, queues: list[smp.Queue], password: bytes, rnd: random.Random):
        self.c, self.qs, self.pw, self.rnd = c, queues, password, rnd

    def transmission(self) -> bytes:
        c, rnd = self.c, self.rnd
        q = rnd.choice(self.qs)
        k = smp.AuthKey.generate(rnd.choice(["ed25519", "ed448", "x25519"] if c.version >= 7 else ["ed25519", "ed448"]))
        choices = [
            (b"", b"PING", None),
            (q.rcv_id, b"SUB", q.rcv_key),
            (q.rcv_id, b"GET", q.rcv_key),
            (q.rcv_id, b"ACK " + smp.ss(os.urandom(24)), q.rcv_key),
            (q.snd_id, b"SEND F " + os.urandom(rnd.randrange(0, 300)), None),
            (q.rcv_id, b"KEY " + smp.ss(k.public_der), q.rcv_key),
            (q.snd_id, b"SKEY " + smp.ss(k.public_der), k),
            (q.rcv_id, b"NKEY " + smp.ss(k.public_der) + smp.ss(smp.spki("x25519", os.urandom(32))), q.rcv_key),
            (q.rcv_id, b"LSET " + smp.ss(os.urandom(24)) + smp.large(b"f") + smp.large(b"u"), q.rcv_key),
            (os.urandom(24), b"LGET", None),
            (b"", smp.encode_new(c.version, k, os.urandom(32), self.pw, rnd.random() < 0.5), k),
            (q.rcv_id, b"QUE", q.rcv_key),
        ]
        ent, cmd, key = rnd.choice(choices)
        return c.transmission(ent, cmd, key)[1]

    def batch(self) -> bytes:
        ts, size = [], 1
        for _ in range(self.rnd.randrange(1, 12)):
            t = self.transmission()
            if size + len(t) + 2 > smp.BATCH_CAPACITY:
                break
            ts.append(t)
            size += len(t) + 2
        return smp.encode_batch(ts)


def mutate(rnd: random.Random, plain: bytes, padded_size: int) -> tuple[str, bytes]:
    """One malformed block body; returns (mutation name, full padded block)."""
    b = bytearray(plain)
    kind = rnd.choice(
        ["flip", "flip", "truncate", "count", "length", "insert", "random", "padlen", "zeros", "splice"]
    )
    if kind == "flip":
        for _ in range(rnd.randrange(1, 9)):
            i = rnd.randrange(len(b))
            b[i] = rnd.randrange(256)
    elif kind == "truncate":
        b = b[: rnd.randrange(0, len(b))]
    elif kind == "count":
        b[0] = rnd.choice([0, 255, rnd.randrange(256)])
    elif kind == "length" and len(b) >= 3:
        struct.pack_into(">H", b, 1, rnd.choice([0, 1, 0xFFFF, 16382, len(b) + rnd.randrange(1, 100)]))
    elif kind == "insert":
        i = rnd.randrange(len(b) + 1)
        b[i:i] = os.urandom(rnd.randrange(1, 40))
    elif kind == "random":
        b = bytearray(os.urandom(rnd.randrange(0, padded_size - 2)))
    elif kind == "zeros":
        b = bytearray(rnd.randrange(0, 64))
    elif kind == "splice":
        j = rnd.randrange(len(b))
        b = b[:j] + b[: len(b) - j]
    if kind == "padlen":  # the pad length itself is wrong
        n = rnd.choice([padded_size - 1, padded_size, 0xFFFF, len(b) + 1])
        block = struct.pack(">H", n) + bytes(b) + b"#" * (padded_size - 2 - len(b))
        return kind, block
    b = bytes(b[: padded_size - 2])
    return kind, smp.pad(b, padded_size)


async def alive_or_closed(c: smp.SMPClient, timeout: float = 10.0) -> bool:
    """True if the connection answers PING, False if the server closed it; stuck ⇒ SMPTimeout."""
    try:
        await asyncio.wait_for(c.ping(), timeout)
        return True
    except (smp.ConnectionClosed, ConnectionError):
        return False
    except smp.ServerError:
        return True  # answered (e.g. the PING shared a block made invalid by a previous mutation)
    except asyncio.TimeoutError:
        raise AssertionError("connection neither answered PING nor was closed: stuck") from None


@pytest.mark.slow
def test_fuzz_mutated_blocks_never_crash_or_hang(relay):
    rnd = random.Random(SEED)

    async def scenario():
        stats: dict[str, int] = {}
        closed = 0
        conns: dict[int, tuple[smp.SMPClient, Corpus]] = {}

        async def fresh(v: int) -> tuple[smp.SMPClient, Corpus]:
            c = await smp.connect(relay.address, version=v)
            qs = [await c.create_queue(subscribe=rnd.random() < 0.5) for _ in range(3)]
            return c, Corpus(c, qs, relay.password.encode(), rnd)

        for v in VERSIONS:
            conns[v] = await fresh(v)
        for i in range(BLOCKS):
            v = VERSIONS[i % len(VERSIONS)]
            c, corpus = conns[v]
            special = rnd.random()
            try:
                if special < 0.03:  # ciphertext that does not decrypt / raw random block
                    kind = "raw"
                    await c.send_raw_block(os.urandom(smp.BLOCK_SIZE))
                elif special < 0.04:  # a partial block, then the client goes away
                    kind = "partial"
                    await c.send_raw_block(os.urandom(rnd.randrange(1, smp.BLOCK_SIZE)))
                    await c.close()
                else:
                    kind, block = mutate(rnd, corpus.batch(), c.padded_size)
                    await c.send_padded_block(block)
            except (smp.ConnectionClosed, ConnectionError):
                kind = "closed-before-send"
            stats[kind] = stats.get(kind, 0) + 1
            try:
                ok = kind != "partial" and await alive_or_closed(c)
            except AssertionError as e:
                raise AssertionError(f"block {i} ({kind}) at v{v}: {e}") from None
            c._orphans.clear()
            while not c.events.empty():
                c.events.get_nowait()
            if not ok:
                closed += 1
                await c.close()
                conns[v] = await fresh(v)
            assert relay.alive, f"server died after block {i} ({kind})\n{relay.output()[-3000:]}"
        for c, _ in conns.values():
            await c.close()
        print(f"\nfuzz: seed {SEED}, {BLOCKS} blocks, {closed} connections closed by the server, {stats}")

        # the server still serves a full exchange
        async with await smp.connect(relay.address) as c:
            q = await c.create_queue()
            await c.send(q.snd_id, b"still serving")
            assert (await c.receive(q)).body == b"still serving"
        return closed

    closed = run(scenario())
    assert closed < BLOCKS  # most malformed blocks get protocol errors, not closed connections
    assert "Traceback" not in relay.output(), relay.output()[-5000:]


def test_garbage_before_handshake_and_oversized_hello(relay):
    """Bytes that are not a client hello: the server closes the connection and keeps serving."""

    async def scenario():
        for junk in (os.urandom(smp.BLOCK_SIZE), smp.pad(b"\xff\xff\x00", smp.BLOCK_SIZE), smp.pad(b"", smp.BLOCK_SIZE)):
            reader, writer = await smp._open("127.0.0.1", relay.port, None, True, 10)
            await reader.readexactly(smp.BLOCK_SIZE)  # server hello
            writer.write(junk)
            await writer.drain()
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await asyncio.wait_for(reader.readexactly(smp.BLOCK_SIZE), 10)
            writer.close()
        # a partial hello, then the client disappears
        reader, writer = await smp._open("127.0.0.1", relay.port, None, True, 10)
        writer.write(b"\x00" * 100)
        await writer.drain()
        writer.close()
        async with await smp.connect(relay.address) as c:
            await c.ping()

    run(scenario())


@pytest.mark.slow
def test_fuzz_mutated_client_hellos(relay):
    """Mutated client hellos (versions, key hash, key, flags, service slot, lengths): the server
    closes or carries on, never crashes; afterwards it serves normally."""
    rnd = random.Random(SEED + 1)
    kh = smp.parse_address(relay.address).key_hash

    async def scenario():
        outcomes = {"closed": 0, "open": 0}
        for _ in range(int(os.environ.get("SMP_FUZZ_HELLOS", "200"))):
            v = rnd.choice([6, 7, 11, 14, 16, 18])
            ch = bytearray(smp.encode_client_hello(v, kh, os.urandom(32)))
            for _ in range(rnd.randrange(1, 4)):
                if not ch:
                    ch = bytearray(os.urandom(rnd.randrange(1, 40)))
                op = rnd.random()
                if op < 0.5:
                    ch[rnd.randrange(len(ch))] = rnd.randrange(256)
                elif op < 0.75:
                    ch = ch[: rnd.randrange(len(ch))]
                else:
                    ch += os.urandom(rnd.randrange(1, 200))
            reader, writer = await smp._open("127.0.0.1", relay.port, None, True, 10)
            await reader.readexactly(smp.BLOCK_SIZE)
            writer.write(smp.pad(bytes(ch), smp.BLOCK_SIZE))
            await writer.drain()
            try:  # an accepted hello leaves the connection open; a refused one is closed
                await asyncio.wait_for(reader.readexactly(smp.BLOCK_SIZE), 0.1)
                outcomes["open"] += 1
            except asyncio.TimeoutError:
                outcomes["open"] += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                outcomes["closed"] += 1
            writer.close()
        assert relay.alive
        print(f"\nhello fuzz: {outcomes}")
        async with await smp.connect(relay.address) as c:
            q = await c.create_queue()
            await c.send(q.snd_id, b"fine")
            assert (await c.receive(q)).body == b"fine"
        return outcomes

    outcomes = run(scenario())
    assert outcomes["closed"] > 0  # most mutations break the key hash or version
    assert "Traceback" not in relay.output(), relay.output()[-5000:]
