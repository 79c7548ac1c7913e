#!/usr/bin/python
"""Validate every host's smp_* data with smpfleet.settings (the pyinfra deploy's own rules)."""
from __future__ import annotations

DOCUMENTATION = r"""
module: smp_fleet
short_description: Validate a whole smpfleet inventory on the control machine
description:
  - Runs C(smpfleet.settings.parse_fleet), the code the pyinfra deploy uses, over the smp_* data
    of every host, and fails listing every problem (host, key, what to do) before any host is
    touched. Run it with C(delegate_to: localhost) and the Python that can import smpfleet.
options:
  hosts:
    description: Host name -> that host's smp_* variables.
    type: dict
    required: true
  passwords:
    description: Host name -> smp_password, for hosts that set one (kept out of the logs).
    type: dict
  base_dir:
    description: Directory that relative smp_keystore / smp_publish_dir paths are relative to.
    type: path
    required: true
"""

RETURN = r"""
settings:
  description: Host name -> validated settings (no secrets).
  type: dict
  returned: success
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={"hosts": {"type": "dict", "required": True},
                       "passwords": {"type": "dict", "no_log": True},
                       "base_dir": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    try:
        from smpfleet import render
        from smpfleet.settings import InventoryError, parse_fleet
    except ImportError as e:
        module.fail_json(msg=f"cannot import smpfleet ({e}): run ansible-playbook from the smpfleet "
                             "venv, or set smp_role_controller_python to a Python that has it")
    try:
        hosts = {name: dict(data) for name, data in module.params["hosts"].items()}
        for name, password in (module.params["passwords"] or {}).items():
            if password is not None and name in hosts:
                hosts[name]["smp_password"] = password
        fleet = parse_fleet(hosts, Path(module.params["base_dir"]))
    except InventoryError as e:
        module.fail_json(msg=str(e), problems=[list(p) for p in e.problems])
    settings = {
        name: {
            "fqdn": s.fqdn, "onion": s.onion, "onion_only": s.onion_only, "single_hop": s.single_hop,
            "ports": list(s.ports), "sign_algorithm": s.sign_algorithm,
            "password_policy": s.password_policy, "keystore": str(s.keystore),
            "keystore_host_dir": str(Path(s.keystore) / name), "publish_dir": str(s.publish_dir),
            "hs_dir": render.hs_dir(s), "control_port": s.control_port,
        }
        for name, s in fleet.items()
    }
    module.exit_json(changed=False, settings=settings)


if __name__ == "__main__":
    main()
