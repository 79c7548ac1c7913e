"""The session's real hosts: systemd as PID 1 and running, SSH with pyinfra and Ansible, the hosts
reach each other and the bridge address and nothing else, offline apt and pip work."""
from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.testbed
BIN = Path(sys.executable).parent


def test_systemd_is_pid1_and_running_everywhere(testbed):
    assert [h["name"] for h in testbed.hosts] == ["h1", "h2", "h3"]
    for h in testbed.hosts:
        out = testbed.run(h["name"], "cat /proc/1/comm; systemctl is-system-running; hostname; "
                                     "systemctl is-active ssh").stdout.split()
        assert out == ["systemd", "running", h["name"], "active"]


def test_hosts_have_their_own_identity(testbed):
    ids = {testbed.run(h["name"], "cat /etc/machine-id").stdout.strip() for h in testbed.hosts}
    keys = {testbed.run(h["name"], "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in testbed.hosts}
    assert len(ids) == len(keys) == 3


def test_pyinfra_runs_a_command_on_every_host(testbed, tmp_path):
    env = {**os.environ, "SMPFLEET_TESTBED_DATA": str(tmp_path / "none.py")}
    p = subprocess.run([str(BIN / "pyinfra"), "-y", testbed.pyinfra_inventory, "exec", "--",
                        "echo pid1=$(cat /proc/1/comm) on $(hostname)"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    text = p.stdout + p.stderr
    assert p.returncode == 0, text
    for h in testbed.hosts:
        assert f"pid1=systemd on {h['name']}" in text


def test_pyinfra_inventory_carries_the_deploy_data_and_the_stable_path_works(testbed, tmp_path):
    """The real inventories/testbed_data.py is merged under our connection data, and
    inventories/testbed.py loads this instance's inventory."""
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "SMPFLEET_TESTBED_DATA"}
    env["SMPFLEET_TESTBED"] = testbed.name
    os.environ["SMPFLEET_TESTBED"], saved = testbed.name, os.environ.get("SMPFLEET_TESTBED")
    try:
        deploy = runpy.run_path(str(repo / "inventories" / "testbed_data.py"))
    finally:
        os.environ.pop("SMPFLEET_TESTBED") if saved is None else os.environ.update(SMPFLEET_TESTBED=saved)
    expected = {**deploy.get("data", {}), **deploy.get("host_data", {}).get("h1", {})}
    strings = {k: v for k, v in expected.items() if isinstance(v, str) and not k.startswith("ssh_")}
    for inv in (testbed.pyinfra_inventory, str(repo / "inventories" / "testbed.py")):
        p = subprocess.run([str(BIN / "pyinfra"), inv, "debug-inventory"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120)
        text = p.stdout + p.stderr
        assert p.returncode == 0, text
        h1 = testbed.hosts[0]["address"]
        assert f'"ssh_hostname": "{h1}"' in text, text
        for k, v in strings.items():
            assert f'"{k}": {json.dumps(v)}' in text, (k, v)
        assert f'"ssh_known_hosts_file": "{testbed.known_hosts}"' in text


def test_ansible_reaches_every_host(testbed, tmp_path):
    p = subprocess.run([str(BIN / "ansible"), "-i", testbed.ansible_inventory, "testbed", "-m", "command",
                        "-a", "systemctl is-system-running", "-o"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "0"})
    assert p.returncode == 0, p.stdout + p.stderr
    for h in testbed.hosts:
        assert any(line.startswith(f"{h['name']} | CHANGED") and "running" in line for line in p.stdout.splitlines())


def test_hosts_reach_each_other_by_name_and_address(testbed):
    for src, dst in [("h1", "h2"), ("h2", "h3"), ("h3", "h1")]:
        addr = next(h["address"] for h in testbed.hosts if h["name"] == dst)
        out = testbed.run(src, f"bash -c 'echo >/dev/tcp/{dst}/22 && echo >/dev/tcp/{addr}/22 && echo ok'").stdout
        assert out.strip() == "ok"


def test_hosts_reach_the_bridge_address(testbed):
    srv = socket.create_server((testbed.bridge_address, 0))
    port = srv.getsockname()[1]
    got = []
    t = threading.Thread(target=lambda: got.append(srv.accept()[0].recv(16)))
    t.start()
    testbed.run("h2", f"bash -c 'echo -n hello >/dev/tcp/{testbed.bridge_address}/{port}'")
    t.join(10)
    srv.close()
    assert got == [b"hello"]


def _machine_addresses() -> list[str]:
    """This machine's own global IPv4 addresses outside the testbed range (e.g. its uplink's)."""
    links = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"],
                                      capture_output=True, text=True, check=True).stdout)
    return [a["local"] for link in links for a in link["addr_info"] if not a["local"].startswith("10.213.")]


def test_nothing_outside_is_reachable(testbed):
    # The only route is the bridge subnet: anything else fails at route lookup, so no packet leaves.
    routes = json.loads(testbed.run("h1", "ip -j route").stdout)
    assert [r["dst"] for r in routes] == [f"10.213.{testbed.subnet_index}.0/24"]
    other_testbed = f"10.213.{(testbed.subnet_index + 1) % 256}.11"
    targets = ["198.51.100.7", other_testbed, *_machine_addresses()]
    probe = ("import socket,sys\n"
             "for a in sys.argv[1:]:\n"
             "    try: socket.create_connection((a, 80), 2); print(a, 'CONNECTED')\n"
             "    except OSError as e: print(a, e.errno)\n")
    out = testbed.run("h1", f"python3 -c \"{probe}\" {' '.join(targets)}").stdout.splitlines()
    assert out == [f"{a} 101" for a in targets]  # 101 = ENETUNREACH
    assert testbed.run("h1", "ip route get 198.51.100.7", check=False).returncode != 0
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"


def test_offline_apt_repository_and_wheelhouse(testbed):
    policy = testbed.run("h3", "apt-cache policy tor tor-geoipdb").stdout
    assert "file:/srv/testbed-apt ./ Packages" in policy and "Candidate: (none)" not in policy
    assert testbed.run("h3", "touch /srv/testbed-apt/x", check=False).returncode != 0  # read-only
    out = testbed.run("h3", "python3 -m venv /tmp/v && /tmp/v/bin/pip install -q stem PyNaCl && "
                            "/tmp/v/bin/python -c 'import stem, nacl; print(stem.__version__)'", timeout=180)
    assert out.stdout.strip().startswith("1.8")
    testbed.run("h3", "rm -rf /tmp/v")
