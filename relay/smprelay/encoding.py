"""SMP binary primitives (upstream ``Encoding.hs``): pure encoders and a cursor-based parser.

Every wire structure of the protocol is built from these few shapes, so they live in one
place and every other module composes them. Parsing failures raise :class:`ParseError`,
which the protocol layer maps to the error the upstream server would send.
"""

from __future__ import annotations

import struct

_W16 = struct.Struct(">H")
_I64 = struct.Struct(">q")


class ParseError(ValueError):
    """Input does not match the expected encoding."""


# -- encoders ----------------------------------------------------------------------------
def w16(n: int) -> bytes:
    return _W16.pack(n)


def i64(n: int) -> bytes:
    """Int64, big-endian two's complement (upstream encodes it as two Word32s, same bytes)."""
    return _I64.pack(n)


def ss(b: bytes) -> bytes:
    """ShortString: 1-byte length then at most 255 bytes."""
    if len(b) > 255:
        raise ValueError(f"short string of {len(b)} bytes is longer than 255")
    return bytes((len(b),)) + b


def large(b: bytes) -> bytes:
    """Large: 2-byte length then at most 65535 bytes."""
    if len(b) > 65535:
        raise ValueError(f"large string of {len(b)} bytes is longer than 65535")
    return _W16.pack(len(b)) + b


def ne_list(items: list[bytes]) -> bytes:
    """NonEmpty list of already-encoded items: 1-byte count then the items."""
    if not 1 <= len(items) <= 255:
        raise ValueError(f"non-empty list must have 1..255 items, got {len(items)}")
    return bytes((len(items),)) + b"".join(items)


def maybe(b: bytes | None) -> bytes:
    """Maybe of an already-encoded value: ``0`` or ``1`` ‖ value."""
    return b"0" if b is None else b"1" + b


def boolean(v: bool) -> bytes:
    return b"T" if v else b"F"


def pad(msg: bytes, size: int) -> bytes:
    """``Crypto.pad``: W16(len) ‖ msg ‖ '#' up to ``size``."""
    n = len(msg)
    fill = size - n - 2
    if fill < 0 or n > 65535:
        raise ValueError(f"{n} bytes do not fit in a padded block of {size}")
    return _W16.pack(n) + msg + b"#" * fill


def unpad(padded: bytes) -> bytes:
    """``Crypto.unPad``: the length must not exceed what follows it."""
    if len(padded) < 2:
        raise ParseError("padded block shorter than its length prefix")
    (n,) = _W16.unpack_from(padded)
    if len(padded) - 2 < n:
        raise ParseError(f"padded length {n} exceeds the {len(padded) - 2} bytes present")
    return padded[2 : 2 + n]


# -- parser ------------------------------------------------------------------------------
class Parser:
    """A cursor over bytes; each method consumes one encoded value or raises ParseError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise ParseError(f"need {n} bytes at offset {self.pos}, have {len(self.buf) - self.pos}")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise ParseError(f"need 1 byte at offset {self.pos}")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def char(self) -> bytes:
        return bytes((self.byte(),))

    def peek(self) -> int | None:
        return self.buf[self.pos] if self.pos < len(self.buf) else None

    def w16(self) -> int:
        return _W16.unpack(self.take(2))[0]

    def i64(self) -> int:
        return _I64.unpack(self.take(8))[0]

    def ss(self) -> bytes:
        return self.take(self.byte())

    def large(self) -> bytes:
        return self.take(self.w16())

    def tail(self) -> bytes:
        out = self.buf[self.pos :]
        self.pos = len(self.buf)
        return out

    def boolean(self) -> bool:
        c = self.byte()
        if c == 0x54:  # T
            return True
        if c == 0x46:  # F
            return False
        raise ParseError(f"expected T or F at offset {self.pos - 1}")

    def maybe_tag(self) -> bool:
        """Reads a Maybe tag: True for ``1`` (value follows), False for ``0``."""
        c = self.byte()
        if c == 0x31:
            return True
        if c == 0x30:
            return False
        raise ParseError(f"expected Maybe tag 0 or 1 at offset {self.pos - 1}")

    def space(self) -> None:
        if self.byte() != 0x20:
            raise ParseError(f"expected space at offset {self.pos - 1}")

    def ne_large_list(self) -> list[bytes]:
        """NonEmpty of Large items (certificate chains)."""
        n = self.byte()
        if n == 0:
            raise ParseError("empty non-empty list")
        return [self.large() for _ in range(n)]

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise ParseError(f"{len(self.buf) - self.pos} unexpected trailing bytes")
