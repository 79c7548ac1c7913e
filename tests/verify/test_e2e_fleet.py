"""End to end: deploy the 3-host testbed fleet with onion services whose tor joins our private Tor
network (only through inventory data: smp_tor_extra_config), then prove every published address
with `python -m smpfleet.verify` over TLS and over .onion through the network's SOCKS port.

Needs root (real systemd-nspawn hosts). Own testbed instance (env SMPFLEET_VERIFY_TESTBED, default
`vfy`) so the session's shared `testbed` hosts are not redeployed with other keys.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from smpfleet_testbed import tornet

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
E2E_PORT_BASE = 27100


@dataclass
class E2E:
    fleet: object
    net: tornet.Network
    ready: tornet.Readiness
    published: Path
    deploy_s: float

    @property
    def socks(self) -> str:
        return f"{self.net.socks[0]}:{self.net.socks[1]}"


def _data_file(path: Path, work: Path, addresses: dict[str, str], torrc_lines: list[str]) -> None:
    """The deploy's inventory data for this run: h1 public+onion, h2 onion-only with a fixed
    password, h3 public+onion without password; every tor joins the private network."""
    data = {
        "smp_keystore": str(work / "keystore"),
        "smp_publish_dir": str(work / "published"),
        "smp_ports": [5223, 443],
        "smp_tor_extra_config": torrc_lines,
    }
    host_data = {
        "h1": {"smp_fqdn": addresses["h1"]},
        "h2": {"smp_onion_only": True, "smp_password_policy": "fixed", "smp_password": "e2e-h2-secret"},
        "h3": {"smp_fqdn": addresses["h3"], "smp_sign_algorithm": "ED25519", "smp_password_policy": "none"},
    }
    path.write_text(f"data = {data!r}\nhost_data = {host_data!r}\n")


def _why(output: str) -> str:
    """The lines of a pyinfra run that explain a failure: each error line with the 4 lines before
    it and the lines that continue it (a failed check's message and the relay's journal follow
    it), not the tail, which is only pyinfra's results table."""
    lines = output.splitlines()
    keep: set[int] = set()
    for i, line in enumerate(lines):
        if re.search(r"check failed|rror|smpfleet:|not serving|cannot reach|Traceback", line) \
                and not line.lstrip().startswith(("Operation", "Grand total")):
            keep.update(range(max(0, i - 4), i + 1))
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].startswith("-->"):
                keep.add(j)
                j += 1
    return "\n".join(lines[i] for i in sorted(keep)[-150:]) or "\n".join(lines[-80:])


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root (network namespaces, mounts, cgroups, systemd-nspawn)")
    from smpfleet_testbed import fleet

    name = os.environ.get("SMPFLEET_VERIFY_TESTBED", "vfy")
    inst = fleet.resolve(name, None)
    work = tmp_path_factory.mktemp("e2e")
    log = lambda msg: print(f"\n[e2e] {msg}")  # noqa: E731
    # fleet.session holds the instance lock until down: a second run with the same name (another
    # CI run, a hand run) fails with "is busy" instead of replacing these hosts mid-deploy.
    with fleet.session(inst, 3, log=log) as fl:
        net = None
        try:
            tornet.down(name)  # a network left by an aborted run of this test
            net, ready = tornet.up(name, fl.bridge_address, E2E_PORT_BASE, timeout=150)
            log(f"tornet on {fl.bridge_address}: bootstrapped {ready.bootstrapped_s:.1f} s, first onion round "
                f"trip {ready.first_round_trip_s:.1f} s, echo rtt {', '.join(f'{x:.0f}' for x in ready.round_trip_ms)} ms")
            data = work / "testbed_data.py"
            _data_file(data, work, {h["name"]: h["address"] for h in fl.hosts}, net.joining_torrc_lines())
            env = {**os.environ, "SMPFLEET_TESTBED": name, "SMPFLEET_TESTBED_DATA": str(data)}
            t0 = time.monotonic()
            res = subprocess.run([str(VENV_BIN / "pyinfra"), "-y", str(fl.pyinfra_inventory), "deploy.py"],
                                 cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            deploy_s = time.monotonic() - t0
            full_log = work / "pyinfra.log"
            full_log.write_text(res.stdout + res.stderr)
            if res.returncode != 0:
                pytest.fail(f"deploy failed (exit {res.returncode}, {deploy_s:.1f} s); full log {full_log}:\n"
                            f"{_why(res.stdout + res.stderr)}")
            log(f"deploy of 3 hosts with onion: {deploy_s:.1f} s")
            yield E2E(fl, net, ready, work / "published" / "servers.json", deploy_s)
        finally:
            if net is not None:
                tornet.stop(net)


def run_verify(path: Path, *args: str) -> tuple[int, list[dict]]:
    res = subprocess.run([sys.executable, "-m", "smpfleet.verify", str(path), "--json", *args],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads(res.stdout)


def _published(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_published_address_works_over_tls_and_onion(e2e):
    doc = _published(e2e.published)
    expected = {(s["host"], h) for s in doc["servers"] for h in s["hosts"]}
    assert len(expected) == 5  # h1 public+onion, h2 onion only, h3 public+onion
    assert sum(h.endswith(".onion") for _, h in expected) == 3
    # right after the deploy an onion descriptor may still be on its way to the HSDirs
    rc, results = run_verify(e2e.published, "--socks", e2e.socks, "--retry-for", "60")
    for r in results:
        print(f"\n  {r['server']} {r['host'][:20]:20} {r['result']} connect {r['connect_ms']:.0f} ms, "
              f"SEND->MSG {r['message_ms']:.0f} ms, total {r['total_ms']:.0f} ms" if r["result"] == "ok" else r)
    assert {(r["server"], r["host"]) for r in results} == expected
    assert [r for r in results if r["result"] != "ok"] == []
    assert all(r["via_socks"] == r["host"].endswith(".onion") for r in results)
    assert rc == 0


def test_tampered_fingerprint_is_a_fingerprint_mismatch(e2e, tmp_path):
    doc = _published(e2e.published)
    by = {s["host"]: s for s in doc["servers"]}
    real, other = by["h3"]["fingerprint"], by["h1"]["fingerprint"]  # a valid hash of another CA
    by["h3"]["address"] = by["h3"]["address"].replace(real, other)
    by["h3"]["fingerprint"] = other
    tampered = tmp_path / "servers.json"
    tampered.write_text(json.dumps(doc))
    rc, results = run_verify(tampered, "--socks", e2e.socks)
    assert rc == 1
    bad = {(r["server"], r["host"]): r["result"] for r in results if r["result"] != "ok"}
    assert bad == {("h3", h): "wrong fingerprint" for h in by["h3"]["hosts"]}


def test_wrong_password_is_refused_over_onion(e2e, tmp_path):
    doc = _published(e2e.published)
    by = {s["host"]: s for s in doc["servers"]}
    pw = by["h2"]["password"]["secret"]
    by["h2"]["address"] = by["h2"]["address"].replace(f":{pw}@", ":not-the-password@")
    by["h2"]["password"] = {"secret": "not-the-password"}
    tampered = tmp_path / "servers.json"
    tampered.write_text(json.dumps(doc))
    rc, results = run_verify(tampered, "--socks", e2e.socks)
    assert rc == 1
    bad = {(r["server"], r["host"]): r["result"] for r in results if r["result"] != "ok"}
    assert bad == {("h2", by["h2"]["hosts"][0]): "password refused"}


def test_stopped_relay_fails_exactly_its_addresses(e2e):
    doc = _published(e2e.published)
    h1_hosts = next(s["hosts"] for s in doc["servers"] if s["host"] == "h1")
    e2e.fleet.run("h1", "systemctl stop smp-server")
    try:
        rc, results = run_verify(e2e.published, "--socks", e2e.socks)
    finally:
        e2e.fleet.run("h1", "systemctl start smp-server")
    assert rc == 1
    bad = {(r["server"], r["host"]): r["result"] for r in results if r["result"] != "ok"}
    assert bad == {("h1", h): "unreachable" for h in h1_hosts}
