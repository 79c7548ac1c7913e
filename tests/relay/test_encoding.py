"""Primitive encodings against upstream vectors (tests/CoreTests/EncodingTests.hs)."""

import calendar

import pytest

from smprelay import encoding as e


def test_int64_upstream_vector():
    assert e.i64(1234567890123456789) == bytes.fromhex("112210f47de98115")
    assert e.Parser(bytes.fromhex("112210f47de98115")).i64() == 1234567890123456789


def test_int64_negative_roundtrip():
    assert e.Parser(e.i64(-5)).i64() == -5


def test_timestamp_upstream_vector():
    ts = calendar.timegm((2022, 1, 1, 10, 24, 5, 0, 0, 0))
    assert ts == 1641032645
    assert e.i64(ts) == (1641032645).to_bytes(8, "big")


def test_short_and_large_strings():
    assert e.ss(b"abc") == b"\x03abc"
    assert e.large(b"abc") == b"\x00\x03abc"
    with pytest.raises(ValueError):
        e.ss(b"x" * 256)
    p = e.Parser(b"\x03abc\x00\x02xy")
    assert p.ss() == b"abc" and p.large() == b"xy" and p.at_end()


def test_parser_errors_on_truncation():
    with pytest.raises(e.ParseError):
        e.Parser(b"\x05ab").ss()
    with pytest.raises(e.ParseError):
        e.Parser(b"\x00").w16()


def test_pad_unpad():
    padded = e.pad(b"hello", 20)
    assert padded == b"\x00\x05hello" + b"#" * 13
    assert e.unpad(padded) == b"hello"
    with pytest.raises(ValueError):
        e.pad(b"x" * 19, 20)
    with pytest.raises(e.ParseError):
        e.unpad(b"\x00\x10abc")  # length beyond the data


def test_maybe_bool_nonempty():
    assert e.maybe(None) == b"0" and e.maybe(b"x") == b"1x"
    assert e.boolean(True) == b"T"
    p = e.Parser(b"1F")
    assert p.maybe_tag() is True and p.boolean() is False
    with pytest.raises(e.ParseError):
        e.Parser(b"2").maybe_tag()
    assert e.Parser(b"\x02\x00\x01a\x00\x01b").ne_large_list() == [b"a", b"b"]
    with pytest.raises(e.ParseError):
        e.Parser(b"\x00").ne_large_list()
