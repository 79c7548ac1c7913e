"""Names, paths and addresses of one testbed instance: pure, so they are unit-tested without root.

Several instances run side by side (one per engineer or CI job); everything an instance makes on
the machine (state dir, links, namespaces, cgroups, subnet) is derived from its name here.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TestbedError

STATE_ROOT = Path(os.environ.get("SMPFLEET_TESTBED_STATE", "/tmp/smpfleet-testbed"))
CACHE_ROOT = Path(os.environ.get("SMPFLEET_TESTBED_CACHE", "/var/cache/smpfleet-testbed"))
CGROUP_PARENT = "smpfleet-testbed"
SUPERNET = ipaddress.ip_network("10.213.0.0/16")
# Subnet indexes derived from names fall in 16..239: 0..15 and 240..255 stay free for --subnet-index.
DERIVED_MIN, DERIVED_SPAN = 16, 224
MAX_HOSTS = 99
HOST_OFFSET = 10  # h1 = .11, h2 = .12, ...
# "<name>-h99" must fit the 15-character limit of Linux interface names.
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")


def check_name(name: str) -> str:
    """Return name if it is a valid instance name, else raise with the rule."""
    if not NAME_RE.match(name):
        raise TestbedError(
            f"invalid testbed name {name!r}: use 1-10 characters a-z0-9 starting with a letter "
            "(it becomes part of interface names, which Linux limits to 15 characters)"
        )
    return name


def derived_subnet_index(name: str) -> int:
    """Stable subnet index for a name, so an instance keeps its addresses across runs."""
    digest = hashlib.sha256(name.encode()).digest()
    return DERIVED_MIN + int.from_bytes(digest[:4], "big") % DERIVED_SPAN


@dataclass(frozen=True)
class Instance:
    """One named testbed: where its state lives and what it calls things on the machine."""

    name: str
    subnet_index: int
    # False when derived from the name: `up` may then move on to the next free index on a clash.
    explicit_subnet: bool = field(default=False, compare=False)

    @classmethod
    def make(cls, name: str, subnet_index: int | None = None) -> "Instance":
        check_name(name)
        explicit = subnet_index is not None
        if subnet_index is None:
            subnet_index = derived_subnet_index(name)
        if not 0 <= subnet_index <= 255:
            raise TestbedError(f"--subnet-index {subnet_index} is out of range: use 0..255 (10.213.<index>.0/24)")
        return cls(name, subnet_index, explicit)

    def derived_candidates(self) -> list["Instance"]:
        """This instance on its derived subnet, then on each following one of the derived range."""
        start = derived_subnet_index(self.name) - DERIVED_MIN
        return [Instance(self.name, DERIVED_MIN + (start + step) % DERIVED_SPAN)
                for step in range(DERIVED_SPAN)]

    # --- addresses -------------------------------------------------------------------------
    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(f"10.213.{self.subnet_index}.0/24")

    @property
    def bridge_address(self) -> str:
        """The machine's own address on the bridge: stable, used by the private Tor network."""
        return f"10.213.{self.subnet_index}.1"

    def host_address(self, index: int) -> str:
        if not 1 <= index <= MAX_HOSTS:
            raise TestbedError(f"host index {index} out of range 1..{MAX_HOSTS}")
        return f"10.213.{self.subnet_index}.{HOST_OFFSET + index}"

    # --- names on the machine --------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"{self.name}-br"

    def host_name(self, index: int) -> str:
        return f"h{index}"

    def netns(self, index: int) -> str:
        return f"{self.name}-h{index}"

    def veth(self, index: int) -> str:
        """Machine-side end of the host's veth pair (the other end is eth0 inside the host)."""
        return f"{self.name}-h{index}"

    def veth_peer(self, index: int) -> str:
        """Temporary name of the inner end before it moves into the namespace as eth0."""
        return f"{self.name}-p{index}"

    def machine(self, index: int) -> str:
        """nspawn machine name: unique across instances (nspawn keys its /run dirs on it)."""
        return f"{self.name}-h{index}"

    # --- paths -----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def lock_file(self) -> Path:
        return STATE_ROOT / f"{self.name}.lock"

    @property
    def instance_file(self) -> Path:
        return self.state_dir / "instance.json"

    def host_dir(self, index: int) -> Path:
        return self.state_dir / "hosts" / self.host_name(index)

    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def pyinfra_inventory(self) -> Path:
        return self.state_dir / "inventory.py"

    @property
    def ansible_inventory(self) -> Path:
        return self.state_dir / "inventory.ini"

    def made_paths(self) -> list[Path]:
        """What the testbed writes into its state dir: all of it, and only it, is removed by down.
        Anything else there (a deploy's key store, published addresses) is kept."""
        files = [self.instance_file, self.ssh_key, self.ssh_key.with_suffix(".pub"), self.known_hosts,
                 self.ssh_config, self.pyinfra_inventory, self.ansible_inventory, self.state_dir / "hosts"]
        return files + sorted(self.state_dir.glob(".*.tmp"))

    def cgroup_dirs(self, index: int | None = None) -> list[Path]:
        """This instance's cgroup dirs (or one host's) in both hierarchies nspawn uses here."""
        tail = Path(CGROUP_PARENT) / self.name
        if index is not None:
            tail = tail / self.host_name(index)
        return [Path("/sys/fs/cgroup/unified") / tail, Path("/sys/fs/cgroup/systemd") / tail]
