"""Daily statistics CSV: upstream's 96 columns in order, period columns, resets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from smprelay import stats
from smprelay.queue_store import Message, NotifierCreds, QueueRec, QueueStore

UTC = dt.timezone.utc


def store(n_queues: int, n_msgs: int) -> QueueStore:
    s = QueueStore()
    for i in range(n_queues):
        q = QueueRec(bytes([i]) * 24, [b"k"], b"d" * 32, bytes([i + 100]) * 24)
        if i == 0:
            q.notifier = NotifierCreds(b"n" * 24, b"k", b"s" * 32)
        s.add(q)
    for i in range(n_msgs):
        s.queue_messages(bytes([0]) * 24).append(Message(bytes([i]) * 24, 1))
    return s


def test_column_positions_match_upstream() -> None:
    c = stats.COLUMNS
    assert len(c) == 96
    one_based = {1: "$fromTime", 2: "qCreated", 4: "qDeletedAll", 5: "msgSent", 15: "$qCount", 17: "msgExpired",
                 20: "pRelays_pRequests", 39: "pMsgFwdsOwn_pErrorsOther", 40: "pMsgFwdsRecv", 41: "qSub",
                 51: "0", 52: "msgRecvGet", 58: "0", 61: "$queueCount", 67: "$notifierCount", 76: "$ntfCount",
                 81: "rcvServices_srvAssocNew", 96: "ntfServices_srvSubEnd"}  # fmt: skip
    for pos, name in one_based.items():
        assert c[pos - 1] == name, pos


def test_line_values_and_reset() -> None:
    s = stats.ServerStats(dt.date(2026, 3, 3))
    s.inc("qCreated", 3)
    s.inc("msg_sent", 2)  # the protocol side counts in snake_case
    s.inc("ntf_new_created")  # not a CSV column: kept aside, no error
    s.msg_queue_active(b"a" * 24)
    s.msg_queue_active(b"a" * 24)
    s.msg_queue_active(b"b" * 24)
    now = dt.datetime(2026, 3, 4, 0, 0, 1, tzinfo=UTC)  # a Wednesday, not the 1st
    fields = stats.csv_line(s, store(2, 5), now).split(",")
    assert len(fields) == 96
    assert fields[0] == "2026-03-03"
    assert (fields[1], fields[4]) == ("3", "2")
    assert (fields[6], fields[7], fields[8]) == ("2", "", "")  # day count; week/month empty
    assert (fields[14], fields[15], fields[60], fields[66]) == ("2", "5", "2", "1")
    stats.reset_period(s, now)
    assert s.from_time == dt.date(2026, 3, 4) and s.counters["qCreated"] == 0
    assert s.msg_queues["day"] == set() and len(s.msg_queues["week"]) == 2  # week continues
    assert stats.csv_line(s, store(0, 0), now).split(",")[1] == "0"


def test_week_and_month_columns_on_monday_the_first() -> None:
    s = stats.ServerStats(dt.date(2026, 5, 31))
    s.msg_queue_active(b"a" * 24)
    now = dt.datetime(2026, 6, 1, tzinfo=UTC)  # Monday, 1 June 2026
    fields = stats.csv_line(s, store(1, 0), now).split(",")
    assert (fields[6], fields[7], fields[8]) == ("1", "1", "1")
    stats.reset_period(s, now)
    assert all(not v for v in s.msg_queues.values())


def test_append_and_next_midnight(tmp_path: Path) -> None:
    p = tmp_path / "smp-server-stats.daily.log"
    stats.append_line(p, "a")
    stats.append_line(p, "b")
    assert p.read_text() == "a\nb\n"
    assert stats.next_midnight(dt.datetime(2026, 2, 28, 23, 59, tzinfo=UTC)) == dt.datetime(2026, 3, 1, tzinfo=UTC)


def test_snapshot_round_trip() -> None:
    s = stats.ServerStats(dt.date(2026, 3, 3))
    s.inc("qCreated", 7)
    s.inc("ntfServices_srvSubEnd", 2)
    s.msg_queue_active(b"a" * 24)
    s.ntf_queue_active(b"b" * 24)
    back = stats.restore_snapshot(stats.snapshot(s), dt.date(2030, 1, 1))
    assert back.from_time == s.from_time and back.counters == s.counters
    assert back.msg_queues == s.msg_queues and back.ntf_queues == s.ntf_queues
    broken = stats.restore_snapshot("fromTime=garbage\nqCreated=x\nmsgQueues_day=zz\nnonsense", dt.date(2030, 1, 1))
    assert broken.from_time == dt.date(2030, 1, 1) and broken.counters["qCreated"] == 0
