"""Fixed-size SMP blocks, batches and block encryption (upstream ``tPutBlock``/``tGetBlock``,
``batchTransmissions_``, ``tParse``), without I/O.

Every block on the wire is exactly 16384 bytes. From v11 each block is encrypted with its
own key from a per-direction HKDF chain, so the codec is stateful (one step per block) but
still pure: the session feeds it bytes and writes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import crypto as c
from . import encoding as e

BLOCK_SIZE = 16384
# 19 = 2 bytes pad length + 1 count byte + 16 reserved for the block-encryption tag
BATCH_CAPACITY = BLOCK_SIZE - 19
MAX_BATCH = 255


class BlockError(Exception):
    """The block could not be decrypted or unpadded (upstream answers ``ERR BLOCK``)."""


@dataclass
class BlockCodec:
    """Pads (and from v11 encrypts) outgoing blocks, and reverses that for incoming ones."""

    snd_ck: bytes | None = None
    rcv_ck: bytes | None = None

    @classmethod
    def encrypted(cls, session_id: bytes, dh_secret: bytes) -> "BlockCodec":
        ck1, ck2 = c.sbc_init(session_id, dh_secret)
        return cls(snd_ck=ck1, rcv_ck=ck2)

    @classmethod
    def encrypted_client(cls, session_id: bytes, dh_secret: bytes) -> "BlockCodec":
        """The client's side (chains swapped); for tests and tools."""
        ck1, ck2 = c.sbc_init(session_id, dh_secret)
        return cls(snd_ck=ck2, rcv_ck=ck1)

    def encode(self, plain: bytes) -> bytes:
        if self.snd_ck is None:
            return e.pad(plain, BLOCK_SIZE)
        self.snd_ck, key, nonce = c.sbc_next(self.snd_ck)
        return c.box_seal(key, nonce, e.pad(plain, BLOCK_SIZE - 16))

    def decode(self, block: bytes) -> bytes:
        if len(block) != BLOCK_SIZE:
            raise BlockError(f"block of {len(block)} bytes, expected {BLOCK_SIZE}")
        try:
            if self.rcv_ck is None:
                return e.unpad(block)
            self.rcv_ck, key, nonce = c.sbc_next(self.rcv_ck)
            return e.unpad(c.box_open(key, nonce, block))
        except (e.ParseError, c.CryptoError) as err:
            raise BlockError(str(err)) from err


def parse_batch(plain: bytes) -> list[bytes]:
    """``count ‖ L(t)×count``, consuming the whole unpadded block; else BlockError."""
    p = e.Parser(plain)
    try:
        n = p.byte()
        if n == 0:
            raise e.ParseError("empty batch")
        items = [p.large() for _ in range(n)]
        p.end()
    except e.ParseError as err:
        raise BlockError(str(err)) from err
    return items


def batch_blocks(transmissions: list[bytes]) -> tuple[list[bytes], list[int]]:
    """Pack encoded transmissions into batch payloads like upstream's right fold.

    Returns (payloads, indices of transmissions too large to send). The last block is filled
    first and the leftovers go in earlier blocks; order is preserved.
    """
    if len(transmissions) == 1 and len(transmissions[0]) <= BATCH_CAPACITY - 2:  # most sends
        t = transmissions[0]
        return [b"\x01" + len(t).to_bytes(2, "big") + t], []
    blocks: list[list[bytes]] = []
    cur: list[bytes] = []
    size = 0
    too_large: list[int] = []
    for i in range(len(transmissions) - 1, -1, -1):
        s = e.large(transmissions[i]) if len(transmissions[i]) <= 65535 else None
        if s is None or len(s) > BATCH_CAPACITY:
            too_large.append(i)
            if cur:
                blocks.append(cur)
            cur, size = [], 0
            continue
        if size + len(s) <= BATCH_CAPACITY and len(cur) < MAX_BATCH:
            cur.append(s)
            size += len(s)
        else:
            blocks.append(cur)
            cur, size = [s], len(s)
    if cur:
        blocks.append(cur)
    blocks.reverse()
    return [bytes((len(b),)) + b"".join(reversed(b)) for b in blocks], sorted(too_large)
