"""The Ansible roles: lint, inventory validation, molecule on real test hosts, and the same
result as the pyinfra deploy (rendered files compared byte for byte on the hosts).

Everything runs the real tools from the venv (ansible-playbook, molecule, pyinfra) against real
systemd-nspawn test hosts; hosts that must not be contacted are on loopback port 1.
"""
from __future__ import annotations

import base64
import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
ENV = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1",
       "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "PY_COLORS": "0"}
for _k in ("SMPFLEET_KEYSTORE", "SMPFLEET_PUBLISH_DIR", "SMPFLEET_BUNDLE", "SMPFLEET_TESTBED_DATA",
           "SMPFLEET_SHOW_SECRETS", "SMPFLEET_TOR_EXTRA"):
    ENV.pop(_k, None)


def run(cmd: list[str], env: dict | None = None, timeout: float = 900) -> tuple[subprocess.CompletedProcess, float]:
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t


def test_ansible_lint_passes():
    proc, _ = run([str(VENV_BIN / "ansible-lint"), "roles/", "site.yml", "molecule/"], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Passed" in proc.stdout + proc.stderr


# -- validation before any host is touched ------------------------------------------------


def _unreachable_inventory(tmp_path: Path, hosts: dict[str, dict]) -> Path:
    """Hosts on loopback port 1 (nothing listens): any attempt to touch one shows as UNREACHABLE."""
    inv = {"all": {"hosts": {name: {"ansible_host": "127.0.0.1", "ansible_port": 1, **data}
                             for name, data in hosts.items()}}}
    path = tmp_path / "hosts.json"  # JSON is YAML: Ansible's yaml inventory plugin reads it
    path.with_suffix(".yml").write_text(json.dumps(inv))
    return path.with_suffix(".yml")


def _playbook(inventory: Path) -> subprocess.CompletedProcess:
    proc, _ = run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "site.yml"], timeout=300)
    return proc


