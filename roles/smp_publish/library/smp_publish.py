#!/usr/bin/python
"""Write the fleet files (servers.json, addresses.txt, <host>.png) with smpfleet.publish."""
from __future__ import annotations

DOCUMENTATION = r"""
module: smp_publish
short_description: Publish the relay fleet's addresses with smpfleet.publish
description:
  - Composes every relay's smp:// address and writes servers.json, addresses.txt and one QR code
    per relay with C(smpfleet.publish), the pyinfra deploy's code, so both tools publish the same
    files. Entries of fleet hosts not in this run are kept; hosts no longer in the fleet are
    dropped. Writes only when something differs. Run on the control machine.
options:
  servers:
    description: One entry per relay.
    type: list
    elements: dict
    required: true
    suboptions:
      host: {type: str, required: true, description: Inventory host name.}
      fingerprint: {type: str, required: true, description: CA fingerprint.}
      password: {type: str, no_log: true, description: Server password (none for open relays).}
      hosts: {type: list, elements: str, required: true, description: Public host first, onion second.}
      ports: {type: list, elements: int, required: true, description: Relay ports.}
      publish_dir: {type: path, required: true, description: Where this relay is published.}
  fleet:
    description: Every inventory host name (entries of other hosts are dropped).
    type: list
    elements: str
    required: true
"""

RETURN = r"""
table:
  description: The address table, passwords masked.
  type: str
  returned: success
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    server_spec = {
        "host": {"type": "str", "required": True},
        "fingerprint": {"type": "str", "required": True},
        "password": {"type": "str", "no_log": True},
        "hosts": {"type": "list", "elements": "str", "required": True},
        "ports": {"type": "list", "elements": "int", "required": True},
        "publish_dir": {"type": "path", "required": True},
    }
    module = AnsibleModule(
        argument_spec={
            "servers": {"type": "list", "elements": "dict", "required": True, "options": server_spec},
            "fleet": {"type": "list", "elements": "str", "required": True},
        },
        supports_check_mode=True,
    )
    try:
        from smpfleet import publish
    except ImportError as e:
        module.fail_json(msg=f"cannot import smpfleet ({e}): run ansible-playbook from the smpfleet venv")
    fleet = set(module.params["fleet"])
    by_dir: dict[Path, list] = {}
    for s in module.params["servers"]:
        entry = publish.server_entry(s["host"], s["fingerprint"], s["password"] or None, s["hosts"], s["ports"])
        by_dir.setdefault(Path(s["publish_dir"]), []).append(entry)
    changed, tables = False, []
    for directory, entries in sorted(by_dir.items()):
        if not all(publish.publish_is_current(directory, e, fleet) for e in entries):
            changed = True
            if not module.check_mode:
                try:
                    current = publish.read_published(directory)
                except (OSError, ValueError, KeyError):
                    current = []
                names = {e.host for e in entries}
                servers = sorted([*(s for s in current if s.host in fleet and s.host not in names), *entries],
                                 key=lambda s: s.host)
                publish.write_published(directory, servers)
        if not module.check_mode or not changed:
            tables.append(f"{directory}:\n" + publish.summary_table(publish.read_published(directory)))
    module.exit_json(changed=changed, table="\n\n".join(tables), directories=[str(d) for d in by_dir])


if __name__ == "__main__":
    main()
