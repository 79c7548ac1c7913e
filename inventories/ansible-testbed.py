#!/usr/bin/env python3
"""Ansible inventory of the running local testbed, from the SAME data as the pyinfra deploy.

    ansible-playbook -i inventories/ansible-testbed.py site.yml     # instance $SMPFLEET_TESTBED (tb)

It loads the testbed's generated pyinfra inventory (which merges inventories/testbed_data.py, or
$SMPFLEET_TESTBED_DATA) and prints it in Ansible's JSON inventory format: the smp_* keys
unchanged, pyinfra's ssh_* connection keys mapped to their ansible_* equivalents. Both tools
therefore deploy one inventory, which the pyinfra-vs-Ansible comparison test relies on.
"""
import json
import os
import runpy
import shlex
import sys

_SSH_KEYS = {"ssh_hostname": "ansible_host", "ssh_port": "ansible_port", "ssh_user": "ansible_user",
             "ssh_key": "ansible_ssh_private_key_file"}


def ansible_host_vars(data: dict) -> dict:
    """pyinfra host data -> Ansible host variables."""
    out = {k: v for k, v in data.items() if not k.startswith("ssh_")}
    for pyinfra_key, ansible_key in _SSH_KEYS.items():
        if pyinfra_key in data:
            out[ansible_key] = data[pyinfra_key]
    opts = []
    if "ssh_known_hosts_file" in data:
        opts += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}"]
    if "ssh_strict_host_key_checking" in data:
        opts += ["-o", f"StrictHostKeyChecking={data['ssh_strict_host_key_checking']}"]
    if opts:
        out["ansible_ssh_common_args"] = shlex.join(opts)
    out.setdefault("ansible_python_interpreter", "/usr/bin/python3")
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print("{}")
        return 0
    name = os.environ.get("SMPFLEET_TESTBED", "tb")
    root = os.environ.get("SMPFLEET_TESTBED_STATE", "/tmp/smpfleet-testbed")
    generated = os.path.join(root, name, "inventory.py")
    if not os.path.isfile(generated):
        print(f"testbed {name!r} is not up ({generated} is missing): run "
              f".venv/bin/python -m smpfleet_testbed up 3 --name {name}", file=sys.stderr)
        return 1
    hosts = runpy.run_path(generated)["testbed"]
    print(json.dumps({
        "testbed": {"hosts": [h for h, _ in hosts]},
        "_meta": {"hostvars": {h: ansible_host_vars(d) for h, d in hosts}},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
