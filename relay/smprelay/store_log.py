"""The append-only queue store log ``smp-server-store.log`` (reference §5.1, upstream text format).

One record per line, each handed to the kernel in a single ``write`` before the store method
returns, so a queue a client was told about survives SIGKILL. On start the log is replayed and
compacted (one ``CREATE`` per live queue), with upstream's crash-safety dance: the old log is
renamed ``.start`` while the compacted one is written, and only then becomes a timestamped
backup; if ``.start`` is found on the next start, the compaction was interrupted and ``.start``
(the complete old log) wins.

Encoding/decoding of records is pure; :class:`StoreLogWriter` and :func:`open_store_log` do I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from .queue_store import LinkData, NotifierCreds, NullJournal, QueueRec, QueueStore

BACKUP_KEEP_DAYS = 21
BACKUP_KEEP_MIN = 3


class StoreLogError(ValueError):
    """A line of the store log that cannot be parsed."""


# -- encoding -------------------------------------------------------------------------------


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii")


def unb64(s: str) -> bytes:
    """base64url, padded or not (upstream's parser accepts both)."""
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except ValueError:
        raise StoreLogError(f"invalid base64url {s!r}") from None


def _keys(keys: list[bytes]) -> str:
    return ",".join(b64(k) for k in keys)


def encode_queue_rec(q: QueueRec) -> str:
    """``rk=.. rdh=.. sid=.. sk=..`` and the optional fields, in upstream order."""
    parts = [
        f"rk={_keys(q.recipient_keys)}",
        f"rdh={b64(q.rcv_dh_secret)}",
        f"sid={b64(q.sender_id)}",
        f"sk={b64(q.sender_key) if q.sender_key is not None else ''}",
    ]
    if q.queue_mode is not None:
        parts.append(f"queue_mode={q.queue_mode}")
    if q.link is not None:
        parts.append(f"link_id={b64(q.link.link_id)} queue_data={b64(q.link.fixed_data)} {b64(q.link.user_data)}")
    if q.notifier is not None:
        n = q.notifier
        parts.append(f"notifier={b64(n.notifier_id)} {b64(n.notifier_key)} {b64(n.rcv_ntf_dh_secret)}")
    if q.updated_at is not None:
        parts.append(f"updated_at={q.updated_at}")
    if q.status != "active":
        parts.append(f"status={q.status}")
    return " ".join(parts)


def create_line(q: QueueRec) -> str:
    return f"CREATE rid={b64(q.recipient_id)} {encode_queue_rec(q)}"


def _int(s: str, what: str) -> int:
    if not s.lstrip("-").isdigit():
        raise StoreLogError(f"invalid {what} {s!r}")
    return int(s)


def decode_queue_rec(rid: bytes, tokens: list[str]) -> QueueRec:
    """Parse the tokens after ``rid=..`` of a ``CREATE`` line."""
    fields: dict[str, str] = {}
    link: LinkData | None = None
    notifier: NotifierCreds | None = None
    i = 0
    while i < len(tokens):
        key, sep, value = tokens[i].partition("=")
        if not sep:
            raise StoreLogError(f"unexpected token {tokens[i]!r}")
        if key == "queue_data":
            if link is None or i + 1 >= len(tokens):
                raise StoreLogError("queue_data without link_id or user data")
            link.fixed_data, link.user_data = unb64(value), unb64(tokens[i + 1])
            i += 2
            continue
        if key == "link_id":
            link = LinkData(unb64(value), b"", b"")
        elif key == "notifier":
            if i + 2 >= len(tokens):
                raise StoreLogError("notifier needs id, key and DH secret")
            notifier = NotifierCreds(unb64(value), unb64(tokens[i + 1]), unb64(tokens[i + 2]))
            i += 3
            continue
        elif key == "sndSecure":  # logs from before queue modes
            fields["queue_mode"] = "M" if value == "T" else "C"
        else:
            fields[key] = value
        i += 1
    for required in ("rk", "rdh", "sid", "sk"):
        if required not in fields:
            raise StoreLogError(f"CREATE without {required}=")
    mode = fields.get("queue_mode")
    if mode not in (None, "M", "C"):
        raise StoreLogError(f"invalid queue_mode {mode!r}")
    return QueueRec(
        recipient_id=rid,
        recipient_keys=[unb64(k) for k in fields["rk"].split(",")],
        rcv_dh_secret=unb64(fields["rdh"]),
        sender_id=unb64(fields["sid"]),
        sender_key=unb64(fields["sk"]) if fields["sk"] else None,
        queue_mode=mode,
        link=link,
        notifier=notifier,
        status=fields.get("status", "active"),
        updated_at=_int(fields["updated_at"], "updated_at") if "updated_at" in fields else None,
    )


@dataclass
class ReplayResult:
    lines: int = 0
    services: list[str] = field(default_factory=list)  # NEW_SERVICE lines, carried over verbatim
    warnings: list[str] = field(default_factory=list)


_QUEUE_RECORDS = frozenset(
    "SECURE KEYS NOTIFIER NDELETE LINK LDELETE SUSPEND BLOCK UNBLOCK DELETE TIME QUEUE_SERVICE".split()
)


def apply_line(store: QueueStore, line: str, result: ReplayResult) -> None:
    """Apply one record to the store without journalling it (replay)."""
    tag, _, rest = line.partition(" ")
    args = rest.split(" ")
    if tag == "CREATE":
        if not args or not args[0].startswith("rid="):
            raise StoreLogError("CREATE without rid=")
        q = decode_queue_rec(unb64(args[0][4:]), args[1:])
        old = store.get_recipient(q.recipient_id)
        if old is not None:
            store.delete(old)
        store.add(q, log=False)
        return
    if tag == "NEW_SERVICE":
        result.services.append(line)
        return
    if tag not in _QUEUE_RECORDS:
        raise StoreLogError(f"unknown record {tag!r}")
    if not args or not args[0]:
        raise StoreLogError(f"{tag} without queue id")
    rid = unb64(args[0])
    q = store.get_recipient(rid)
    if q is None:
        result.warnings.append(f"{tag} for unknown queue {args[0]}")
        return
    journal = store.journal
    try:  # apply through the store so indexes stay right, with the journal detached
        store.journal = NullJournal()
        if tag == "SECURE":
            store.secure(q, unb64(args[1]))
        elif tag == "KEYS":
            store.update_keys(q, [unb64(k) for k in args[1].split(",")])
        elif tag == "NOTIFIER":
            store.add_notifier(q, NotifierCreds(unb64(args[1]), unb64(args[2]), unb64(args[3])))
        elif tag == "NDELETE":
            store.delete_notifier(q)
        elif tag == "LINK":
            store.set_link(q, LinkData(unb64(args[1]), unb64(args[2]), unb64(args[3])))
        elif tag == "LDELETE":
            store.delete_link(q)
        elif tag == "SUSPEND":
            store.suspend(q)
        elif tag == "BLOCK":
            info = rest.split(" ", 1)[1] if " " in rest else ""
            q.status = "blocked," + info
        elif tag == "UNBLOCK":
            q.status = "active"
        elif tag == "DELETE":
            store.delete(q)
        elif tag == "TIME":
            q.updated_at = _int(args[1], "date")
        elif tag == "QUEUE_SERVICE":
            result.warnings.append(f"QUEUE_SERVICE ignored (service clients are not supported): {args[0]}")
        else:
            raise StoreLogError(f"unknown record {tag!r}")
    except IndexError:
        raise StoreLogError(f"{tag}: missing fields") from None
    finally:
        store.journal = journal


def replay(store: QueueStore, text: str) -> ReplayResult:
    """Apply every line; a line that cannot be parsed is reported and skipped, as upstream does."""
    result = ReplayResult()
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        result.lines += 1
        try:
            apply_line(store, line, result)
        except StoreLogError as e:
            result.warnings.append(f"line {n}: {e}; skipped")
    return result


def compacted(store: QueueStore, services: list[str]) -> str:
    """The compacted log: all services, then one ``CREATE`` per live queue."""
    lines = list(services) + [create_line(q) for q in store]
    return "".join(line + "\n" for line in lines)


# -- the journal ----------------------------------------------------------------------------


class StoreLogWriter:
    """The :class:`~smprelay.queue_store.Journal`: one unbuffered ``write`` per record."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _write(self, line: str) -> None:
        data = (line + "\n").encode("ascii")
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def create(self, q: QueueRec) -> None:
        self._write(create_line(q))

    def secure(self, rid: bytes, sender_key: bytes) -> None:
        self._write(f"SECURE {b64(rid)} {b64(sender_key)}")

    def update_keys(self, rid: bytes, keys: list[bytes]) -> None:
        self._write(f"KEYS {b64(rid)} {_keys(keys)}")

    def add_notifier(self, rid: bytes, n: NotifierCreds) -> None:
        self._write(f"NOTIFIER {b64(rid)} {b64(n.notifier_id)} {b64(n.notifier_key)} {b64(n.rcv_ntf_dh_secret)}")

    def delete_notifier(self, rid: bytes) -> None:
        self._write(f"NDELETE {b64(rid)}")

    def set_link(self, rid: bytes, link: LinkData) -> None:
        self._write(f"LINK {b64(rid)} {b64(link.link_id)} {b64(link.fixed_data)} {b64(link.user_data)}")

    def delete_link(self, rid: bytes) -> None:
        self._write(f"LDELETE {b64(rid)}")

    def suspend(self, rid: bytes) -> None:
        self._write(f"SUSPEND {b64(rid)}")

    def delete(self, rid: bytes) -> None:
        self._write(f"DELETE {b64(rid)}")

    def update_time(self, rid: bytes, date: int) -> None:
        self._write(f"TIME {b64(rid)} {date}")


# -- start-up: recover, replay, compact, back up --------------------------------------------


def backup_suffix(now: dt.datetime) -> str:
    """Timestamp suffix like upstream's ``iso8601Show``: ``2024-06-13T10:00:00.123456Z``."""
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_suffix(s: str) -> dt.datetime | None:
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(s, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    return None


def backups_to_delete(names: list[str], base: str, now: dt.datetime) -> list[str]:
    """Timed backups older than 21 days, always keeping those <24 h old and 3 older ones."""
    dated = []
    for name in names:
        if name.startswith(base + "."):
            ts = _parse_suffix(name[len(base) + 1 :])
            if ts is not None:
                dated.append((ts, name))
    older = sorted((d for d in dated if now - d[0] >= dt.timedelta(days=1)), reverse=True)
    return [name for ts, name in older[BACKUP_KEEP_MIN:] if now - ts > dt.timedelta(days=BACKUP_KEEP_DAYS)]


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class OpenedStoreLog:
    writer: StoreLogWriter
    replay: ReplayResult
    queues: int
    backup: Path | None


def open_store_log(path: Path, store: QueueStore, now: dt.datetime | None = None) -> OpenedStoreLog:
    """Recover an interrupted compaction, replay, compact, back up, and attach the journal."""
    path = Path(path)
    now = now or dt.datetime.now(dt.timezone.utc)
    start = path.with_name(path.name + ".start")
    if start.exists():
        # the previous compaction did not finish: .start is the complete old log
        if path.exists():
            os.replace(path, path.with_name(path.name + ".bak"))
        os.replace(start, path)
    backup: Path | None = None
    result = ReplayResult()
    if path.exists():
        result = replay(store, path.read_text(encoding="ascii", errors="replace"))
        os.replace(path, start)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(compacted(store, result.services))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        backup = path.with_name(f"{path.name}.{backup_suffix(now)}")
        os.replace(start, backup)
        _fsync_dir(path.parent)
        for name in backups_to_delete(os.listdir(path.parent), path.name, now):
            os.unlink(path.parent / name)
    writer = StoreLogWriter(path)
    store.journal = writer
    return OpenedStoreLog(writer, result, len(store), backup)
