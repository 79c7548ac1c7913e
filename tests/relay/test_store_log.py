"""Store log: upstream text records, replay, compaction with the .start crash-safety, backups."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from smprelay import store_log as sl
from smprelay.queue_store import LinkData, NotifierCreds, QueueRec, QueueStore

KEY = bytes.fromhex("302a300506032b6570032100") + bytes(range(32))  # an Ed25519 SPKI


def queue(n: int, **kw) -> QueueRec:
    return QueueRec(
        recipient_id=bytes([n]) * 24,
        recipient_keys=[KEY],
        rcv_dh_secret=bytes([n + 1]) * 32,
        sender_id=bytes([n + 100]) * 24,
        **kw,
    )


def test_create_line_is_upstream_format() -> None:
    q = queue(1, queue_mode="M", updated_at=1718236800)
    line = sl.create_line(q)
    assert line == (
        f"CREATE rid={sl.b64(q.recipient_id)} rk=MCowBQYDK2VwAyEAAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        f" rdh={sl.b64(q.rcv_dh_secret)} sid={sl.b64(q.sender_id)} sk= queue_mode=M updated_at=1718236800"
    )
    assert len(sl.b64(q.recipient_id)) == 32 and sl.b64(q.rcv_dh_secret).endswith("=")


def test_full_record_round_trip() -> None:
    q = queue(
        2,
        sender_key=KEY,
        queue_mode="C",
        link=LinkData(b"L" * 24, b"fixed", b"user data"),
        notifier=NotifierCreds(b"N" * 24, KEY, b"S" * 32),
        status="off",
        updated_at=86400,
    )
    q.recipient_keys = [KEY, KEY[:-1] + b"\x01"]
    store = QueueStore()
    sl.replay(store, sl.create_line(q) + "\n")
    assert store.get_recipient(q.recipient_id) == q
    assert store.get_link(b"L" * 24) is store.get_notifier(b"N" * 24) is store.get_sender(q.sender_id)


def test_journal_lines_replay_to_the_same_store(tmp_path: Path) -> None:
    """Every Journal call writes a line; replaying the file rebuilds exactly the live store."""
    path = tmp_path / "smp-server-store.log"
    live = QueueStore(journal=sl.StoreLogWriter(path))
    a, b, c = queue(1, queue_mode="M"), queue(2), queue(3)
    for q in (a, b, c):
        live.add(q)
    live.secure(a, KEY)
    live.update_keys(a, [KEY, KEY])
    live.add_notifier(a, NotifierCreds(b"n" * 24, KEY, b"d" * 32))
    live.set_link(a, LinkData(b"l" * 24, b"f", b"u"))
    live.touch(a, 2 * 86400 + 5)
    live.add_notifier(b, NotifierCreds(b"m" * 24, KEY, b"e" * 32))
    live.delete_notifier(b)
    live.set_link(b, LinkData(b"k" * 24, b"f", b""))
    live.delete_link(b)
    live.suspend(b)
    live.delete(c)
    live.journal.close()
    tags = [line.split(" ")[0] for line in path.read_text().splitlines()]
    assert tags == ["CREATE"] * 3 + ["SECURE", "KEYS", "NOTIFIER", "LINK", "TIME", "NOTIFIER", "NDELETE", "LINK", "LDELETE", "SUSPEND", "DELETE"]
    replayed = QueueStore()
    result = sl.replay(replayed, path.read_text())
    assert result.warnings == [] and result.lines == 14
    assert replayed.queues == live.queues
    assert replayed.by_notifier == live.by_notifier and replayed.by_link == live.by_link
    assert replayed.get_recipient(c.recipient_id) is None and replayed.get_sender(c.sender_id) is None


def test_block_unblock_and_old_sndsecure() -> None:
    q = queue(4)
    rid = sl.b64(q.recipient_id)
    text = sl.create_line(q).replace(" sk=", " sk= sndSecure=T") + "\n" + f"BLOCK {rid} reason=spam\n"
    store = QueueStore()
    sl.replay(store, text)
    assert store.get_recipient(q.recipient_id).queue_mode == "M"
    assert store.get_recipient(q.recipient_id).status == "blocked,reason=spam"
    sl.replay(store, f"UNBLOCK {rid}\n")
    assert store.get_recipient(q.recipient_id).status == "active"


def test_bad_lines_are_skipped_with_a_warning() -> None:
    good = sl.create_line(queue(5))
    text = f"{good}\nGARBAGE x\nSECURE {sl.b64(b'z' * 24)} {sl.b64(KEY)}\nCREATE rid=AAAA rk=\n{good[:40]}"
    store = QueueStore()
    result = sl.replay(store, text)
    assert len(store) == 1
    assert len(result.warnings) == 4
    assert "line 2: unknown record 'GARBAGE'" in result.warnings[0]
    assert "unknown queue" in result.warnings[1]


def test_open_compacts_and_keeps_a_timed_backup(tmp_path: Path) -> None:
    path = tmp_path / "smp-server-store.log"
    live = QueueStore(journal=sl.StoreLogWriter(path))
    a, b = queue(1), queue(2)
    live.add(a)
    live.add(b)
    live.secure(a, KEY)
    live.delete(b)
    live.journal.close()
    original = path.read_text()
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
    store = QueueStore()
    opened = sl.open_store_log(path, store, now)
    assert opened.queues == 1 and store.get_recipient(a.recipient_id).sender_key == KEY
    assert path.read_text() == sl.create_line(store.get_recipient(a.recipient_id)) + "\n"
    assert opened.backup == tmp_path / "smp-server-store.log.2026-01-02T03:04:05.123456Z"
    assert opened.backup.read_text() == original
    assert not (tmp_path / "smp-server-store.log.start").exists()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    store.delete(store.get_recipient(a.recipient_id))  # the journal is attached and appends
    opened.writer.close()
    assert path.read_text().splitlines()[-1] == f"DELETE {sl.b64(a.recipient_id)}"


def test_interrupted_compaction_is_recovered_from_start_file(tmp_path: Path) -> None:
    """A crash after `log -> log.start` but before the backup: .start holds the full old log."""
    path = tmp_path / "smp-server-store.log"
    full = sl.create_line(queue(1)) + "\n" + sl.create_line(queue(2)) + "\n"
    (tmp_path / "smp-server-store.log.start").write_text(full)
    path.write_text(sl.create_line(queue(1))[:50])  # a half-written compacted log
    store = QueueStore()
    opened = sl.open_store_log(path, store)
    opened.writer.close()
    assert len(store) == 2
    assert (tmp_path / "smp-server-store.log.bak").read_text() == sl.create_line(queue(1))[:50]
    assert not (tmp_path / "smp-server-store.log.start").exists()


def test_missing_log_starts_empty(tmp_path: Path) -> None:
    store = QueueStore()
    opened = sl.open_store_log(tmp_path / "smp-server-store.log", store)
    opened.writer.close()
    assert len(store) == 0 and opened.backup is None
    assert os.listdir(tmp_path) == ["smp-server-store.log"]


def test_backup_pruning_rule() -> None:
    now = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    base = "smp-server-store.log"

    def name(days: float) -> str:
        return f"{base}.{sl.backup_suffix(now - dt.timedelta(days=days))}"

    recent = [name(0.1), name(0.5)]
    old = [name(d) for d in (2, 30, 40, 50, 60)]
    doomed = sl.backups_to_delete(recent + old + [base, base + ".bak", "other.2020-01-01T00:00:00Z"], base, now)
    # the 3 newest older-than-a-day backups are kept even past 21 days; beyond them, >21 days go
    assert sorted(doomed) == sorted([name(50), name(60)])
    assert sl.backups_to_delete(recent + [name(30), name(40)], base, now) == []
