"""hostscripts/relay_check.py, the deploy's on-host identity check, against a real local relay.

Regression: a fingerprint is base64url and may start with "-" (about 1 relay in 64); passed as
``--fingerprint -xyz`` argparse took it for an option and the check failed on a healthy relay.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from smpfleet.check import relay_check_args

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "hostscripts" / "relay_check.py"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def relay(tmp_path):
    env = {**os.environ, "SMP_SERVER_CFG_PATH": str(tmp_path / "cfg"), "SMP_SERVER_LOG_PATH": str(tmp_path / "log")}
    subprocess.run([str(BIN / "smp-server"), "init", "-y", "--no-password", "-a", "ED25519"],
                   env=env, check=True, capture_output=True, timeout=60)
    ini = tmp_path / "cfg" / "smp-server.ini"
    port = free_port()
    ini.write_text(re.sub(r"(?m)^port = .*$", f"port = {port}", ini.read_text()))
    proc = subprocess.Popen([str(BIN / "smp-server"), "start"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        yield (tmp_path / "cfg" / "fingerprint").read_text().strip(), port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_check(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--timeout", "20"],
                          capture_output=True, text=True, timeout=60)


def test_the_deploys_arguments_pass_the_right_identity(relay) -> None:
    fingerprint, port = relay
    res = run_check(relay_check_args(fingerprint, [port]))
    assert res.returncode == 0, res.stderr
    assert '"ok"' in res.stdout


def test_a_fingerprint_starting_with_a_dash_is_a_value_not_an_option(relay) -> None:
    _, port = relay
    wrong = "-" + "A" * 42 + "="  # a well-formed base64url fingerprint that is not this relay's
    res = run_check(relay_check_args(wrong, [port]))
    assert res.returncode == 1, res.stderr  # a verdict on the relay, not argparse's usage error (2)
    assert "wrong identity" in res.stdout
