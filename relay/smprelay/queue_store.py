"""In-memory queue and message store, the state every SMP command reads and changes.

Queues are persisted by replaying an append-only store log (``store_log.py``); every
change to a queue record goes through a method of :class:`QueueStore`, which hands the
matching :class:`StoreLogRecord`-shaped event to the attached journal *before* it returns,
so what a client was told is stored survives a SIGKILL. Messages live only in memory and
are saved on SIGINT by ``msg_log.py``.

This module does no I/O and knows nothing of the wire protocol.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

ID_BYTES = 24  # queueIdBytes / msgIdBytes upstream


@dataclass(slots=True)
class NotifierCreds:
    notifier_id: bytes
    notifier_key: bytes  # DER SPKI
    rcv_ntf_dh_secret: bytes  # raw X25519 output, 32 bytes


@dataclass(slots=True)
class LinkData:
    link_id: bytes
    fixed_data: bytes
    user_data: bytes


@dataclass(slots=True)
class QueueRec:
    """One queue, as upstream's ``QueueRec`` (keys are DER SPKI bytes)."""

    recipient_id: bytes
    recipient_keys: list[bytes]
    rcv_dh_secret: bytes
    sender_id: bytes
    sender_key: bytes | None = None
    queue_mode: str | None = None  # "M" messaging, "C" contact, None (pre-v9 queues)
    link: LinkData | None = None
    notifier: NotifierCreds | None = None
    status: str = "active"  # "active" | "off" | "blocked,<info>"
    updated_at: int | None = None  # unix seconds rounded down to the day


@dataclass(slots=True)
class Message:
    msg_id: bytes
    ts: int  # unix seconds
    body: bytes = b""
    notification: bool = False
    quota: bool = False  # the "quota exceeded" marker message


class Journal(Protocol):
    """What the store log must accept; each call is one line, flushed before return."""

    def create(self, q: QueueRec) -> None: ...
    def secure(self, rid: bytes, sender_key: bytes) -> None: ...
    def update_keys(self, rid: bytes, keys: list[bytes]) -> None: ...
    def add_notifier(self, rid: bytes, n: NotifierCreds) -> None: ...
    def delete_notifier(self, rid: bytes) -> None: ...
    def set_link(self, rid: bytes, link: LinkData) -> None: ...
    def delete_link(self, rid: bytes) -> None: ...
    def suspend(self, rid: bytes) -> None: ...
    def delete(self, rid: bytes) -> None: ...
    def update_time(self, rid: bytes, date: int) -> None: ...


class NullJournal:
    """Store log disabled (``[STORE_LOG] enable = off``)."""

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *a, **k: None


def new_id() -> bytes:
    return os.urandom(ID_BYTES)


@dataclass
class QueueStore:
    """Queues by recipient id, with secondary indexes for sender, notifier and link ids."""

    journal: Journal = field(default_factory=NullJournal)
    queues: dict[bytes, QueueRec] = field(default_factory=dict)
    by_sender: dict[bytes, bytes] = field(default_factory=dict)
    by_notifier: dict[bytes, bytes] = field(default_factory=dict)
    by_link: dict[bytes, bytes] = field(default_factory=dict)
    messages: dict[bytes, deque[Message]] = field(default_factory=dict)

    # -- lookups -------------------------------------------------------------------
    def id_taken(self, entity_id: bytes) -> bool:
        return (
            entity_id in self.queues
            or entity_id in self.by_sender
            or entity_id in self.by_notifier
            or entity_id in self.by_link
        )

    def get_recipient(self, rid: bytes) -> QueueRec | None:
        return self.queues.get(rid)

    def get_sender(self, sid: bytes) -> QueueRec | None:
        rid = self.by_sender.get(sid)
        return self.queues.get(rid) if rid is not None else None

    def get_notifier(self, nid: bytes) -> QueueRec | None:
        rid = self.by_notifier.get(nid)
        return self.queues.get(rid) if rid is not None else None

    def get_link(self, link_id: bytes) -> QueueRec | None:
        rid = self.by_link.get(link_id)
        return self.queues.get(rid) if rid is not None else None

    def __len__(self) -> int:
        return len(self.queues)

    def __iter__(self) -> Iterator[QueueRec]:
        return iter(self.queues.values())

    # -- changes (each journalled) -----------------------------------------------
    def add(self, q: QueueRec, *, log: bool = True) -> None:
        """Insert a queue; ``log=False`` when replaying the store log itself."""
        if log:
            self.journal.create(q)
        self.queues[q.recipient_id] = q
        self.by_sender[q.sender_id] = q.recipient_id
        if q.notifier is not None:
            self.by_notifier[q.notifier.notifier_id] = q.recipient_id
        if q.link is not None:
            self.by_link[q.link.link_id] = q.recipient_id
        # no empty deque per queue: it would cost ~600 bytes for each of 10,000s of idle queues

    def secure(self, q: QueueRec, sender_key: bytes) -> None:
        self.journal.secure(q.recipient_id, sender_key)
        q.sender_key = sender_key

    def update_keys(self, q: QueueRec, keys: list[bytes]) -> None:
        self.journal.update_keys(q.recipient_id, keys)
        q.recipient_keys = list(keys)

    def add_notifier(self, q: QueueRec, n: NotifierCreds) -> None:
        self.journal.add_notifier(q.recipient_id, n)
        if q.notifier is not None:
            self.by_notifier.pop(q.notifier.notifier_id, None)
        q.notifier = n
        self.by_notifier[n.notifier_id] = q.recipient_id

    def delete_notifier(self, q: QueueRec) -> None:
        if q.notifier is None:
            return
        self.journal.delete_notifier(q.recipient_id)
        self.by_notifier.pop(q.notifier.notifier_id, None)
        q.notifier = None

    def set_link(self, q: QueueRec, link: LinkData) -> None:
        self.journal.set_link(q.recipient_id, link)
        if q.link is not None:
            self.by_link.pop(q.link.link_id, None)
        q.link = link
        self.by_link[link.link_id] = q.recipient_id

    def delete_link(self, q: QueueRec) -> None:
        if q.link is None:
            return
        self.journal.delete_link(q.recipient_id)
        self.by_link.pop(q.link.link_id, None)
        q.link = None

    def suspend(self, q: QueueRec) -> None:
        self.journal.suspend(q.recipient_id)
        q.status = "off"

    def delete(self, q: QueueRec) -> None:
        self.journal.delete(q.recipient_id)
        self.queues.pop(q.recipient_id, None)
        self.by_sender.pop(q.sender_id, None)
        if q.notifier is not None:
            self.by_notifier.pop(q.notifier.notifier_id, None)
        if q.link is not None:
            self.by_link.pop(q.link.link_id, None)
        self.messages.pop(q.recipient_id, None)

    def touch(self, q: QueueRec, now: int) -> None:
        """Record the queue's ``updated_at`` day, at most one log line per queue per day."""
        day = now - now % 86400
        if q.updated_at != day:
            self.journal.update_time(q.recipient_id, day)
            q.updated_at = day

    # -- messages (memory only) ----------------------------------------------------
    def queue_messages(self, rid: bytes) -> deque[Message]:
        return self.messages.setdefault(rid, deque())

    def message_count(self) -> int:
        return sum(len(m) for m in self.messages.values())
