"""Print the fleet's address table once, after pyinfra has finished (also on no-change runs)."""

from __future__ import annotations

import atexit
from pathlib import Path

from . import publish

_registered: set[Path] = set()


def _print(directory: Path, state) -> None:
    if state is not None and state.failed_hosts:
        names = ", ".join(sorted(h.name for h in state.failed_hosts))
        print(f"\n--> smpfleet: not published for failed hosts: {names}")
    try:
        servers = publish.read_published(directory)
    except (OSError, ValueError, KeyError):
        return
    print(f"\n--> Published relay addresses ({directory}/servers.json, addresses.txt, <host>.png):\n")
    print(publish.summary_table(servers))
    print()


def print_summary_at_exit(directory: Path, state=None) -> None:
    """``state``: the pyinfra State, to name hosts that failed and so were not published."""
    directory = Path(directory)
    if directory not in _registered:
        _registered.add(directory)
        atexit.register(_print, directory, state)
