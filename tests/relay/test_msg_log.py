"""Message log: v3 lines saved on stop, restored once on start, nothing lost on a refused start."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from smprelay import msg_log
from smprelay.queue_store import Message, QueueRec, QueueStore
from smprelay.store_log import b64


def store_with_queue(n: int = 1) -> tuple[QueueStore, bytes]:
    s = QueueStore()
    rid = bytes([n]) * 24
    s.add(QueueRec(rid, [b"k"], b"d" * 32, bytes([n + 50]) * 24))
    return s, rid


def test_line_format() -> None:
    rid = b"r" * 24
    assert msg_log.encode_message(rid, Message(b"m" * 24, 1700000000, b"hi", notification=True)) == (
        f"v3 {b64(rid)} {b64(b'm' * 24)} 1700000000 flags=T aGk="
    )
    assert msg_log.encode_message(rid, Message(b"q" * 24, 5, quota=True)) == f"v3 {b64(rid)} {b64(b'q' * 24)} 5 quota"
    # an empty body ends the line with a space, and still parses
    line = msg_log.encode_message(rid, Message(b"e" * 24, 7))
    assert line.endswith("flags=F ")
    assert msg_log.decode_message(line) == (rid, Message(b"e" * 24, 7))


def test_save_and_restore_round_trip(tmp_path: Path) -> None:
    s, rid = store_with_queue()
    msgs = [Message(b"a" * 24, 1000, b"x" * 16000), Message(b"b" * 24, 1001, b"", notification=True),
            Message(b"c" * 24, 1002, quota=True)]  # fmt: skip
    s.queue_messages(rid).extend(msgs)
    path = tmp_path / "smp-server-messages.log"
    assert msg_log.save(path, s) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh, _ = store_with_queue()
    res = msg_log.restore(path, fresh, now=2000, ttl=None)
    assert res.restored == 3 and res.expired == 0
    assert list(fresh.queue_messages(rid)) == msgs
    assert not path.exists() and (tmp_path / "smp-server-messages.log.bak").exists()
    # a second start does not deliver them again
    again, _ = store_with_queue()
    assert msg_log.restore(path, again, now=2000, ttl=None).restored == 0


def test_expired_messages_are_dropped_and_counted(tmp_path: Path) -> None:
    s, rid = store_with_queue()
    s.queue_messages(rid).extend([Message(b"o" * 24, 100, b"old"), Message(b"n" * 24, 950, b"new")])
    path = tmp_path / "m.log"
    msg_log.save(path, s)
    fresh, _ = store_with_queue()
    res = msg_log.restore(path, fresh, now=1000, ttl=100)
    assert (res.restored, res.expired) == (1, 1)
    assert [m.body for m in fresh.queue_messages(rid)] == [b"new"]


def test_unknown_queue_refuses_and_keeps_the_file(tmp_path: Path) -> None:
    s, rid = store_with_queue(1)
    s.queue_messages(rid).append(Message(b"a" * 24, 1, b"keep me"))
    path = tmp_path / "m.log"
    msg_log.save(path, s)
    other, _ = store_with_queue(2)
    with pytest.raises(msg_log.MsgLogError, match="unknown queue .*--skip-warnings"):
        msg_log.restore(path, other, now=10, ttl=None)
    assert path.exists() and "keep me" not in path.read_text()  # body is base64
    assert other.message_count() == 0
    res = msg_log.restore(path, other, now=10, ttl=None, skip_warnings=True)
    assert res.restored == 0 and len(res.warnings) == 1 and not path.exists()


def test_corrupt_line_refuses(tmp_path: Path) -> None:
    s, rid = store_with_queue()
    path = tmp_path / "m.log"
    path.write_text(f"v3 {b64(rid)} {b64(b'm' * 24)} notanumber flags=F aGk=\n")
    with pytest.raises(msg_log.MsgLogError, match="line 1: invalid timestamp"):
        msg_log.restore(path, s, now=10, ttl=None)
    assert path.exists()
