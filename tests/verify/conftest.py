"""Fixtures for tests/verify: a private Tor network on 127.0.0.1 (real tor processes, ours only)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from smpfleet_testbed import tornet

LOOPBACK_PORT_BASE = 25100  # away from the demo's default 5100 so a running demo is not disturbed


@pytest.fixture(scope="session")
def tornet_loopback(tmp_path_factory):
    """(Network, Readiness) of a fresh private network on 127.0.0.1; stopped after the session."""
    if shutil.which("tor") is None or shutil.which("tor-gencert") is None:
        pytest.fail("tor and tor-gencert are needed (scripts/setup installs the tor package)")
    state = tmp_path_factory.mktemp("tornet")
    net, ready = tornet.up("vtlo", "127.0.0.1", LOOPBACK_PORT_BASE, timeout=150, state_root=state)
    try:
        yield net, ready
    finally:
        tornet.stop(net)


SMP_SERVER = str(Path(sys.executable).with_name("smp-server"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRelay:
    """A real `smp-server` (init -y, then start) on a free 127.0.0.1 port."""

    name: str
    root: Path
    port: int
    password: str | None
    proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SMP_SERVER_CFG_PATH": str(self.root / "cfg"), "SMP_SERVER_LOG_PATH": str(self.root / "log")}

    @property
    def fingerprint(self) -> str:
        return (self.root / "cfg" / "fingerprint").read_text().split()[0]

    def init(self) -> None:
        pw = ["--password", self.password] if self.password else ["--no-password"]
        subprocess.run([SMP_SERVER, "init", "-y", "--disable-web", *pw], env=self.env, check=True,
                       capture_output=True, timeout=60)
        ini = self.root / "cfg" / "smp-server.ini"
        text = re.sub(r"(?m)^port = .*$", f"port = {self.port}", ini.read_text(), count=1)
        ini.write_text(re.sub(r"(?m)^host = .*$", "host = 127.0.0.1", text, count=1))

    def start(self) -> None:
        self.proc = subprocess.Popen([SMP_SERVER, "start"], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=open(self.root / "out.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smp-server {self.name} exited: {(self.root / 'out.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"smp-server {self.name} did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def local_relays(tmp_path):
    """Factory: local_relays(name, password, start=True) -> a LocalRelay; all stopped at teardown."""
    made: list[LocalRelay] = []

    def make(name: str, password: str | None, start: bool = True) -> LocalRelay:
        r = LocalRelay(name, tmp_path / name, _free_port(), password)
        r.root.mkdir()
        made.append(r)
        r.init()
        if start:
            r.start()
        return r

    try:
        yield make
    finally:
        for r in made:
            r.stop()
