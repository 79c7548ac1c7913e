"""`smpfleet`: thin entry points around the deploy (pyinfra does the work).

    smpfleet check INVENTORY            validate the inventory only (no host is contacted)
    smpfleet deploy INVENTORY [--dry]   = pyinfra -y INVENTORY deploy.py [--dry]
    smpfleet keystore ensure ...        the key store CLI (for the Ansible role)
    smpfleet verify servers.json ...    prove every published address works (smpfleet.verify)
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

from .settings import InventoryError, parse_fleet

DEPLOY_FILE = Path(__file__).resolve().parent.parent / "deploy.py"


def _inventory_hosts(path: Path) -> dict[str, dict]:
    """Host name -> data from a pyinfra inventory file: groups are lists of names or (name, data)
    tuples, or a (list, group data) pair."""
    module = runpy.run_path(str(path))
    hosts: dict[str, dict] = {}
    for key, value in module.items():
        if key.startswith("_") or not isinstance(value, list | tuple):
            continue
        group_data: dict = {}
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict) \
                and isinstance(value[0], list | tuple):
            value, group_data = value
        for entry in value:
            name, data = (entry, {}) if isinstance(entry, str) else entry
            if not isinstance(name, str) or not isinstance(data, dict):
                continue
            hosts[name] = {**group_data, **hosts.get(name, {}), **data}
    return hosts


def check(inventory: Path) -> int:
    try:
        fleet = parse_fleet(_inventory_hosts(inventory), inventory.resolve().parent)
    except InventoryError as e:
        print(f"smpfleet: {e}", file=sys.stderr)
        return 2
    for s in fleet.values():
        kind = "onion-only" if s.onion_only else ("public+onion" if s.onion else "public")
        print(f"{s.name}: {kind}, {s.sign_algorithm}, ports {','.join(map(str, s.ports))}, "
              f"password {s.password_policy}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "check" and len(rest) == 1:
        return check(Path(rest[0]))
    if cmd == "deploy" and rest:
        extra = [a for a in rest[1:] if a == "--dry"]
        pyinfra = Path(sys.executable).with_name("pyinfra")
        return subprocess.call([str(pyinfra), "-y", *extra, rest[0], str(DEPLOY_FILE)])
    if cmd == "keystore":
        from . import keystore

        return keystore.main(rest)
    if cmd == "verify":
        from . import verify

        return verify.main(rest)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
