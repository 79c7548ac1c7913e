"""Blocks, batches and block encryption (upstream Transport.hs / BatchingTests.hs)."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from smprelay import crypto as c
from smprelay import encoding as e
from smprelay import protocol as p
from smprelay.transport import BATCH_CAPACITY, BLOCK_SIZE, BlockCodec, BlockError, batch_blocks, parse_batch


def _signed_sub(v: int, session_id: bytes) -> bytes:
    k = ed25519.Ed25519PrivateKey.generate()
    corr, rid = os.urandom(24), os.urandom(24)
    t = e.ss(corr) + e.ss(rid) + b"SUB"
    sig = k.sign(e.ss(session_id) + t)
    if v >= 16:
        return e.ss(sig) + b"0" + t
    if v >= 7:
        return e.ss(sig) + t
    return e.ss(sig) + e.ss(session_id) + t


@pytest.mark.parametrize("v,n", [(18, 135), (6, 106)])
def test_batch_capacity_signed_subs(v, n):
    subs = [_signed_sub(v, os.urandom(32)) for _ in range(n + 1)]
    payloads, too_large = batch_blocks(subs[:n])
    assert len(payloads) == 1 and payloads[0][0] == n and not too_large
    payloads, _ = batch_blocks(subs)
    assert len(payloads) == 2
    # right fold: the last block is full, the leftover goes first
    assert payloads[0][0] == 1 and payloads[1][0] == n
    assert parse_batch(payloads[0]) + parse_batch(payloads[1]) == subs


def test_255_ends_per_block_and_80_nmsgs():
    params = p.Params(18, b"s" * 32)
    end = p.encode_response(params, b"", os.urandom(24), b"END")
    payloads, _ = batch_blocks([end] * 256)
    assert [b[0] for b in payloads] == [1, 255]
    nmsg = p.encode_response(params, b"", os.urandom(24), p.nmsg_msg(os.urandom(24), os.urandom(144)))
    payloads, _ = batch_blocks([nmsg] * 81)
    assert [b[0] for b in payloads] == [1, 80]


def test_large_transmission_reported():
    big = b"\x00" + e.ss(b"c" * 24) + e.ss(b"q" * 24) + b"SEND F " + b"x" * 17000
    payloads, too_large = batch_blocks([b"small", big, b"small2"])
    assert too_large == [1]
    assert [parse_batch(x) for x in payloads] == [[b"small"], [b"small2"]]
    ok = b"y" * (BATCH_CAPACITY - 2)
    assert batch_blocks([ok])[1] == []
    assert batch_blocks([ok + b"z"])[1] == [0]


def test_single_transmission_payload_matches_the_fold():
    """The one-transmission shortcut (every MSG push, most answers) gives the fold's bytes."""
    for t in (b"", b"pong", os.urandom(BATCH_CAPACITY - 2)):
        payloads, too_large = batch_blocks([t])
        assert payloads == [b"\x01" + e.large(t)] and not too_large
        assert parse_batch(payloads[0]) == [t]
    assert batch_blocks([b"a", b"b"])[0] == [b"\x02" + e.large(b"a") + e.large(b"b")]
    full = os.urandom(BATCH_CAPACITY - 2)  # alone in its block by the general path, too
    assert batch_blocks([full, b"x"])[0][0] == batch_blocks([full])[0][0]


def test_plain_block_roundtrip_and_errors():
    codec = BlockCodec()
    block = codec.encode(b"\x01\x00\x02hi")
    assert len(block) == BLOCK_SIZE
    assert parse_batch(codec.decode(block)) == [b"hi"]
    with pytest.raises(BlockError):
        codec.decode(block[:-1])
    with pytest.raises(BlockError):
        parse_batch(b"\x00")
    with pytest.raises(BlockError):
        parse_batch(b"\x01\x00\x05ab")  # bad length
    with pytest.raises(BlockError):
        parse_batch(b"\x01\x00\x01ab")  # trailing bytes


def test_encrypted_blocks_both_directions():
    sid, dh = os.urandom(32), os.urandom(32)
    server, client = BlockCodec.encrypted(sid, dh), BlockCodec.encrypted_client(sid, dh)
    for i in range(3):
        blk = server.encode(bytes([1, 0, 1, i]))
        assert len(blk) == BLOCK_SIZE
        assert client.decode(blk) == bytes([1, 0, 1, i])
        blk = client.encode(b"up%d" % i)
        assert server.decode(blk) == b"up%d" % i


def test_encrypted_block_is_sbencrypt_of_padded_plaintext():
    sid, dh = os.urandom(32), os.urandom(32)
    codec = BlockCodec.encrypted(sid, dh)
    ck1, _ = c.sbc_init(sid, dh)
    out = c.hkdf_sha512(b"", ck1, b"SimpleXSbChain", 88)
    key, nonce = out[32:64], out[64:88]
    blk = codec.encode(b"payload")
    # upstream sbEncrypt = crypto_secretbox with HSalsa20(key, 0^16)
    assert c.box_open(c.hsalsa20(key), nonce, blk) == e.pad(b"payload", BLOCK_SIZE - 16)


def test_tampered_or_replayed_encrypted_block_fails():
    sid, dh = os.urandom(32), os.urandom(32)
    server, client = BlockCodec.encrypted(sid, dh), BlockCodec.encrypted_client(sid, dh)
    blk = client.encode(b"x")
    bad = bytearray(blk)
    bad[100] ^= 1
    with pytest.raises(BlockError):
        server.decode(bytes(bad))
    # the chain advanced: the original block no longer decrypts either
    with pytest.raises(BlockError):
        server.decode(blk)
