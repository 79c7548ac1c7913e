"""End to end on real test hosts: `pyinfra inventory.py deploy.py` against three fresh Debian hosts.

h1 public+onion (ED448, random password), h2 onion-only (fixed password), h3 public with ED25519
and no password. The tests run in order and share one testbed instance ("deptest") and one key
store; they assert on the hosts over SSH and talk SMP to the relays with the relay package's
client (a real TLS + SMP handshake against the published address).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# One instance per test session (several sessions may run at once on this machine).
INSTANCE = os.environ.get("SMPFLEET_DEPLOY_TESTBED", f"dt{os.getpid() % 100000000}")
H2_PASSWORD = "h2-fixed_Secret"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root")
    from smpfleet_testbed import fleet

    tmp = tmp_path_factory.mktemp("deploy")
    inst = fleet.resolve(INSTANCE, None)
    bundle_dir = tmp / "bundle"
    subprocess.run([sys.executable, "-m", "smpfleet.bundle", str(bundle_dir)], check=True,
                   capture_output=True)
    # fleet.session holds the instance lock throughout: nobody else can pull the hosts away.
    with fleet.session(inst, 3, log=lambda m: None) as tb:
        state = {"fleet": tb, "inst": inst, "tmp": tmp, "keystore": tmp / "keystore",
                 "published": tmp / "published", "bundle": bundle_dir, "timings": {}}
        try:
            yield state
        finally:
            print("\n[deploy timings] " + json.dumps(state["timings"]))


def addr(state, name):
    return next(h["address"] for h in state["fleet"].hosts if h["name"] == name)


def write_data(state, **overrides) -> Path:
    host_data = {
        "h1": {"smp_fqdn": addr(state, "h1")},
        "h2": {"smp_onion_only": True, "smp_password_policy": "fixed", "smp_password": H2_PASSWORD},
        "h3": {"smp_fqdn": addr(state, "h3"), "smp_sign_algorithm": "ED25519",
               "smp_password_policy": "none", "smp_onion": False},
    }
    for name, extra in overrides.items():
        host_data[name] = {**host_data[name], **extra}
    data = {"smp_keystore": str(state["keystore"]), "smp_publish_dir": str(state["published"]),
            "smp_ports": [5223, 443]}
    path = state["tmp"] / "data.py"
    path.write_text(f"data = {data!r}\nhost_data = {host_data!r}\n")
    return path


def deploy(state, data: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "SMPFLEET_TESTBED_DATA": str(data), "SMPFLEET_BUNDLE": str(state["bundle"])}
    env.pop("SMPFLEET_SHOW_SECRETS", None)
    t = time.monotonic()
    # --dry: without -y, so that pyinfra prints its "Detected changes" table.
    yes = [] if "--dry" in extra else ["-y"]
    proc = subprocess.run([str(REPO / ".venv/bin/pyinfra"), *yes, *extra, state["fleet"].pyinfra_inventory,
                           str(REPO / "deploy.py")], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t
    state["runs"] = state.get("runs", 0) + 1
    (state["tmp"] / f"pyinfra-{state['runs']}.log").write_text(proc.stdout + proc.stderr)
    return proc, seconds


def changes(output: str) -> int:
    """Successful (changing) operations in pyinfra's results table."""
    line = next(l for l in output.splitlines() if l.strip().startswith("Grand total"))
    _hosts, success, _error, _nochange = line.split()[-4:]
    return 0 if success == "-" else int(success)


def why(proc) -> str:
    """The lines of a pyinfra run that explain a failure."""
    lines = (proc.stdout + proc.stderr).splitlines()
    keep: list[str] = []
    for i, l in enumerate(lines):
        if re.search(r"check failed|rror|smpfleet:|not serving|wrong", l) and not l.startswith("    Operation"):
            keep += lines[max(0, i - 6):i + 1]
    return "\n".join(keep[-60:]) or "\n".join(lines[-60:])  # full logs: <tmp>/pyinfra-N.log


def detected_changes(output: str) -> dict[str, str]:
    """Operation name -> "N (hosts)" from the table `pyinfra --dry` prints."""
    lines = output.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("--> Detected changes"))
    out = {}
    for l in lines[start + 2:]:
        m = re.match(r"\s+(.+?)\s{2,}(-|\d+ \([^)]*\))\s{2,}", l)
        if not m:
            break
        if m.group(2) != "-":
            out[m.group(1)] = m.group(2)
    return out