def test_argument_specs_reject_wrong_types_before_any_host_is_touched(tmp_path):
    inv = _unreachable_inventory(tmp_path, {
        "r1": {"smp_fqdn": "smp1.example.com", "smp_password_policy": "sometimes",
               "smp_keystore": str(tmp_path / "ks")},
        "r2": {"smp_fqdn": "smp2.example.com", "smp_ports": "many", "smp_keystore": str(tmp_path / "ks")},
    })
    proc = _playbook(inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "smp_password_policy" in out and "sometimes" in out
    assert "smp_ports" in out
    assert "UNREACHABLE" not in out
    assert not (tmp_path / "ks").exists()


def test_fleet_rules_reported_together_before_any_host_is_touched(tmp_path):
    inv = _unreachable_inventory(tmp_path, {
        "r1": {"smp_fqdn": "smp.example.com", "smp_keystore": str(tmp_path / "ks")},
        "r2": {"smp_fqdn": "SMP.example.com", "smp_keystore": str(tmp_path / "ks")},
        "r3": {"smp_fqdn": "smp3.example.com", "smp_fqnd": "typo.example.com",
               "smp_password_policy": "fixed", "smp_keystore": str(tmp_path / "ks")},
    })
    proc = _playbook(inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # smpfleet.settings' messages: every problem at once, each naming host and key.
    assert "no host was touched" in out
    assert "host 'r3', key 'smp_password'" in out
    assert "host 'r2', key 'smp_fqdn'" in out and "already used by host 'r1'" in out
    assert "host 'r3', key 'smp_fqnd'" in out and "unknown setting" in out
    assert "UNREACHABLE" not in out
    assert not (tmp_path / "ks").exists()


def test_example_inventories_mean_the_same_fleet():
    """The Ansible example inventory is the pyinfra example: same hosts, same validated settings."""
    from smpfleet.cli import _inventory_hosts
    from smpfleet.settings import parse_fleet

    proc, _ = run([str(VENV_BIN / "ansible-inventory"), "-i", "inventories/ansible-example/hosts.yml", "--list"])
    assert proc.returncode == 0, proc.stderr
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]
    ansible = parse_fleet({h: {k: v for k, v in d.items() if k.startswith("smp_")} for h, d in hostvars.items()})
    pyinfra = parse_fleet(_inventory_hosts(REPO / "inventories" / "example.py"))
    assert set(ansible) == set(pyinfra) == {"smp1.example.com", "smp2.example.com", "hidden-relay"}
    assert ansible == pyinfra
    assert ansible["hidden-relay"].onion_only and not ansible["smp2.example.com"].onion


def test_testbed_inventory_maps_pyinfra_connection_keys():
    """inventories/ansible-testbed.py: smp_* data unchanged, pyinfra ssh_* keys as ansible_*."""
    import runpy

    mod = runpy.run_path(str(REPO / "inventories" / "ansible-testbed.py"))
    out = mod["ansible_host_vars"]({
        "ssh_hostname": "10.213.9.11", "ssh_port": 22, "ssh_user": "root", "ssh_key": "/k/id",
        "ssh_known_hosts_file": "/k/known hosts", "ssh_strict_host_key_checking": "yes",
        "smp_fqdn": "10.213.9.11", "smp_ports": [5223],
    })
    assert out["ansible_host"] == "10.213.9.11" and out["ansible_user"] == "root"
    assert out["ansible_ssh_private_key_file"] == "/k/id" and out["ansible_port"] == 22
    assert out["ansible_ssh_common_args"] == "-o 'UserKnownHostsFile=/k/known hosts' -o StrictHostKeyChecking=yes"
    assert out["smp_fqdn"] == "10.213.9.11" and out["smp_ports"] == [5223]
    assert not any(k.startswith("ssh_") for k in out)


# -- on real test hosts -------------------------------------------------------------------


def _root():
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root")


@pytest.mark.testbed
@pytest.mark.slow
def test_molecule_converge_idempotence_verify():
    """`molecule test`: create (testbed up), converge, idempotence (zero changes), verify, destroy."""
    _root()
    proc, seconds = run([str(VENV_BIN / "molecule"), "test"], timeout=1200)
    out = proc.stdout + proc.stderr
    print(f"\n[roles timings] molecule test: {seconds:.1f} s")
    assert proc.returncode == 0, out[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in out, f"{step} did not succeed:\n{out[-4000:]}"


# Files both tools write on a relay host: the three rendered from templates/ and the rest.
RENDERED = ("/etc/opt/simplex/smp-server.ini", "/etc/systemd/system/smp-server.service", "/etc/tor/torrc")
OTHER = (
    "/etc/opt/simplex/ca.crt", "/etc/opt/simplex/server.crt", "/etc/opt/simplex/server.key",
    "/etc/opt/simplex/fingerprint", "/etc/opt/simplex/ca.key",
    "/var/lib/tor/simplex-smp/hs_ed25519_secret_key", "/var/lib/tor/simplex-smp/hs_ed25519_public_key",
    "/var/lib/tor/simplex-smp/hostname",
    "/var/lib/tor/simplex-smp-singlehop/hs_ed25519_secret_key",
    "/var/lib/tor/simplex-smp-singlehop/hs_ed25519_public_key",
    "/var/lib/tor/simplex-smp-singlehop/hostname",
    "/opt/smpfleet/bin/relay_check.py", "/opt/smpfleet/bin/onion_service.py",
    "/usr/local/bin/smp-server",
    "/etc/opt/simplex", "/var/opt/simplex", "/opt/smpfleet", "/opt/smpfleet/bin",
    "/var/lib/tor/simplex-smp", "/var/lib/tor/simplex-smp-singlehop",
)
_SNAPSHOT = r"""
import base64, grp, json, os, pwd, stat, sys
out = {}
for p in sys.argv[1:]:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        continue
    e = {"mode": oct(stat.S_IMODE(st.st_mode)), "owner": pwd.getpwuid(st.st_uid).pw_name,
         "group": grp.getgrgid(st.st_gid).gr_name}
    if stat.S_ISLNK(st.st_mode):
        e["link"] = os.readlink(p)
    elif stat.S_ISREG(st.st_mode):
        e["data"] = base64.b64encode(open(p, "rb").read()).decode()
    else:
        e["dir"] = True
    out[p] = e
out["smp-server active"] = os.system("systemctl is-active --quiet smp-server") == 0
print(json.dumps(out))
"""


def _snapshot(tb, host: str) -> dict:
    import shlex

    cmd = "python3 -c " + shlex.quote(_SNAPSHOT) + " " + " ".join(RENDERED + OTHER)
    return json.loads(tb.run(host, cmd).stdout)


def _recap_changed(output: str) -> dict[str, int]:
    """Host -> changed count from ansible-playbook's PLAY RECAP."""
    lines = output.splitlines()
    start = max(i for i, l in enumerate(lines) if l.startswith("PLAY RECAP"))
    out = {}
    for l in lines[start + 1:]:
        if ":" in l and "changed=" in l:
            host, rest = l.split(":", 1)
            out[host.strip()] = int(rest.split("changed=")[1].split()[0])
    return out


def _grand_total_changes(output: str) -> int:
    line = next(l for l in output.splitlines() if l.strip().startswith("Grand total"))
    success = line.split()[-3]
    return 0 if success == "-" else int(success)


@pytest.mark.testbed
@pytest.mark.slow
def test_pyinfra_and_ansible_write_the_same_files(tmp_path):
    """One inventory (inventories/testbed_data.py), one key store: pyinfra on fresh hosts, then
    Ansible on fresh hosts; every rendered file, identity file, owner and mode is the same, and
    so are the published fleet files. Then pyinfra after Ansible changes nothing."""
    _root()
    from smpfleet_testbed import fleet

    inst = fleet.resolve("anscmp", None)
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "smpfleet.bundle", str(bundle)], check=True, capture_output=True)
    keystore = tmp_path / "keystore"
    env = {**ENV, "SMPFLEET_TESTBED": "anscmp", "SMPFLEET_KEYSTORE": str(keystore),
           "SMPFLEET_BUNDLE": str(bundle)}
    timings = {}
    try:
        tb = fleet.up(inst, 3, log=lambda m: None)
        hosts = [h["name"] for h in tb.hosts]
        addresses = [h["address"] for h in tb.hosts]
        proc, timings["pyinfra"] = run([str(VENV_BIN / "pyinfra"), "-y", "inventories/testbed.py", "deploy.py"],
                                       env={**env, "SMPFLEET_PUBLISH_DIR": str(tmp_path / "pub-pyinfra")})
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        by_pyinfra = {h: _snapshot(tb, h) for h in hosts}

        fleet.down(inst, log=lambda m: None)
        tb = fleet.up(inst, 3, log=lambda m: None)
        assert [h["address"] for h in tb.hosts] == addresses  # same names and addresses, new hosts
        assert "/etc/opt/simplex/smp-server.ini" not in _snapshot(tb, hosts[0])
        proc, timings["ansible"] = run([str(VENV_BIN / "ansible-playbook"), "-i", "inventories/ansible-testbed.py",
                                        "site.yml"], env={**env, "SMPFLEET_PUBLISH_DIR": str(tmp_path / "pub-ansible")})
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        by_ansible = {h: _snapshot(tb, h) for h in hosts}

        for h in hosts:
            for path in RENDERED:
                a, b = by_pyinfra[h].get(path), by_ansible[h].get(path)
                if a != b:
                    ta = base64.b64decode(a["data"]).decode() if a else ""
                    tb_ = base64.b64decode(b["data"]).decode() if b else ""
                    diff = "\n".join(difflib.unified_diff(ta.splitlines(), tb_.splitlines(), "pyinfra", "ansible",
                                                          lineterm=""))
                    pytest.fail(f"{h}:{path} differs ({a and a['mode']} vs {b and b['mode']}):\n{diff}")
            assert by_pyinfra[h] == by_ansible[h], h
        # The comparison covers what it should: every relay has its INI and unit, onion hosts a torrc,
        # nobody a CA key, and each relay is running.
        for h in hosts:
            assert {RENDERED[0], RENDERED[1], "/etc/opt/simplex/server.key"} <= set(by_ansible[h]), h
            assert "/etc/opt/simplex/ca.key" not in by_ansible[h]
            assert by_ansible[h]["smp-server active"] is True
        assert RENDERED[2] in by_ansible["h1"] and RENDERED[2] in by_ansible["h2"]
        assert RENDERED[2] not in by_ansible["h3"]
        ini_h1 = base64.b64decode(by_ansible["h1"][RENDERED[0]]["data"]).decode()
        assert f"host = {addresses[0]}," in ini_h1 and ".onion" in ini_h1

        pub_p, pub_a = tmp_path / "pub-pyinfra", tmp_path / "pub-ansible"
        names = sorted(p.name for p in pub_p.iterdir())
        assert names == ["addresses.txt", "h1.png", "h2.png", "h3.png", "servers.json"]
        assert sorted(p.name for p in pub_a.iterdir()) == names
        for name in names:
            assert (pub_p / name).read_bytes() == (pub_a / name).read_bytes(), name

        # Switching tools: pyinfra on the hosts Ansible made changes nothing.
        proc, timings["pyinfra after ansible"] = run(
            [str(VENV_BIN / "pyinfra"), "-y", "inventories/testbed.py", "deploy.py"],
            env={**env, "SMPFLEET_PUBLISH_DIR": str(pub_p)})
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert _grand_total_changes(proc.stdout + proc.stderr) == 0, (proc.stdout + proc.stderr)[-4000:]

        # --check: nothing to do on a converged fleet; a hand edit is reported, not repaired.
        check = [str(VENV_BIN / "ansible-playbook"), "--check", "-i", "inventories/ansible-testbed.py", "site.yml"]
        check_env = {**env, "SMPFLEET_PUBLISH_DIR": str(pub_a)}
        proc, _ = run(check, env=check_env)
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert _recap_changed(proc.stdout) == {"h1": 0, "h2": 0, "h3": 0}, proc.stdout[-4000:]
        tb.run("h1", "echo '# hand edit' >> /etc/opt/simplex/smp-server.ini")
        proc, _ = run(check, env=check_env)
        assert proc.returncode == 0, proc.stdout[-4000:]
        recap = _recap_changed(proc.stdout)
        assert recap["h1"] >= 1 and recap["h2"] == recap["h3"] == 0, proc.stdout[-4000:]
        assert tb.run("h1", "tail -n 1 /etc/opt/simplex/smp-server.ini").stdout.strip() == "# hand edit"
    finally:
        fleet.down(inst, log=lambda m: None)
        print("\n[roles timings] " + json.dumps({k: round(v, 1) for k, v in timings.items()}))


