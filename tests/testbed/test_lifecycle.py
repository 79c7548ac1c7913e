"""up after a crash cleans the leftovers first; down leaves nothing behind (checked with the
system's own views: ip, /proc/self/mountinfo, cgroupfs, /proc), and touches only its own instance."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smpfleet_testbed import fleet

pytestmark = [pytest.mark.testbed, pytest.mark.slow]
NAME = "tblife"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "smpfleet_testbed", *args, "--name", NAME],
                          capture_output=True, text=True, timeout=300)


def _traces(inst) -> dict[str, list[str]]:
    """Every trace of the instance on the machine, found without the testbed's own code."""
    prefix = f"{NAME}-"
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
    netns = json.loads(subprocess.run(["ip", "-j", "netns"], capture_output=True, text=True).stdout or "[]")
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "table", "all"],
                                       capture_output=True, text=True, check=True).stdout)
    mounts = [l.split()[4] for l in Path("/proc/self/mountinfo").read_text().splitlines()]
    procs = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if f"--machine={prefix}".encode() in (p / "cmdline").read_bytes():
                    procs.append(p.name)
            except OSError:
                pass
    return {
        "links": [l["ifname"] for l in links if l["ifname"].startswith(prefix)],
        "netns": [n["name"] for n in netns if n["name"].startswith(prefix)],
        "routes": [r["dst"] for r in routes if r.get("dst", "").startswith(f"10.213.{inst.subnet_index}.")],
        "mounts": [m for m in mounts if str(inst.state_dir) in m],
        "cgroups": [str(d) for d in inst.cgroup_dirs() if d.exists()],
        "processes": procs,
        "state": sorted(str(p) for p in inst.state_dir.rglob("*")) if inst.state_dir.exists() else [],
    }


@pytest.fixture
def inst():
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root")
    i = fleet.resolve(NAME, None)
    yield i
    fleet.down(i, log=lambda _: None)
    shutil.rmtree(i.state_dir, ignore_errors=True)


def test_up_after_crash_then_down_leaves_nothing(inst, testbed):
    f = fleet.up(inst, 1, log=lambda _: None)
    assert f.run("h1", "cat /proc/1/comm").stdout.strip() == "systemd"
    assert fleet.leftovers(inst)["processes"]  # a running host is seen as processes
    # Crash: the nspawn supervisor dies without cleaning anything up.
    pid = int((inst.host_dir(1) / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    left = _traces(inst)
    assert left["netns"] and left["links"] and left["mounts"] and left["cgroups"], left
    seen = fleet.leftovers(inst)  # the testbed's own view finds the same leftovers
    assert seen["namespaces"] == left["netns"] and seen["mounts"] == left["mounts"], (seen, left)
    assert set(seen["links"]) == set(left["links"]) and seen["cgroups"] == left["cgroups"]

    p = _cli("up", "2")
    assert p.returncode == 0, p.stderr
    assert "h2\t" in p.stdout
    status = json.loads(_cli("status", "--json").stdout)
    assert [h["running"] for h in status["hosts"]] == [True, True]
    f = fleet.Fleet.load(inst)
    assert f.run("h2", "systemctl is-system-running").stdout.strip() == "running"

    # A deploy's key store next to the inventory is not the testbed's to delete.
    foreign = inst.state_dir / "keystore" / "h1" / "ca.key"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("secret")
    started = time.monotonic()
    p = _cli("down")
    took = time.monotonic() - started
    assert p.returncode == 0, p.stderr
    assert "2 hosts powered off, 0 leftover processes killed" in p.stdout
    print(f"\ndown of 2 hosts: {took:.1f} s")
    assert foreign.read_text() == "secret"
    assert _traces(inst) == {k: [] for k in _traces(inst)} | {
        "state": [str(foreign.parent.parent), str(foreign.parent), str(foreign)]}
    assert fleet.leftovers(inst) == {k: [] for k in fleet.leftovers(inst)}
    # The other instance (the session's hosts) was not touched.
    assert testbed.run("h1", "systemctl is-system-running").stdout.strip() == "running"


def test_down_of_an_instance_that_is_not_up_is_a_no_op(inst):
    p = _cli("down")
    assert p.returncode == 0, p.stderr
    assert _traces(inst) == {k: [] for k in _traces(inst)}


def test_subnet_in_use_is_refused_and_nothing_is_touched(inst, testbed):
    p = _cli("up", "1", "--subnet-index", str(testbed.subnet_index))
    assert p.returncode == 1
    assert f"subnet 10.213.{testbed.subnet_index}.0/24" in p.stderr and "--subnet-index" in p.stderr
    assert _traces(inst) == {k: [] for k in _traces(inst)}
    guard = subprocess.run(["ip", "route", "show", "type", "blackhole", f"10.213.{testbed.subnet_index}.0/24"],
                           capture_output=True, text=True, check=True).stdout
    assert guard.strip(), "the other instance's guard route was removed"
    assert testbed.run("h3", "systemctl is-system-running").stdout.strip() == "running"


def test_instance_in_use_by_the_session_cannot_be_taken_down_elsewhere(testbed):
    p = subprocess.run([sys.executable, "-m", "smpfleet_testbed", "down", "--name", testbed.name],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "is busy" in p.stderr, p.stderr
    assert testbed.run("h1", "systemctl is-system-running").stdout.strip() == "running"


def test_derived_subnet_clash_moves_to_the_next_free_subnet(testbed):
    from smpfleet_testbed.instance import derived_subnet_index
    clash = next((f"tbc{i}" for i in range(100000) if derived_subnet_index(f"tbc{i}") == testbed.subnet_index), None)
    if clash is None:
        pytest.skip("the session's subnet is not in the derived range (explicit --subnet-index)")
    inst = fleet.resolve(clash, None)
    assert inst.subnet_index == testbed.subnet_index
    try:
        f = fleet.up(inst, 1, log=lambda _: None)
        assert f.subnet_index != testbed.subnet_index
        assert f.run("h1", "ip -4 -br addr show eth0").stdout.split()[2] == f"10.213.{f.subnet_index}.11/24"
        assert fleet.resolve(clash, None).subnet_index == f.subnet_index  # down finds it again
    finally:
        fleet.down(fleet.resolve(clash, None), log=lambda _: None)
    assert testbed.run("h1", "systemctl is-system-running").stdout.strip() == "running"


def test_repo_rebuild_leaves_running_hosts_their_packages(testbed):
    p = subprocess.run([sys.executable, "-m", "smpfleet_testbed", "repo", "--rebuild"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = testbed.run("h2", "test -s /srv/testbed-apt/Packages && ls /srv/testbed-wheels | grep -c whl "
                            "&& apt-get update -qq && apt-get install -s tor | grep -c '^Inst tor '").stdout.split()
    assert int(out[0]) >= 5 and out[1] == "1"