def changed_ops(output: str) -> dict[str, int]:
    """Operation name -> number of hosts it changed, from pyinfra's results table."""
    lines = output.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("--> Results"))
    out = {}
    for l in lines[start + 2:]:
        parts = l.split()
        if len(parts) < 5 or l.strip().startswith("Grand total"):
            break
        if parts[-3] != "-":
            out[" ".join(parts[:-4])] = int(parts[-3])
    return out


def run(state, host, cmd, check=True):
    return state["fleet"].run(host, cmd, check=check).stdout.strip()


def published(state):
    return {s["host"]: s for s in json.loads((state["published"] / "servers.json").read_text())["servers"]}


async def _new_queue(address: str, host: str, password):
    from smprelay import client

    c = await client.connect(address, host=host, timeout=10)
    try:
        if password is ...:
            return await c.create_queue()
        return await c.create_queue(password=password)
    finally:
        await c.close()


def new_queue(address, host, password=...):
    return asyncio.run(_new_queue(address, host, password))


def test_invalid_inventory_fails_before_any_host_is_touched(env):
    data = write_data(env, h2={"smp_password": "bad:pass"}, h3={"smp_sign_algorithm": "RSA4096"})
    proc, _ = deploy(env, data)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "host 'h2', key 'smp_password'" in out and "host 'h3', key 'smp_sign_algorithm'" in out
    for h in ("h1", "h2", "h3"):
        assert run(env, h, "ls /etc/opt/simplex /opt/smpfleet /etc/tor 2>&1 || true").count("No such file") == 3
    assert not env["keystore"].exists()


def test_fresh_fleet_deploys(env):
    proc, seconds = deploy(env, write_data(env))
    env["timings"]["fresh_3_hosts_s"] = round(seconds, 1)
    assert proc.returncode == 0, why(proc)
    assert "Published relay addresses" in proc.stdout
    assert H2_PASSWORD not in proc.stdout + proc.stderr  # secrets are masked in the output


