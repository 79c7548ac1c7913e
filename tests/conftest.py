"""Session fixtures shared by every test directory.

`testbed`: three real Debian hosts (systemd PID 1, sshd) brought up once per pytest session and
always torn down. Instance name from SMPFLEET_TESTBED (default `pytest`), so a test run does not
touch the hosts another engineer or the demo is using.
"""
from __future__ import annotations

import os

import pytest

TESTBED_HOSTS = 3


@pytest.fixture(scope="session")
def testbed():
    """A running smpfleet_testbed.fleet.Fleet: .hosts, .ssh_key, .ssh_config, .known_hosts,
    .pyinfra_inventory, .ansible_inventory, .bridge_address and .run(host, cmd)."""
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root (network namespaces, mounts, cgroups, systemd-nspawn)")
    from smpfleet_testbed import fleet

    inst = fleet.resolve(os.environ.get("SMPFLEET_TESTBED", "pytest"), None)
    # Holds the instance lock until torn down: nobody else's up/down of this name can take the hosts away.
    with fleet.session(inst, TESTBED_HOSTS, log=lambda msg: print(f"\n[testbed] {msg}")) as f:
        yield f
    used = fleet.resolve(f.name, f.subnet_index)  # up may have moved to a free subnet
    left = {kind: items for kind, items in fleet.leftovers(used).items() if items}
    if left:
        pytest.fail(f"testbed {inst.name!r} left resources behind after down: {left}")
