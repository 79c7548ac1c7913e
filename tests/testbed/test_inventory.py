"""The generated connection files, checked by the real consumers: OpenSSH (ssh -G), pyinfra's
inventory loading (the file is executed), and ansible-inventory."""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path


from smpfleet_testbed import inventory
from smpfleet_testbed.inventory import HostEntry

HOSTS = [HostEntry("h1", "10.213.9.11", ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaa",)),
         HostEntry("h2", "10.213.9.12", ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbb", "ecdsa-sha2-nistp256 AAAAE2"))]
BIN = Path(sys.executable).parent


def test_known_hosts_names_every_key_by_name_and_address():
    lines = inventory.known_hosts(HOSTS).splitlines()
    assert lines == ["h1,10.213.9.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAaaa",
                     "h2,10.213.9.12 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbb",
                     "h2,10.213.9.12 ecdsa-sha2-nistp256 AAAAE2"]


def test_ssh_config_as_openssh_reads_it(tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(inventory.ssh_config(HOSTS, tmp_path / "key", tmp_path / "known"))
    for h in HOSTS:
        out = subprocess.run(["ssh", "-G", "-F", str(cfg), h.name], capture_output=True, text=True, check=True).stdout
        opts = dict(line.split(" ", 1) for line in out.splitlines())
        assert opts["hostname"] == h.address
        assert opts["user"] == "root"
        assert opts["identityfile"] == str(tmp_path / "key")
        assert opts["userknownhostsfile"] == str(tmp_path / "known")
        assert opts["stricthostkeychecking"] == "true"
        assert opts["batchmode"] == "yes"


def test_pyinfra_inventory_merges_deploy_data_under_connection_data(tmp_path, monkeypatch):
    inv = tmp_path / "inventory.py"
    inv.write_text(inventory.pyinfra_inventory("x", HOSTS, tmp_path / "key", tmp_path / "known"))
    data = tmp_path / "data.py"
    data.write_text("import os\n"
                    "data = {'relay_ports': [5223], 'ssh_user': 'intruder', 'tb': os.environ['SMPFLEET_TESTBED']}\n"
                    "host_data = {'h2': {'public_host': 'h2.example'}}\n")
    monkeypatch.setenv("SMPFLEET_TESTBED_DATA", str(data))
    monkeypatch.setenv("SMPFLEET_TESTBED", "another")
    group = runpy.run_path(str(inv))["testbed"]
    assert [name for name, _ in group] == ["h1", "h2"]
    h1, h2 = dict(group)["h1"], dict(group)["h2"]
    assert h1["ssh_hostname"] == "10.213.9.11" and h1["ssh_user"] == "root"  # connection keys win
    assert h1["relay_ports"] == [5223] and "public_host" not in h1
    assert h1["tb"] == "x"  # the data file is told which instance it is merged into
    assert h2["public_host"] == "h2.example"
    assert h2["ssh_known_hosts_file"] == str(tmp_path / "known")
    monkeypatch.setenv("SMPFLEET_TESTBED_DATA", str(tmp_path / "absent.py"))
    assert "relay_ports" not in dict(runpy.run_path(str(inv))["testbed"])["h1"]


def test_pyinfra_loads_the_inventory(tmp_path):
    inv = tmp_path / "inventory.py"
    inv.write_text(inventory.pyinfra_inventory("x", HOSTS, tmp_path / "key", tmp_path / "known"))
    env = {**os.environ, "SMPFLEET_TESTBED_DATA": str(tmp_path / "none.py")}
    out = subprocess.run([str(BIN / "pyinfra"), str(inv), "debug-inventory"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr  # pyinfra logs to stderr
    assert "h1" in text and "\"ssh_hostname\": \"10.213.9.12\"" in text


def test_ansible_inventory_as_ansible_reads_it(tmp_path):
    ini = tmp_path / "inventory.ini"
    ini.write_text(inventory.ansible_inventory(HOSTS, tmp_path / "key", tmp_path / "ssh_config"))
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(ini), "--list"], capture_output=True,
                         text=True, check=True, cwd=tmp_path, timeout=60).stdout
    inv = json.loads(out)
    assert inv["testbed"]["hosts"] == ["h1", "h2"]
    hv = inv["_meta"]["hostvars"]["h2"]
    assert hv["ansible_host"] == "10.213.9.12"
    assert hv["ansible_user"] == "root"
    assert hv["ansible_ssh_common_args"] == f"-F {tmp_path / 'ssh_config'}"
    assert hv["ansible_python_interpreter"] == "/usr/bin/python3"