def test_services_files_and_modes(env):
    for h in ("h1", "h2", "h3"):
        assert run(env, h, "systemctl is-active smp-server") == "active"
        assert run(env, h, "systemctl is-enabled smp-server") == "enabled"
        modes = run(env, h, "stat -c '%n %a %U' /etc/opt/simplex/{server.key,server.crt,ca.crt,fingerprint,"
                            "smp-server.ini}").splitlines()
        assert modes == ["/etc/opt/simplex/server.key 600 smp", "/etc/opt/simplex/server.crt 644 smp",
                         "/etc/opt/simplex/ca.crt 644 smp", "/etc/opt/simplex/fingerprint 644 smp",
                         "/etc/opt/simplex/smp-server.ini 600 smp"]
        assert run(env, h, "readlink -f $(command -v smp-server)") == "/opt/smpfleet/venv/bin/smp-server"
        # no CA key anywhere on the host
        assert run(env, h, "find / -xdev \\( -name ca.key -o -name '*ca.key*' \\) 2>/dev/null") == ""
        assert run(env, h, "systemctl show -p KillSignal --value smp-server") == "2"  # SIGINT
    for h in ("h1", "h2"):
        assert run(env, h, "systemctl is-active tor@default") == "active"
    assert run(env, "h3", "systemctl is-active tor@default", check=False) != "active"
    hs1 = run(env, "h1", "cat /var/lib/tor/simplex-smp-singlehop/hostname")
    hs2 = run(env, "h2", "cat /var/lib/tor/simplex-smp/hostname")
    assert run(env, "h1", "stat -c '%a %U' /var/lib/tor/simplex-smp-singlehop/hs_ed25519_secret_key") == \
        "600 debian-tor"
    ini = {h: run(env, h, "grep '^host = ' /etc/opt/simplex/smp-server.ini") for h in ("h1", "h2", "h3")}
    assert ini["h1"] == f"host = {addr(env, 'h1')},{hs1}"
    assert ini["h2"] == f"host = {hs2}" and ini["h3"] == f"host = {addr(env, 'h3')}"
    # the onion keys are the key store's
    assert (env["keystore"] / "h1" / "onion" / "hostname").read_text().strip() == hs1
    assert (env["keystore"] / "h1" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_published_addresses_match_the_relays_and_their_passwords(env):
    from smprelay import client

    pub = published(env)
    assert set(pub) == {"h1", "h2", "h3"}
    lines = (env["published"] / "addresses.txt").read_text().splitlines()
    assert sorted(lines) == sorted(s["address"] for s in pub.values())
    assert all((env["published"] / f"{h}.png").exists() for h in pub)
    for h, s in pub.items():
        assert s["fingerprint"] == run(env, h, "cat /etc/opt/simplex/fingerprint")
        a = client.parse_address(s["address"])
        assert client.b64u_encode(a.key_hash) == s["fingerprint"]
    assert pub["h1"]["hosts"][0] == addr(env, "h1") and pub["h1"]["hosts"][1].endswith(".onion")
    assert pub["h2"]["password"] == {"secret": H2_PASSWORD} and pub["h3"]["password"] is None
    # The TLS + SMP handshake checks the presented chain against the address' fingerprint.
    for h in ("h1", "h2"):
        q = new_queue(pub[h]["address"], addr(env, h))  # the published password works
        assert q.rcv_id
        with pytest.raises(client.PasswordRefused):
            new_queue(pub[h]["address"], addr(env, h), password=None)
        with pytest.raises(client.PasswordRefused):
            new_queue(pub[h]["address"], addr(env, h), password="not-the-password")
    assert new_queue(pub["h3"]["address"], addr(env, "h3"), password=None).rcv_id
    # A wrong fingerprint is refused: the relay presents exactly the key store's CA.
    wrong = pub["h3"]["address"].replace(pub["h3"]["fingerprint"], pub["h1"]["fingerprint"])
    with pytest.raises(client.WrongFingerprint):
        new_queue(wrong, addr(env, "h3"), password=None)


def test_second_run_reports_no_changes(env):
    proc, seconds = deploy(env, write_data(env))
    env["timings"]["no_change_rerun_s"] = round(seconds, 1)
    assert proc.returncode == 0, why(proc)
    assert changes(proc.stdout + proc.stderr) == 0, proc.stdout[-3000:]


def test_new_relay_version_is_installed_and_restarts_the_relays(env):
    import shutil
    import zipfile

    pids = {h: run(env, h, "systemctl show -p MainPID --value smp-server") for h in ("h1", "h2", "h3")}
    new = env["tmp"] / "bundle2"
    shutil.copytree(env["bundle"], new)
    wheel = next(new.glob("smpfleet_relay-*.whl"))
    with zipfile.ZipFile(wheel, "a") as z:  # a changed relay that kept its version number
        z.writestr("smprelay/_upgrade_marker.py", "BUILD = 'upgrade-test'\n")
    env["bundle"] = new
    proc, _ = deploy(env, write_data(env))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    ops = changed_ops(out)
    assert ops["smp-server running and enabled"] == 3 and any(k.startswith("install relay bundle") for k in ops)
    for h in ("h1", "h2", "h3"):
        assert run(env, h, "/opt/smpfleet/venv/bin/python -c 'import smprelay._upgrade_marker as m; print(m.BUILD)'") \
            == "upgrade-test"
        assert run(env, h, "ls /opt/smpfleet/bundles").split() == [
            __import__("smpfleet.bundle", fromlist=["x"]).from_directory(new).digest]
        assert run(env, h, "systemctl show -p MainPID --value smp-server") != pids[h]
    proc, _ = deploy(env, write_data(env))
    assert changes(proc.stdout + proc.stderr) == 0


def test_changed_setting_dry_run_then_restarts_only_that_relay(env):
    pids = {h: run(env, h, "systemctl show -p MainPID --value smp-server") for h in ("h1", "h2", "h3")}
    data = write_data(env, h3={"smp_daily_stats": True})
    proc, _ = deploy(env, data, "--dry")
    assert proc.returncode == 0, why(proc)
    assert detected_changes(proc.stdout + proc.stderr) == {
        "smp-server.ini": "1 (h3)", "smp-server running and enabled": "1 (h3)"}, proc.stdout + proc.stderr
    assert "log_stats = off" in run(env, "h3", "grep ^log_stats /etc/opt/simplex/smp-server.ini")
    proc, _ = deploy(env, data)
    assert proc.returncode == 0, why(proc)
    out = proc.stdout + proc.stderr
    assert changed_ops(out) == {"smp-server.ini": 1, "smp-server running and enabled": 1}, out[-3000:]
    assert changes(out) == 2
    assert run(env, "h3", "grep ^log_stats /etc/opt/simplex/smp-server.ini") == "log_stats = on"
    after = {h: run(env, h, "systemctl show -p MainPID --value smp-server") for h in ("h1", "h2", "h3")}
    assert after["h1"] == pids["h1"] and after["h2"] == pids["h2"] and after["h3"] != pids["h3"]


def test_reinstalled_hosts_keep_identity_and_onion_and_host_ca_key_is_adopted(env):
    from smpfleet_testbed import fleet
    from smprelay import certs

    before = published(env)
    onion1 = run(env, "h1", "cat /var/lib/tor/simplex-smp-singlehop/hostname")
    # Fresh hosts under the lock the session already holds (testbed's locked `up`).
    env["fleet"] = fleet._up_locked(env["inst"], 3, lambda m: None)
    assert run(env, "h1", "ls /etc/opt/simplex 2>&1 || true").endswith("No such file or directory")
    # h3 was set up by hand meanwhile ("smp-server init"): its own CA key sits on the host.
    ca_key, ca = certs.generate_ca("ED25519")
    srv_key, srv = certs.issue_server_cert(ca_key, ca, addr(env, "h3"))
    import shutil
    shutil.rmtree(env["keystore"] / "h3")
    for name, data in (("ca.key", certs.key_pem(ca_key)), ("ca.crt", certs.cert_pem(ca)),
                       ("server.key", certs.key_pem(srv_key)), ("server.crt", certs.cert_pem(srv))):
        subprocess.run(["ssh", "-F", env["fleet"].ssh_config, "h3",
                        f"mkdir -p /etc/opt/simplex && cat > /etc/opt/simplex/{name}"],
                       input=data, check=True)
    # h2's tor made its own onion keys meanwhile, and the key store lost its copy: adopt them.
    from smpfleet import onionkeys

    planted = onionkeys.generate()
    shutil.rmtree(env["keystore"] / "h2" / "onion")
    for name, data in planted.files.items():
        subprocess.run(["ssh", "-F", env["fleet"].ssh_config, "h2",
                        f"mkdir -p -m 700 /var/lib/tor/simplex-smp && cat > /var/lib/tor/simplex-smp/{name}"],
                       input=data, check=True)
    proc, _ = deploy(env, write_data(env, h3={"smp_daily_stats": True}), "--diff")
    assert proc.returncode == 0, why(proc)
    out = proc.stdout + proc.stderr
    assert "--diff is turned off" in out  # file diffs would show the INI's create_password
    h1_password = (env["keystore"] / "h1" / "password").read_text().strip()
    assert h1_password not in out and H2_PASSWORD not in out and "PRIVATE KEY" not in out
    after = published(env)
    assert after["h1"] == before["h1"]
    assert after["h2"]["fingerprint"] == before["h2"]["fingerprint"] and after["h2"]["hosts"] == [planted.hostname]
    assert (env["keystore"] / "h2" / "onion" / "hostname").read_text().strip() == planted.hostname
    assert run(env, "h2", "cat /var/lib/tor/simplex-smp/hostname") == planted.hostname
    assert run(env, "h1", "cat /var/lib/tor/simplex-smp-singlehop/hostname") == onion1
    assert after["h3"]["fingerprint"] == certs.fingerprint(ca) != before["h3"]["fingerprint"]
    assert run(env, "h3", "ls /etc/opt/simplex/ca.key 2>&1 || true").endswith("No such file or directory")
    assert (env["keystore"] / "h3" / "ca.key").read_bytes() == certs.key_pem(ca_key)
    for h in ("h1", "h2", "h3"):
        password = ... if h != "h3" else None
        assert new_queue(after[h]["address"], addr(env, h), password).rcv_id


def test_another_identity_on_a_host_is_never_replaced(env):
    from smprelay import certs

    from smpfleet import onionkeys

    _key, other = certs.generate_ca("ED448")
    original = run(env, "h1", "cat /etc/opt/simplex/ca.crt")
    subprocess.run(["ssh", "-F", env["fleet"].ssh_config, "h1", "cat > /etc/opt/simplex/ca.crt"],
                   input=certs.cert_pem(other), check=True)
    proc, _ = deploy(env, write_data(env, h3={"smp_daily_stats": True}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "host 'h1' already has another identity" in out
    assert certs.fingerprint(other) in out
    assert run(env, "h1", "cat /etc/opt/simplex/ca.crt") == certs.cert_pem(other).decode().strip()
    subprocess.run(["ssh", "-F", env["fleet"].ssh_config, "h1", "cat > /etc/opt/simplex/ca.crt"],
                   input=(original + "\n").encode(), check=True)
    foreign = onionkeys.generate()
    subprocess.run(["ssh", "-F", env["fleet"].ssh_config, "h2",
                    "cat > /var/lib/tor/simplex-smp/hs_ed25519_secret_key"], input=foreign.secret_key_file,
                   check=True)
    proc, _ = deploy(env, write_data(env, h3={"smp_daily_stats": True}))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "host 'h2' has other onion keys" in out
    assert run(env, "h2", "sha256sum < /var/lib/tor/simplex-smp/hs_ed25519_secret_key").split()[0] == \
        __import__("hashlib").sha256(foreign.secret_key_file).hexdigest()
