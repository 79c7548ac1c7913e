"""How long a relay restart spends on persistence: store-log replay + compaction, and the
message log save/restore, for N queues. Prints numbers; asserts nothing.

    .venv/bin/python bench/store_log_restart.py [queues] [messages_per_queue]
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from smprelay import msg_log, store_log
from smprelay.queue_store import Message, QueueRec, QueueStore

KEY = bytes.fromhex("302a300506032b6570032100") + bytes(32)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_q = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "smp-server-store.log"
        live = QueueStore(journal=store_log.StoreLogWriter(path))
        t = time.perf_counter()
        for _ in range(n):
            q = QueueRec(os.urandom(24), [KEY], os.urandom(32), os.urandom(24), queue_mode="M")
            live.add(q)
            live.secure(q, KEY)
        dt_write = time.perf_counter() - t
        live.journal.close()
        for q in live:
            live.queue_messages(q.recipient_id).extend(
                Message(os.urandom(24), 1_700_000_000, os.urandom(200)) for _ in range(per_q)
            )
        t = time.perf_counter()
        saved = msg_log.save(Path(d) / "smp-server-messages.log", live)
        dt_save = time.perf_counter() - t
        size = path.stat().st_size
        store = QueueStore()
        t = time.perf_counter()
        opened = store_log.open_store_log(path, store)
        dt_open = time.perf_counter() - t
        opened.writer.close()
        t = time.perf_counter()
        res = msg_log.restore(Path(d) / "smp-server-messages.log", store, now=1_700_000_001, ttl=None)
        dt_restore = time.perf_counter() - t
        assert len(store) == n and res.restored == saved
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"queues={n} log_lines={2 * n} log_bytes={size}")
    print(f"journal write (CREATE+SECURE, one write() each): {dt_write:.2f} s, {2 * n / dt_write:,.0f} records/s")
    print(f"start: replay+compact+backup: {dt_open:.2f} s, {n / dt_open:,.0f} queues/s")
    print(f"messages={saved}: save {dt_save:.2f} s, restore {dt_restore:.2f} s")
    print(f"peak RSS (both stores in memory): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
