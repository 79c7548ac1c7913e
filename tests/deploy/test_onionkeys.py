"""Onion keys made on the operator's machine are the keys tor itself uses.

The real-tor test starts the machine's tor with DisableNetwork 1 (it never connects anywhere)
and SOCKSPort 0, on a service directory holding our key, and reads the hostname tor writes.
"""
import shutil
import subprocess
import time

import pytest

from smpfleet import onionkeys

SEED = bytes(range(32))


def test_hostname_format_and_determinism():
    k = onionkeys.from_seed(SEED)
    assert k == onionkeys.from_seed(SEED)
    assert len(k.hostname) == 62 and k.hostname.endswith("d.onion")  # version 3 -> last char 'd'
    assert len(k.secret_key_file) == 96 and len(k.public_key_file) == 64
    assert onionkeys.parse_files(k.secret_key_file, k.public_key_file, k.hostname + "\n") == k


def test_mismatched_files_are_rejected():
    a, b = onionkeys.from_seed(SEED), onionkeys.generate()
    with pytest.raises(ValueError, match="does not belong"):
        onionkeys.parse_files(b.secret_key_file, a.public_key_file, a.hostname)
    with pytest.raises(ValueError, match="does not match"):
        onionkeys.parse_files(a.secret_key_file, a.public_key_file, b.hostname)
    with pytest.raises(ValueError, match="not a tor v3 secret"):
        onionkeys.parse_files(b"junk", a.public_key_file, a.hostname)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tor") is None, reason="needs the tor binary")
def test_real_tor_serves_our_key_under_our_hostname(tmp_path):
    keys = onionkeys.generate()
    hs = tmp_path / "hs"
    hs.mkdir(mode=0o700)
    (hs / "hs_ed25519_secret_key").write_bytes(keys.secret_key_file)
    (hs / "hs_ed25519_secret_key").chmod(0o600)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    torrc = tmp_path / "torrc"
    torrc.write_text(
        f"DisableNetwork 1\nSOCKSPort 0\nDataDirectory {data}\nLog notice stderr\n"
        f"HiddenServiceDir {hs}\nHiddenServicePort 5223 127.0.0.1:5223\n"
    )
    proc = subprocess.Popen(["tor", "-f", str(torrc), "--defaults-torrc", "/dev/null"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (hs / "hostname").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.05)
        assert (hs / "hostname").read_text().strip() == keys.hostname
        assert (hs / "hs_ed25519_public_key").read_bytes() == keys.public_key_file
    finally:
        proc.terminate()
        proc.wait(timeout=10)
