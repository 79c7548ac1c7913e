"""Undelivered messages across a clean stop: ``smp-server-messages.log`` (reference §5.2).

Saved when the server stops on a signal, one ``v3`` line per message with queues grouped;
replayed on the next start (messages past their TTL are dropped and counted as expired) and
then renamed ``.bak``, so a second start never delivers the same messages twice.
Encoding is pure; :func:`save` and :func:`restore` do the file I/O.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .queue_store import Message, QueueStore
from .store_log import StoreLogError, b64, unb64


class MsgLogError(Exception):
    """Restoring messages failed in a way that must stop the start (e.g. unknown queue)."""


def encode_message(rid: bytes, m: Message) -> str:
    head = f"v3 {b64(rid)} {b64(m.msg_id)} {m.ts}"
    if m.quota:
        return f"{head} quota"
    return f"{head} flags={'T' if m.notification else 'F'} {b64(m.body)}"


def decode_message(line: str) -> tuple[bytes, Message]:
    parts = line.split(" ", 5)
    if len(parts) < 5 or parts[0] != "v3":
        raise StoreLogError("expected `v3 <queue> <msgId> <ts> flags=<T|F> <body>` or `... quota`")
    _, rid, msg_id, ts, kind = parts[:5]
    if not ts.isdigit():
        raise StoreLogError(f"invalid timestamp {ts!r}")
    if kind == "quota" and len(parts) == 5:
        return unb64(rid), Message(unb64(msg_id), int(ts), quota=True)
    if kind in ("flags=T", "flags=F") and len(parts) == 6:
        return unb64(rid), Message(unb64(msg_id), int(ts), unb64(parts[5]), notification=kind == "flags=T")
    raise StoreLogError(f"invalid message flags {kind!r}")


def encode_all(store: QueueStore) -> str:
    return "".join(
        encode_message(rid, m) + "\n" for rid, msgs in store.messages.items() if rid in store.queues for m in msgs
    )


def save(path: Path, store: QueueStore) -> int:
    """Write every undelivered message (temp file + rename, 0600); returns how many."""
    path = Path(path)
    text = encode_all(store)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return text.count("\n")


@dataclass
class RestoreResult:
    restored: int = 0
    expired: int = 0
    warnings: list[str] = field(default_factory=list)


def restore(
    path: Path, store: QueueStore, *, now: int, ttl: int | None, skip_warnings: bool = False
) -> RestoreResult:
    """Load saved messages into their queues, then rename the file ``.bak``.

    Messages for queues that do not exist stop the start (``MsgLogError``) unless
    ``skip_warnings``: silently dropping them would lose data the operator may want back.
    The file is renamed only after every line was accepted, so a refused start loses nothing.
    """
    path = Path(path)
    result = RestoreResult()
    if not path.exists():
        return result
    pending: list[tuple[bytes, Message]] = []
    for n, line in enumerate(path.read_text(encoding="ascii", errors="replace").split("\n"), 1):
        if not line.strip():
            continue
        try:
            rid, m = decode_message(line)
        except StoreLogError as e:
            msg = f"{path}: line {n}: {e}"
            if not skip_warnings:
                raise MsgLogError(msg + " (use `smp-server start --skip-warnings` to drop it)") from None
            result.warnings.append(msg + "; skipped")
            continue
        if rid not in store.queues:
            msg = f"{path}: line {n}: message for unknown queue {b64(rid)}"
            if not skip_warnings:
                raise MsgLogError(msg + " (use `smp-server start --skip-warnings` to drop it)")
            result.warnings.append(msg + "; skipped")
            continue
        if ttl is not None and m.ts < now - ttl:
            result.expired += 1
            continue
        pending.append((rid, m))
    for rid, m in pending:
        store.messages.setdefault(rid, deque()).append(m)
    result.restored = len(pending)
    os.replace(path, path.with_name(path.name + ".bak"))
    return result
