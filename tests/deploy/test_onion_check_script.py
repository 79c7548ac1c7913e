"""deploy/hostscripts/onion_service.py against a real tor whose control socket appears late.

`systemctl restart tor@default` returns before tor has opened its control socket (testbed.md §4a),
so the check must wait for the socket instead of failing at once. Here tor starts 2 s after the
check, with DisableNetwork 1 (it never reaches any network) and its files in tmp_path.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smpfleet import onionkeys

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "hostscripts" / "onion_service.py"
TOR = shutil.which("tor") or "/usr/sbin/tor"


def _tor_config(tmp: Path, hs_dir: Path, control: Path) -> list[str]:
    return [TOR, "--defaults-torrc", os.devnull, "-f", os.devnull, "--ignore-missing-torrc",
            "DataDirectory", str(tmp / "data"), "DisableNetwork", "1", "SocksPort", "0",
            "ControlSocket", str(control), "CookieAuthentication", "1",
            "HiddenServiceDir", str(hs_dir), "HiddenServicePort", "5223 127.0.0.1:5223",
            "Log", f"notice file {tmp / 'tor.log'}"]


@pytest.mark.skipif(not Path(TOR).exists(), reason="tor is not installed")
def test_check_waits_for_a_control_socket_that_appears_late(tmp_path):
    keys = onionkeys.generate()
    hs_dir = tmp_path / "hs"
    hs_dir.mkdir(mode=0o700)
    for name, data in keys.files.items():
        (hs_dir / name).write_bytes(data)
        (hs_dir / name).chmod(0o600)
    (tmp_path / "data").mkdir(mode=0o700)
    control = tmp_path / "control"
    check = subprocess.Popen([sys.executable, str(SCRIPT), "--socket", str(control), "--dir", str(hs_dir),
                              "--port", "5223", "--expect", keys.hostname, "--timeout", "40"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    assert check.poll() is None, f"the check gave up before tor started: {check.communicate()}"
    tor = subprocess.Popen(_tor_config(tmp_path, hs_dir, control), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        out, err = check.communicate(timeout=60)
    finally:
        tor.terminate()
        tor.wait(timeout=20)
    assert check.returncode == 0, f"{out}\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["hostname"] == keys.hostname
    assert result["created_ports"] == []  # tor already serves 5223 from its config


def test_check_without_tor_fails_with_the_socket_path(tmp_path):
    control = tmp_path / "control"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--socket", str(control), "--dir", str(tmp_path),
                           "--port", "5223", "--expect", "x.onion", "--timeout", "1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert f"cannot reach tor's control socket {control}" in proc.stderr
    assert "Traceback" not in proc.stderr
