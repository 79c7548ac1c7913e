#!/usr/bin/env python3
"""CPU cost of the relay's protocol core per delivered message, without sockets or TLS.

Feeds pre-built client blocks (Ed25519-signed SEND, then ACK) straight into the server's
block codec and ``commands.process_block`` and times only the server side: block
decryption, parsing, signature verification, the store, MSG encryption and the encrypted
response blocks. This is the floor under ``bench/bench_relay.py`` (which adds TLS, asyncio,
the kernel and a Python load generator on the same 2 cores), and shows where the time goes.

    .venv/bin/python bench/protocol_core.py                 # v18 and v10, 16000-byte bodies
    .venv/bin/python bench/protocol_core.py --profile       # plus a cProfile of the v18 run
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from smprelay import commands
from smprelay import crypto as c
from smprelay import encoding as e
from smprelay import protocol as p
from smprelay.env import ProtocolSettings, ServerEnv
from smprelay.queue_store import QueueStore
from smprelay.transport import BlockCodec, batch_blocks, parse_batch


def run(version: int, n: int, body: int, prof: cProfile.Profile | None = None) -> float:
    env = ServerEnv(QueueStore(), ProtocolSettings(msg_queue_quota=n + 1), None, [], b"k" * 32, None)
    sid, dh = os.urandom(32), os.urandom(32)
    encrypted = version >= 11
    codecs = {}
    for name in ("rcv", "snd"):
        codecs[name] = (
            (BlockCodec.encrypted(sid, dh), BlockCodec.encrypted_client(sid, dh))
            if encrypted
            else (BlockCodec(), BlockCodec())
        )

    def make(name: str) -> commands.Client:
        srv = codecs[name][0]
        return commands.Client(
            p.Params(version, sid), os.urandom(32), lambda ts: [srv.encode(b) for b in batch_blocks(ts)[0]]
        )

    rcv, snd = make("rcv"), make("snd")
    rk, sk = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()

    def tx(key, ent: bytes, cmd: bytes) -> bytes:
        body_ = e.ss(os.urandom(24)) + e.ss(ent) + cmd
        auth = key.sign(e.ss(sid) + body_)
        if version < 7:
            body_ = e.ss(sid) + body_
        return e.ss(auth) + (b"0" if version >= 16 else b"") + body_

    def block(name: str, t: bytes) -> bytes:
        return codecs[name][1].encode(bytes((1,)) + e.large(t))

    # set up one secured queue with the recipient subscribed (outside the timing)
    out: list[bytes] = []
    probe = commands.Client(p.Params(version, sid), os.urandom(32), out.extend)
    _, dpk = c.x25519_keypair()
    new = b"NEW " + e.ss(c.SPKI_PREFIX["ed25519"] + c.public_raw(rk)) + e.ss(c.x25519_spki(dpk))
    new += b"0C" + (b"1M0" if version >= 15 else b"T") + (b"0" if version >= 17 else b"") if version >= 9 else b"C"
    commands.process_block(env, probe, [tx(rk, b"", new)])
    q = next(iter(env.store.queues.values()))
    q.sender_key = c.SPKI_PREFIX["ed25519"] + c.public_raw(sk)
    commands.process_block(env, rcv, parse_batch(codecs["rcv"][0].decode(block("rcv", tx(rk, q.recipient_id, b"SUB")))))
    payload = b"x" * body
    sends = [block("snd", tx(sk, q.sender_id, b"SEND F " + payload)) for _ in range(n)]
    acks = [block("rcv", tx(rk, q.recipient_id, b"ACK " + e.ss(b""))) for _ in range(n)]  # empty msgId matches
    srv_snd, srv_rcv = codecs["snd"][0], codecs["rcv"][0]
    if prof:
        prof.enable()
    t0 = time.process_time()
    for i in range(n):
        commands.process_block(env, snd, parse_batch(srv_snd.decode(sends[i])))
        commands.process_block(env, rcv, parse_batch(srv_rcv.decode(acks[i])))
    dt = time.process_time() - t0
    if prof:
        prof.disable()
    assert not env.store.messages.get(q.recipient_id), "every message must have been delivered and acknowledged"
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--body", type=int, default=16000)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    k = ed25519.Ed25519PrivateKey.generate()
    m, sig, pk = b"m" * 200, k.sign(b"m" * 200), c.public_raw(k)
    t0 = time.process_time()
    for _ in range(2000):
        c.ed25519_verify(pk, sig, m)
    verify_us = (time.process_time() - t0) / 2000 * 1e6
    print(f"Ed25519 verify (libsodium): {verify_us:.1f} us (2 per delivered message)")
    for v in (18, 10):
        per = run(v, a.n, a.body)
        print(
            f"v{v} ({'encrypted' if v >= 11 else 'plain'} blocks) SEND→MSG→ACK, body {a.body} B: "
            f"{per * 1e6:.0f} us server CPU per message = {1 / per:.0f} msg/s per core"
        )
    if a.profile:
        prof = cProfile.Profile()
        run(18, a.n, a.body, prof)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
