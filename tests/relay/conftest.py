"""Real relays for the scenario tests: ``smp-server init -y`` into temporary directories, the INI
port set to a free loopback port, ``smp-server start`` as a subprocess, wait until it listens.

Everything runs on 127.0.0.1; every process started here is stopped (SIGINT, then SIGKILL) at
teardown.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

SMP_SERVER = str(Path(sys.executable).with_name("smp-server"))
FIXTURES = Path("/work/shared/reference/upstream-fixtures")
FIXTURE_FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_ini(text: str, section: str, key: str, value: str) -> str:
    """Sets ``key = value`` in ``[section]`` (uncommenting or appending it)."""
    out, in_sec, done = [], False, False
    for line in text.splitlines():
        m = re.match(r"^\[(.+)\]\s*$", line)
        if m:
            if in_sec and not done:
                out.append(f"{key} = {value}")
                done = True
            in_sec = m.group(1) == section
        elif in_sec and not done and re.match(rf"^[#;]?\s*{re.escape(key)}\s*[=:]", line):
            out.append(f"{key} = {value}")
            done = True
            continue
        out.append(line)
    if not done:
        if not in_sec:
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    return "\n".join(out) + "\n"


@dataclass
class Relay:
    """One ``smp-server`` with its own config and log directories."""

    cfg: Path
    log: Path
    port: int
    password: str | None
    proc: subprocess.Popen | None = None
    outputs: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SMP_SERVER_CFG_PATH": str(self.cfg), "SMP_SERVER_LOG_PATH": str(self.log)}

    @property
    def fingerprint(self) -> str:
        return (self.cfg / "fingerprint").read_text().splitlines()[0]

    @property
    def address(self) -> str:
        pw = f":{self.password}" if self.password else ""
        return f"smp://{self.fingerprint}{pw}@127.0.0.1:{self.port}"

    @property
    def ini(self) -> Path:
        return self.cfg / "smp-server.ini"

    def set(self, section: str, key: str, value: str) -> None:
        self.ini.write_text(set_ini(self.ini.read_text(), section, key, value))

    def start(self, timeout: float = 30.0, args: tuple[str, ...] = ()) -> None:
        out = self.log.parent / f"{self.log.name}-start-{len(self.outputs)}.out"
        self.outputs.append(out)
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(
                [SMP_SERVER, "start", *args], env=self.env, stdout=f, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smp-server start exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"smp-server did not listen on {self.port} within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.outputs[-1].read_text(errors="replace") if self.outputs else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int | None:
        """Stops the server (SIGINT: upstream's graceful stop that saves messages)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def restart(self) -> int | None:
        rc = self.stop()
        self.start()
        return rc


def make_relay(
    base: Path,
    password: str | None = "",
    fixture_certs: Path | None = None,
    ini: dict[tuple[str, str], str] | None = None,
) -> Relay:
    """``smp-server init -y`` into ``base``; password "" ⇒ a random one, None ⇒ --no-password."""
    cfg, log = base / "etc", base / "var"
    if password == "":
        password = secrets.token_urlsafe(12)
    args = [SMP_SERVER, "init", "-y", "--disable-web"]
    args += ["--no-password"] if password is None else [f"--password={password}"]
    r = subprocess.run(
        args, env={**os.environ, "SMP_SERVER_CFG_PATH": str(cfg), "SMP_SERVER_LOG_PATH": str(log)},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    if r.returncode != 0:
        raise RuntimeError(f"smp-server init failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    relay = Relay(cfg, log, free_port(), password)
    relay.set("TRANSPORT", "port", str(relay.port))
    for (section, key), value in (ini or {}).items():
        relay.set(section, key, value)
    if fixture_certs is not None:
        for name in ("ca.crt", "server.crt", "server.key"):
            shutil.copyfile(fixture_certs / name, cfg / name)
        os.chmod(cfg / "server.key", 0o600)
        (cfg / "ca.key").unlink(missing_ok=True)  # not the fixture's CA: must not sign anything
        from smprelay import client as smp
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        ca = x509.load_pem_x509_certificate((cfg / "ca.crt").read_bytes())
        (cfg / "fingerprint").write_text(smp.fingerprint(ca.public_bytes(Encoding.DER)) + "\n")
    return relay


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    """Makes (not starts) relays in this test's tmp dir; stops them all at teardown."""
    made: list[Relay] = []

    def factory(**kw) -> Relay:
        r = make_relay(tmp_path / f"relay{len(made)}", **kw)
        made.append(r)
        return r

    yield factory
    for r in made:
        r.stop()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    """One started relay (with a create password) shared by a test module."""
    r = make_relay(tmp_path_factory.mktemp("relay"))
    r.start()
    yield r
    # after a whole module of scenarios: still running, stops cleanly on SIGINT, and no
    # connection handler died with an exception
    assert r.alive, f"smp-server died:\n{r.output()[-3000:]}"
    rc = r.stop()
    assert rc == 0, f"smp-server exited with {rc} on SIGINT:\n{r.output()[-3000:]}"
    assert "Traceback" not in r.output(), r.output()[-5000:]

