"""The real ``smp-server`` command in subprocesses: help, init (options, pipe, terminal), refusals,
cert, delete. Config and log directories are temporary (SMP_SERVER_CFG_PATH / _LOG_PATH)."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from smprelay import certs, config

SMP = str(Path(sys.executable).with_name("smp-server"))
IDENTITY = ["ca.key", "ca.crt", "server.key", "server.crt", "fingerprint", "smp-server.ini"]


def env_for(tmp: Path) -> dict[str, str]:
    return {**os.environ, "SMP_SERVER_CFG_PATH": str(tmp / "etc"), "SMP_SERVER_LOG_PATH": str(tmp / "var")}


def run(tmp: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SMP, *args], env=env_for(tmp), capture_output=True, text=True, input=input,
                          timeout=60, stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip


def snapshot(d: Path) -> dict[str, str]:
    """Content hash and mode of every file under d: to prove a refusal changed nothing."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() + oct(p.stat().st_mode)
        for p in sorted(d.rglob("*")) if p.is_file()
    }  # fmt: skip


def test_no_arguments_lists_commands() -> None:
    r = subprocess.run([SMP], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    for cmd in ("init", "start", "delete", "cert"):
        assert f"    {cmd} " in r.stdout


@pytest.mark.parametrize(
    "cmd, options",
    [
        ("init", ["--store-log", "--daily-stats", "--sign-algorithm", "--ip", "--fqdn", "--no-password", "--password", "--yes"]),
        ("start", ["--maintenance", "--log-level", "--skip-warnings"]),
        ("cert", ["--sign-algorithm", "--cn", "--ca-key"]),
        ("delete", ["--yes"]),
    ],
)
def test_command_help_lists_options(cmd: str, options: list[str]) -> None:
    r = subprocess.run([SMP, cmd, "-h"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for o in options:
        assert o in r.stdout


def test_version() -> None:
    r = subprocess.run([SMP, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("SMP server v")


def test_init_yes_defaults(tmp_path: Path) -> None:
    r = run(tmp_path, "init", "-y")
    assert r.returncode == 0, r.stderr
    etc, var = tmp_path / "etc", tmp_path / "var"
    assert sorted(os.listdir(etc)) == sorted(IDENTITY) and var.is_dir()
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((etc / key).stat().st_mode) == 0o600
        assert (etc / key).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    ca = certs.load_cert_pem((etc / "ca.crt").read_bytes())
    srv = certs.load_cert_pem((etc / "server.crt").read_bytes())
    assert certs.key_algorithm(ca.public_key()) == "ED448"  # the default
    assert certs.cert_common_name(srv) == "127.0.0.1" and certs.verify_issued_by(srv, ca)
    fp = certs.fingerprint(ca)
    assert (etc / "fingerprint").read_text() == fp + "\n"
    cfg = config.load(etc / "smp-server.ini")
    pw = cfg.auth.create_password
    assert pw and len(pw) == 44  # random: base64url of 32 bytes
    assert cfg.store_log.enable and not cfg.store_log.log_stats and cfg.transport.host is None
    assert cfg.web.static_path == f"{var}/www"
    out = r.stdout
    assert f"Server initialized, please provide additional server information in {etc}/smp-server.ini." in out
    assert "Run `smp-server start` to start server." in out
    assert "You should store CA private key securely and delete it from the server." in out
    assert f"CA private key location:\n{etc}/ca.key\n" in out
    assert "SMP server v" in out and f"Fingerprint: {fp}\n" in out
    assert f"Server address: smp://{fp}:{pw}@<hostnames>\n" in out


def test_init_yes_options(tmp_path: Path) -> None:
    r = run(tmp_path, "init", "-y", "-l", "-s", "-a", "ED25519", "--ip", "10.2.3.4", "-n", "smp.example.com",
            "--password", "Open-Sesame_1", "--source-code")  # fmt: skip
    assert r.returncode == 0, r.stderr
    etc = tmp_path / "etc"
    srv = certs.load_cert_pem((etc / "server.crt").read_bytes())
    assert certs.key_algorithm(srv.public_key()) == "ED25519" and certs.cert_common_name(srv) == "smp.example.com"
    cfg = config.load(etc / "smp-server.ini")
    assert cfg.store_log.log_stats and cfg.transport.host == ["smp.example.com"]
    assert cfg.auth.create_password == "Open-Sesame_1"
    fp = (etc / "fingerprint").read_text().strip()
    assert f"Server address: smp://{fp}:Open-Sesame_1@smp.example.com\n" in r.stdout
    assert "Server source code: https://github.com/simplex-chat/simplexmq" in r.stdout


def test_init_password_file(tmp_path: Path) -> None:
    pf = tmp_path / "pw"
    pf.write_text("From_a_file\n")
    r = run(tmp_path, "init", "-y", "--password-file", str(pf))
    assert r.returncode == 0, r.stderr
    assert config.load(tmp_path / "etc" / "smp-server.ini").auth.create_password == "From_a_file"
    bad = tmp_path / "bad"
    bad.write_text("no:colons\n")
    r = run(tmp_path / "other", "init", "-y", "--password-file", str(bad))
    assert r.returncode == 1 and f"invalid password in {bad}" in r.stderr
    assert not (tmp_path / "other" / "etc").exists()


def test_init_no_password_and_ip(tmp_path: Path) -> None:
    r = run(tmp_path, "init", "-y", "--no-password", "--ip", "192.0.2.7")
    assert r.returncode == 0, r.stderr
    fp = (tmp_path / "etc" / "fingerprint").read_text().strip()
    assert f"Server address: smp://{fp}@192.0.2.7\n" in r.stdout
    assert config.load(tmp_path / "etc" / "smp-server.ini").auth.create_password is None
    assert certs.cert_common_name(certs.load_cert_pem((tmp_path / "etc" / "server.crt").read_bytes())) == "192.0.2.7"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-a", "RSA"], "invalid sign algorithm 'RSA'"),
        (["--ip", "300.1.1.1"], "invalid IP address"),
        (["--password", "a@b"], "invalid password"),
        (["--password", "x", "--no-password"], "not allowed with argument"),
        (["--fqdn", "two words"], "invalid host name"),
        (["--source-code", "ftp://x"], "URI should start from http:// or https://"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_init_bad_flags(tmp_path: Path, args: list[str], message: str) -> None:
    r = run(tmp_path, "init", "-y", *args)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "etc").exists() and not (tmp_path / "var").exists()


def test_init_refuses_initialized_directory_and_changes_nothing(tmp_path: Path) -> None:
    assert run(tmp_path, "init", "-y").returncode == 0
    (tmp_path / "var" / "smp-server-store.log").write_text("CREATE ...\n")
    before = snapshot(tmp_path)
    r = run(tmp_path, "init", "-y", "-a", "ED25519")
    assert r.returncode == 1
    assert f"Error: server is already initialized ({tmp_path}/etc/smp-server.ini exists)." in r.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("leftover", ["etc/ca.key", "etc/fingerprint", "var/smp-server-store.log", "var/smp-server-messages.log"])
def test_init_refuses_partial_state(tmp_path: Path, leftover: str) -> None:
    p = tmp_path / leftover
    p.parent.mkdir(parents=True)
    p.write_text("precious")
    r = run(tmp_path, "init", "-y")
    assert r.returncode == 1
    assert "partly initialized" in r.stderr and str(p) in r.stderr and "never overwrites" in r.stderr
    assert p.read_text() == "precious" and [f for f in tmp_path.rglob("*") if f.is_file()] == [p]


def test_init_interactive_through_pipe(tmp_path: Path) -> None:
    answers = "\n" + "n\n" + "y\n" + "bad@pw\n" + "Pipe_pw\n" + "relay.example.org\n" + "\n" + "\n"
    r = run(tmp_path, "init", input=answers)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    prompts = [
        "Use `smp-server init -h` for available options.",
        "SMP server will be initialized (press Enter)",
        "Enable store log to restore queues and messages on server restart (Yn): ",
        "Enable logging daily statistics (yN): ",
        "Require a password to create new messaging queues?",
        "Invalid password. Only latin letters, digits and symbols other than '@' and ':' are allowed",
        "Enter server FQDN or IP address for certificate (127.0.0.1): ",
        "Enter server source code URI (https://github.com/simplex-chat/simplexmq): ",
        "Enter path to store generated server pages to show connection links",
    ]
    pos = [out.index(p) for p in prompts]
    assert pos == sorted(pos)  # asked in upstream order
    cfg = config.load(tmp_path / "etc" / "smp-server.ini")
    assert not cfg.store_log.enable and cfg.store_log.log_stats
    assert cfg.auth.create_password == "Pipe_pw" and cfg.transport.host == ["relay.example.org"]
    assert cfg.information["source_code"] == "https://github.com/simplex-chat/simplexmq"
    srv = certs.load_cert_pem((tmp_path / "etc" / "server.crt").read_bytes())
    assert certs.cert_common_name(srv) == "relay.example.org"


def test_init_interactive_pipe_ending_early_writes_nothing(tmp_path: Path) -> None:
    r = run(tmp_path, "init", input="\ny\n")
    assert r.returncode == 1 and "input ended before all questions were answered" in r.stderr
    assert not (tmp_path / "etc").exists()


def _expect(fd: int, text: str, buf: bytearray, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text.encode() not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"did not see {text!r} in {buf.decode(errors='replace')!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"terminal closed before {text!r}: {buf.decode(errors='replace')!r}")
            buf += chunk
    del buf[: buf.index(text.encode()) + len(text)]


def test_init_interactive_through_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    p = subprocess.Popen([SMP, "init"], env=env_for(tmp_path), stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    buf = bytearray()
    try:
        for prompt, answer in [
            ("(press Enter)", ""),
            ("(Yn): ", "maybe"),
            ("Invalid input, please enter 'y' or 'n'", None),
            ("(Yn): ", ""),
            ("(yN): ", ""),
            ("or enter password: ", "r"),
            ("for certificate (127.0.0.1): ", ""),
            ("Enter server source code URI", "https://example.org/fork"),
            ("to show connection links", "/srv/www"),
            ("Server address: smp://", None),
        ]:
            _expect(master, prompt, buf)
            if answer is not None:
                os.write(master, answer.encode() + b"\r")  # a terminal sends CR, the tty turns it into NL
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    cfg = config.load(tmp_path / "etc" / "smp-server.ini")
    assert cfg.store_log.enable and not cfg.store_log.log_stats
    assert cfg.auth.create_password and len(cfg.auth.create_password) == 44
    assert cfg.transport.host is None and cfg.web.static_path == "/srv/www"
    assert cfg.information["source_code"] == "https://example.org/fork"


def test_cert_keeps_identity_and_issues_new_online_cert(tmp_path: Path) -> None:
    assert run(tmp_path, "init", "-y", "-n", "smp.example.com").returncode == 0
    etc = tmp_path / "etc"
    ca_before, fp_before = (etc / "ca.crt").read_bytes(), (etc / "fingerprint").read_bytes()
    key_before, crt_before = (etc / "server.key").read_bytes(), (etc / "server.crt").read_bytes()
    r = run(tmp_path, "cert")
    assert r.returncode == 0, r.stderr
    assert "Generated new server credentials" in r.stdout and "CA private key location" in r.stdout
    assert (etc / "ca.crt").read_bytes() == ca_before and (etc / "fingerprint").read_bytes() == fp_before
    assert (etc / "server.key").read_bytes() != key_before and (etc / "server.crt").read_bytes() != crt_before
    ca = certs.load_cert_pem(ca_before)
    srv = certs.load_cert_pem((etc / "server.crt").read_bytes())
    assert certs.verify_issued_by(srv, ca)
    assert certs.cert_common_name(srv) == "smp.example.com" and certs.key_algorithm(srv.public_key()) == "ED448"
    assert stat.S_IMODE((etc / "server.key").stat().st_mode) == 0o600
    key = certs.load_key_pem((etc / "server.key").read_bytes())
    assert certs.public_raw(key.public_key()) == certs.public_raw(srv.public_key())


def test_cert_with_offline_ca_key_and_options(tmp_path: Path) -> None:
    assert run(tmp_path, "init", "-y").returncode == 0
    etc = tmp_path / "etc"
    offline = tmp_path / "offline-ca.key"
    os.rename(etc / "ca.key", offline)  # as recommended: the CA key is not on the server
    r = run(tmp_path, "cert")
    assert r.returncode == 1 and "CA private key" in r.stderr and "--ca-key" in r.stderr
    r = run(tmp_path, "cert", "--ca-key", str(offline), "--cn", "new.example.com", "-a", "ED25519")
    assert r.returncode == 0, r.stderr
    srv = certs.load_cert_pem((etc / "server.crt").read_bytes())
    assert certs.cert_common_name(srv) == "new.example.com" and certs.key_algorithm(srv.public_key()) == "ED25519"
    assert not (etc / "ca.key").exists()


def test_cert_refuses_foreign_ca_key_and_uninitialized(tmp_path: Path) -> None:
    r = run(tmp_path, "cert")
    assert r.returncode == 1 and "server is not initialized" in r.stderr
    assert run(tmp_path, "init", "-y").returncode == 0
    foreign = tmp_path / "foreign.key"
    foreign.write_bytes(certs.key_pem(certs.generate_ca()[0]))
    before = snapshot(tmp_path / "etc")
    r = run(tmp_path, "cert", "--ca-key", str(foreign))
    assert r.returncode == 1 and "does not belong to the CA certificate" in r.stderr
    assert snapshot(tmp_path / "etc") == before


def test_delete_asks_and_only_capital_y_deletes(tmp_path: Path) -> None:
    assert run(tmp_path, "init", "-y").returncode == 0
    for answer in ("y\n", "\n", "yes\n"):
        r = run(tmp_path, "delete", input=answer)
        assert r.returncode == 1 and "Server NOT deleted" in r.stdout and "THIS CANNOT BE UNDONE!" in r.stdout
        assert (tmp_path / "etc" / "ca.key").exists()
    r = run(tmp_path, "delete", input="Y\n")
    assert r.returncode == 0 and "Deleted configuration and log files" in r.stdout
    assert not (tmp_path / "etc").exists() and not (tmp_path / "var").exists()


def test_delete_yes(tmp_path: Path) -> None:
    assert run(tmp_path, "init", "-y").returncode == 0
    r = run(tmp_path, "delete", "-y")
    assert r.returncode == 0 and not (tmp_path / "etc").exists()
