"""Server counters and the daily CSV ``smp-server-stats.daily.log`` (reference §5.3).

The protocol side increments counters by their upstream names (``stats.inc("qCreated")``,
``stats.msg_queue_active(rid)``); :func:`csv_line` renders one day in upstream's 96-column
order. Event counters are reset after each line; gauges (queue, message, notifier counts)
are read from the store when the line is written. Pure except :func:`append_line`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .queue_store import QueueStore

_PROXY = ("pRequests", "pSuccesses", "pErrorsConnect", "pErrorsCompat", "pErrorsOther")
_SERVICE = (
    "srvAssocNew", "srvAssocDuplicate", "srvAssocUpdated", "srvAssocRemoved",
    "srvSubCount", "srvSubDuplicate", "srvSubQueues", "srvSubEnd",
)  # fmt: skip

# The 96 columns, in order. "0" = a column upstream keeps as a constant zero; "$x" = a value
# computed when the line is written (date, active-queue counts, gauges from the store).
COLUMNS: tuple[str, ...] = (
    "$fromTime", "qCreated", "qSecured", "qDeletedAll", "msgSent", "msgRecv",
    "$dayMsgQueues", "$weekMsgQueues", "$monthMsgQueues", "msgSentNtf", "msgRecvNtf",
    "$dayCountNtf", "$weekCountNtf", "$monthCountNtf", "$qCount", "$msgCount", "msgExpired",
    "qDeletedNew", "qDeletedSecured",
    *(f"{group}_{c}" for group in ("pRelays", "pRelaysOwn", "pMsgFwds", "pMsgFwdsOwn") for c in _PROXY),
    "pMsgFwdsRecv", "qSub", "qSubAuth", "qSubDuplicate", "qSubProhibited", "msgSentAuth",
    "msgSentQuota", "msgSentLarge", "msgNtfs", "msgNtfNoSub", "msgNtfLost", "0", "msgRecvGet",
    "msgGet", "msgGetNoMsg", "msgGetAuth", "msgGetDuplicate", "msgGetProhibited", "0", "0", "0",
    "$queueCount", "ntfCreated", "ntfDeleted", "ntfSub", "ntfSubAuth", "ntfSubDuplicate",
    "$notifierCount", "qDeletedAllB", "qSubAllB", "qSubEnd", "qSubEndB", "ntfDeletedB", "ntfSubB",
    "msgNtfsB", "msgNtfExpired", "$ntfCount", "$rcvServiceCount", "$ntfServiceCount",
    "$rcvServiceQueuesCount", "$ntfServiceQueuesCount",
    *(f"rcvServices_{c}" for c in _SERVICE), *(f"ntfServices_{c}" for c in _SERVICE),
)  # fmt: skip
assert len(COLUMNS) == 96

COUNTERS: tuple[str, ...] = tuple(c for c in COLUMNS if c != "0" and not c.startswith("$"))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _qhash(rid: bytes) -> bytes:
    return hashlib.sha256(rid).digest()[:16]  # upstream counts queues by hash, not by id


@dataclass
class ServerStats:
    """Event counters since the last daily line, and the queues active per day/week/month."""

    from_time: dt.date
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    msg_queues: dict[str, set[bytes]] = field(default_factory=lambda: {"day": set(), "week": set(), "month": set()})
    ntf_queues: dict[str, set[bytes]] = field(default_factory=lambda: {"day": set(), "week": set(), "month": set()})

    extra: dict[str, int] = field(default_factory=dict)  # counted but not a CSV column

    def inc(self, name: str, n: int = 1) -> None:
        """Count an event by its upstream name, camelCase (``qCreated``) or snake_case (``q_created``)."""
        key = name if name in self.counters else _camel(name)
        if key in self.counters:
            self.counters[key] += n
        else:
            self.extra[key] = self.extra.get(key, 0) + n

    def msg_queue_active(self, rid: bytes) -> None:
        h = _qhash(rid)
        for s in self.msg_queues.values():
            s.add(h)

    def ntf_queue_active(self, rid: bytes) -> None:
        h = _qhash(rid)
        for s in self.ntf_queues.values():
            s.add(h)


def csv_line(stats: ServerStats, store: QueueStore, now: dt.datetime, ntf_count: int = 0) -> str:
    """One CSV line for the period that started at ``stats.from_time``, written at ``now``."""
    monday = now.weekday() == 0
    first = now.day == 1
    computed = {
        "$fromTime": stats.from_time.isoformat(),
        "$dayMsgQueues": str(len(stats.msg_queues["day"])),
        "$weekMsgQueues": str(len(stats.msg_queues["week"])) if monday else "",
        "$monthMsgQueues": str(len(stats.msg_queues["month"])) if first else "",
        "$dayCountNtf": str(len(stats.ntf_queues["day"])),
        "$weekCountNtf": str(len(stats.ntf_queues["week"])) if monday else "",
        "$monthCountNtf": str(len(stats.ntf_queues["month"])) if first else "",
        "$qCount": str(len(store)),
        "$msgCount": str(store.message_count()),
        "$queueCount": str(len(store)),
        "$notifierCount": str(sum(1 for q in store if q.notifier is not None)),
        "$ntfCount": str(ntf_count),
        "$rcvServiceCount": "0",
        "$ntfServiceCount": "0",
        "$rcvServiceQueuesCount": "0",
        "$ntfServiceQueuesCount": "0",
    }
    return ",".join(
        "0" if c == "0" else computed[c] if c.startswith("$") else str(stats.counters[c]) for c in COLUMNS
    )


def reset_period(stats: ServerStats, now: dt.datetime) -> None:
    """After a line: zero the event counters, start a new day (and week/month when they turned)."""
    stats.counters = dict.fromkeys(COUNTERS, 0)
    stats.from_time = now.date()
    for sets in (stats.msg_queues, stats.ntf_queues):
        sets["day"] = set()
        if now.weekday() == 0:
            sets["week"] = set()
        if now.day == 1:
            sets["month"] = set()


def snapshot(stats: ServerStats) -> str:
    """``key=value`` lines of the running period, saved on stop so a restart does not lose a day.

    Same idea and file as upstream's ``smp-server-stats.log``; the keys are this relay's
    counter names, and keys a reader does not know are ignored.
    """
    lines = [f"fromTime={stats.from_time.isoformat()}"]
    lines += [f"{k}={v}" for k, v in stats.counters.items()]
    for kind, sets in (("msgQueues", stats.msg_queues), ("ntfQueues", stats.ntf_queues)):
        for period, hashes in sets.items():
            lines.append(f"{kind}_{period}={','.join(sorted(h.hex() for h in hashes))}")
    return "".join(line + "\n" for line in lines)


def restore_snapshot(text: str, today: dt.date) -> ServerStats:
    """The period saved by :func:`snapshot`; malformed or unknown lines are skipped."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        from_time = dt.date.fromisoformat(values.get("fromTime", ""))
    except ValueError:
        from_time = today
    s = ServerStats(from_time)
    for k in s.counters:
        if values.get(k, "").isdigit():
            s.counters[k] = int(values[k])
    for kind, sets in (("msgQueues", s.msg_queues), ("ntfQueues", s.ntf_queues)):
        for period in sets:
            try:
                sets[period] = {bytes.fromhex(h) for h in values.get(f"{kind}_{period}", "").split(",") if h}
            except ValueError:
                pass
    return s


def append_line(path: Path, line: str) -> None:
    with open(path, "a", encoding="ascii") as f:
        f.write(line + "\n")


def next_midnight(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