@pytest.mark.testbed
@pytest.mark.slow
def test_identity_found_on_a_host_moves_into_the_key_store(tmp_path):
    """A host with a CA made there (smp-server init) and onion keys made by tor: the roles adopt
    both into the key store (verified copies), then remove ca.key from the host; the relay keeps
    its fingerprint and its .onion."""
    _root()
    from smpfleet import onionkeys
    from smpfleet_testbed import fleet
    from smprelay import certs

    inst = fleet.resolve("ansadopt", None)
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "smpfleet.bundle", str(bundle)], check=True, capture_output=True)
    ca_key, ca_crt = certs.generate_ca("ED448")
    onion = onionkeys.generate()
    local = tmp_path / "host-files"
    local.mkdir()
    (local / "ca.key").write_bytes(certs.key_pem(ca_key))
    (local / "ca.crt").write_bytes(certs.cert_pem(ca_crt))
    for name, data in onion.files.items():
        (local / name).write_bytes(data)
    keystore = tmp_path / "keystore"
    # Same inventory keys as testbed_data.py, plus a fixed password that must never be logged.
    password = "adopt-Fixed_pw1"
    data_file = tmp_path / "data.py"
    data_file.write_text(
        "import json, os, pathlib\n"
        "_i = pathlib.Path(os.environ['SMPFLEET_TESTBED_STATE'], os.environ['SMPFLEET_TESTBED'], 'instance.json')\n"
        "_a = {h['name']: h['address'] for h in json.loads(_i.read_text())['hosts']}\n"
        f"data = {{'smp_keystore': {str(keystore)!r}, 'smp_publish_dir': {str(tmp_path / 'pub')!r}}}\n"
        f"host_data = {{'h1': {{'smp_fqdn': _a['h1'], 'smp_password_policy': 'fixed', 'smp_password': {password!r}}}}}\n")
    env = {**ENV, "SMPFLEET_TESTBED": "ansadopt", "SMPFLEET_TESTBED_DATA": str(data_file),
           "SMPFLEET_BUNDLE": str(bundle)}
    try:
        tb = fleet.up(inst, 1, log=lambda m: None)
        hs = "/var/lib/tor/simplex-smp-singlehop"  # h1 is public+onion
        tb.run("h1", f"install -d -m 750 /etc/opt/simplex && install -d -m 700 {hs}")
        for name, dest in (("ca.key", "/etc/opt/simplex"), ("ca.crt", "/etc/opt/simplex"),
                           ("hs_ed25519_secret_key", hs), ("hs_ed25519_public_key", hs), ("hostname", hs)):
            subprocess.run(["scp", "-q", "-F", tb.ssh_config, str(local / name), f"h1:{dest}/{name}"], check=True)
        proc, seconds = run([str(VENV_BIN / "ansible-playbook"), "-v", "--diff", "-i",
                             "inventories/ansible-testbed.py", "site.yml"], env=env)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        print(f"\n[roles timings] ansible, 1 host with adoption: {seconds:.1f} s")
        # Verbose output with diffs names no secret: not the password, not a private key.
        out = proc.stdout + proc.stderr
        assert password not in out and "PRIVATE KEY" not in out
        assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" not in tb.run("h1", "cat /etc/opt/simplex/smp-server.ini").stdout
        assert f"create_password = {password}" in tb.run("h1", "cat /etc/opt/simplex/smp-server.ini").stdout
        assert f":{password}@" in (tmp_path / "pub" / "addresses.txt").read_text()
        store = keystore / "h1"
        assert (store / "ca.crt").read_bytes() == certs.cert_pem(ca_crt)
        adopted = certs.load_key_pem((store / "ca.key").read_bytes())
        assert certs.public_raw(adopted.public_key()) == certs.public_raw(ca_key.public_key())
        assert (store / "fingerprint").read_text().strip() == certs.fingerprint(ca_crt)
        assert (store / "onion" / "hostname").read_text().strip() == onion.hostname
        assert tb.run("h1", "test -e /etc/opt/simplex/ca.key", check=False).returncode == 1
        assert tb.run("h1", "cat /etc/opt/simplex/fingerprint").stdout.strip() == certs.fingerprint(ca_crt)
        assert tb.run("h1", f"cat {hs}/hostname").stdout.strip() == onion.hostname
        ini = tb.run("h1", "cat /etc/opt/simplex/smp-server.ini").stdout
        assert f"host = {tb.hosts[0]['address']},{onion.hostname}" in ini.splitlines()
    finally:
        fleet.down(inst, log=lambda m: None)
