"""Connection files for a running instance: known_hosts, an SSH config (hosts by name h1..hN), a
pyinfra inventory and an Ansible inventory. Pure renderers; the caller writes them atomically.

The pyinfra inventory holds only the testbed's connection data. Deploy settings live in a separate
Python file owned by the deploy (default inventories/testbed_data.py, or $SMPFLEET_TESTBED_DATA),
which the inventory merges in when it is loaded: `pyinfra <state>/inventory.py deploy.py` works as is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEPLOY_DATA = REPO_ROOT / "inventories" / "testbed_data.py"
GROUP = "testbed"


@dataclass(frozen=True)
class HostEntry:
    name: str
    address: str
    host_keys: tuple[str, ...]  # "type base64" lines from the host's /etc/ssh/ssh_host_*_key.pub


def known_hosts(hosts: list[HostEntry]) -> str:
    return "".join(f"{h.name},{h.address} {key}\n" for h in hosts for key in h.host_keys)


def ssh_config(hosts: list[HostEntry], key: Path, known: Path) -> str:
    """ssh -F <this> h1 works; strict host key checking against the instance's own known_hosts."""
    blocks = [f"Host {h.name} {h.address}\n  HostName {h.address}\n" for h in hosts]
    names = " ".join(f"{h.name} {h.address}" for h in hosts)
    blocks.append(
        f"Host {names}\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    return "\n".join(blocks)


def connection_data(h: HostEntry, key: Path, known: Path) -> dict[str, object]:
    return {
        "ssh_hostname": h.address,
        "ssh_port": 22,
        "ssh_user": "root",
        "ssh_key": str(key),
        "ssh_known_hosts_file": str(known),
        "ssh_strict_host_key_checking": "yes",
    }


def pyinfra_inventory(instance: str, hosts: list[HostEntry], key: Path, known: Path,
                      state_root: Path = Path("/tmp/smpfleet-testbed")) -> str:
    entries = "".join(
        f"    ({h.name!r}, _host_data({h.name!r}, {connection_data(h, key, known)!r})),\n" for h in hosts
    )
    return f'''"""pyinfra inventory of testbed {instance!r}, written by `python -m smpfleet_testbed up`.

Connection data comes from the testbed; deploy settings from the deploy's data file
(SMPFLEET_TESTBED_DATA, default {DEFAULT_DEPLOY_DATA}): its `data` dict applies to every host,
its `host_data` dict (by host name) to one host. Connection keys always win.
The data file sees SMPFLEET_TESTBED / SMPFLEET_TESTBED_STATE naming this instance.
"""
import os as _os
import runpy as _runpy

_os.environ["SMPFLEET_TESTBED"] = {instance!r}
_os.environ["SMPFLEET_TESTBED_STATE"] = {str(state_root)!r}

_DATA_FILE = _os.environ.get("SMPFLEET_TESTBED_DATA", {str(DEFAULT_DEPLOY_DATA)!r})
_deploy = _runpy.run_path(_DATA_FILE) if _os.path.isfile(_DATA_FILE) else {{}}


def _host_data(name, connection):
    merged = dict(_deploy.get("data", {{}}))
    merged.update(_deploy.get("host_data", {{}}).get(name, {{}}))
    merged.update(connection)
    return merged


{GROUP} = [
{entries}]
'''


def ansible_inventory(hosts: list[HostEntry], key: Path, ssh_cfg: Path) -> str:
    lines = [f"[{GROUP}]"]
    lines += [f"{h.name} ansible_host={h.address}" for h in hosts]
    lines += [
        "",
        f"[{GROUP}:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key}",
        f"ansible_ssh_common_args='-F {ssh_cfg}'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    return "\n".join(lines) + "\n"
