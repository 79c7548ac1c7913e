"""``smp-server start`` as a subprocess: banner, TLS chain, persistence across SIGINT/SIGTERM/SIGKILL,
refusals that leave every file as it was, daily statistics. Real SMP client, loopback ports only."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from smprelay import certs
from smprelay import client as smp

FIXTURES = Path(__file__).parent / "data" / "upstream-fixtures"
UPSTREAM_FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="


def snapshot(*dirs: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in dirs if d.exists() for p in sorted(d.rglob("*")) if p.is_file()
    }  # fmt: skip


def start_fails(relay, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(os.sys.executable).with_name("smp-server")), "start", *args], env=relay.env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


async def new_queue_with(address: str, bodies: list[bytes]) -> tuple[smp.Queue, smp.AuthKey]:
    async with await smp.connect(address, timeout=10) as c:
        q = await c.create_queue(subscribe=False)
        sk = smp.AuthKey.generate("ed25519")
        await c.secure_by_sender(q.snd_id, sk)
        for b in bodies:
            await c.send(q.snd_id, b, sk)
        return q, sk


async def drain(address: str, q: smp.Queue) -> list[bytes]:
    """GET and ACK every pending message of q."""
    out = []
    async with await smp.connect(address, timeout=10) as c:
        while (m := await c.get(q)) is not None:
            out.append(m.body)
            nxt = await c.ack(q, m.msg_id)
            assert nxt is None  # after GET, ACK answers OK; the next message needs another GET
    return out


def test_banner_and_tls_chain(relay_factory) -> None:
    r = relay_factory(password=None)
    r.start()
    out = r.output()
    fp = r.fingerprint
    assert out.splitlines()[0].startswith("SMP server v")
    assert f"Fingerprint: {fp}\n" in out
    assert f"Server address: smp://{fp}@<hostnames>:{r.port}\n" in out  # port given: it is not 5223
    assert f"Store log: {r.log}/smp-server-store.log\n" in out
    assert f"Listening on port {r.port} (TLS)...\n" in out
    assert "expiring clients inactive for 21600 seconds every 3600 seconds" in out
    assert "creating new queues allowed" in out
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(r.cfg / "ca.crt")  # the CA is the only trust anchor, as clients do
    with socket.create_connection(("127.0.0.1", r.port), timeout=10) as raw, ctx.wrap_socket(raw) as s:
        leaf = s.getpeercert(binary_form=True)
        chain = s._sslobj.get_unverified_chain()  # type: ignore[attr-defined]  # public in 3.13
        ders = [c.public_bytes(ssl._ssl.ENCODING_DER) if hasattr(c, "public_bytes") else c for c in chain]  # type: ignore[attr-defined]
    srv = certs.load_cert_pem((r.cfg / "server.crt").read_bytes())
    ca = certs.load_cert_pem((r.cfg / "ca.crt").read_bytes())
    assert leaf == certs.cert_der(srv)
    assert ders == [certs.cert_der(srv), certs.cert_der(ca)]

    async def ping() -> None:
        async with await smp.connect(r.address, timeout=10) as c:
            await c.ping()

    asyncio.run(ping())


def test_password_and_multiple_hosts_in_banner(relay_factory) -> None:
    """Not a terminal (as under systemd, where the banner lands in the journal): the address is
    printed with every host, the password masked."""
    r = relay_factory(password="Banner_pw")
    r.set("TRANSPORT", "host", "smp.example.com,abcdefghijklmnop.onion")
    r.set("TRANSPORT", "port", f"5223,{r.port}")  # 5223 listed: no port in the address
    r.set("TRANSPORT", "port", str(r.port))
    r.start()
    assert f"smp://{r.fingerprint}:********@smp.example.com,abcdefghijklmnop.onion:{r.port}\n" in r.output()
    assert "Banner_pw" not in r.output()
    assert "creating new queues requires password" in r.output()
    with pytest.raises(smp.PasswordRefused):
        asyncio.run(new_queue_with(r.address.replace(":Banner_pw@", ":wrong@"), []))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_stop_saves_messages_and_restart_delivers_them(relay_factory, sig: int) -> None:
    r = relay_factory()
    r.start()
    q, _ = asyncio.run(new_queue_with(r.address, [b"first", b"second" * 1000, b""]))
    assert r.stop(sig) == 0
    saved = (r.log / "smp-server-messages.log").read_text().splitlines()
    assert len(saved) == 3 and all(line.startswith("v3 ") for line in saved)
    assert "Saved 3 undelivered messages" in r.output()
    r.start()
    assert "Restored 3 messages (0 expired)" in r.output()
    assert not (r.log / "smp-server-messages.log").exists() and (r.log / "smp-server-messages.log.bak").exists()
    assert asyncio.run(drain(r.address, q)) == [b"first", b"second" * 1000, b""]
    assert r.stop() == 0
    r.start()  # delivered and acknowledged: nothing comes back
    assert asyncio.run(drain(r.address, q)) == []


def test_sigkill_keeps_queues_and_log_is_compacted(relay_factory) -> None:
    r = relay_factory()
    r.start()
    q1, sk1 = asyncio.run(new_queue_with(r.address, [b"lost on SIGKILL"]))
    q2, _ = asyncio.run(new_queue_with(r.address, []))

    async def delete(q: smp.Queue) -> None:
        async with await smp.connect(r.address, timeout=10) as c:
            await c.delete(q)

    asyncio.run(delete(q2))
    r.stop(signal.SIGKILL)
    assert not (r.log / "smp-server-messages.log").exists()
    log_lines = (r.log / "smp-server-store.log").read_text().splitlines()
    assert [line.split()[0] for line in log_lines] == ["CREATE", "SECURE", "CREATE", "SECURE", "DELETE"]
    r.start()
    assert "Restored 1 queues" in r.output()
    compacted = (r.log / "smp-server-store.log").read_text().splitlines()
    assert len(compacted) == 1 and compacted[0].startswith("CREATE rid=" + smp.b64u_encode(q1.rcv_id))
    assert " sk=MCow" in compacted[0]  # the SECURE was folded into the record
    backups = [p for p in r.log.iterdir() if p.name.startswith("smp-server-store.log.20")]
    assert len(backups) == 1 and backups[0].read_text().splitlines() == log_lines

    async def use_again() -> list[bytes]:
        async with await smp.connect(r.address, timeout=10) as c:
            await c.send(q1.snd_id, b"after restart", sk1)
            m = await c.get(q1)
            return [m.body] if m else []

    assert asyncio.run(use_again()) == [b"after restart"]


def test_upstream_fixture_certificates(relay_factory) -> None:
    r = relay_factory(password=None, fixture_certs=FIXTURES)
    r.start()
    assert r.fingerprint == UPSTREAM_FP
    assert f"Server address: smp://{UPSTREAM_FP}@<hostnames>:{r.port}\n" in r.output()
    q, _ = asyncio.run(new_queue_with(f"smp://{UPSTREAM_FP}@127.0.0.1:{r.port}", [b"x"]))
    assert asyncio.run(drain(r.address, q)) == [b"x"]


def test_default_web_lines_do_not_stop_start(relay_factory) -> None:
    r = relay_factory(password=None)
    r.set("WEB", "https", "443")
    r.set("WEB", "cert", f"{r.cfg}/web.crt")  # does not exist, as after a default init
    r.set("WEB", "key", f"{r.cfg}/web.key")
    r.set("TRANSPORT", "future_option", "1")
    r.start()
    assert "Not serving the static site" in r.output()
    assert f"Warning: {r.ini}: [TRANSPORT] unknown key 'future_option' is ignored" in r.output()


def test_daily_stats_are_appended(relay_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    r = relay_factory(password=None)
    r.set("STORE_LOG", "log_stats", "on")
    monkeypatch.setenv("SMPRELAY_STATS_INTERVAL", "1")  # test knob: a "day" of one second
    r.start()
    asyncio.run(new_queue_with(r.address, [b"a", b"b"]))
    path = r.log / "smp-server-stats.daily.log"
    deadline = time.monotonic() + 15
    rows: list[list[str]] = []
    while time.monotonic() < deadline:
        rows = [line.split(",") for line in path.read_text().splitlines()] if path.exists() else []
        if any(row[1] == "1" for row in rows):
            break
        time.sleep(0.2)
    row = next(row for row in rows if row[1] == "1")
    assert len(row) == 96
    assert row[1] == "1" and row[2] == "1" and row[4] == "2"  # qCreated, qSecured, msgSent
    assert row[14] == "1" and row[15] == "2"  # qCount, msgCount gauges
    assert r.stop() == 0
    monkeypatch.setenv("SMPRELAY_STATS_INTERVAL", "3600")  # no new line (and reset) from here on
    r.start()
    asyncio.run(new_queue_with(r.address, []))
    assert r.stop() == 0
    assert "qCreated=1\n" in (r.log / "smp-server-stats.log").read_text()
    r.start()  # the running period survives a restart
    assert not (r.log / "smp-server-stats.log").exists() and (r.log / "smp-server-stats.log.bak").exists()
    assert r.stop() == 0
    assert "qCreated=1\n" in (r.log / "smp-server-stats.log").read_text()


def test_refusals_change_nothing(relay_factory) -> None:
    r = relay_factory()
    r.start()
    asyncio.run(new_queue_with(r.address, [b"keep"]))
    r.stop()
    before = snapshot(r.cfg, r.log)

    fp = r.cfg / "fingerprint"
    good_fp = fp.read_text()
    fp.write_text(UPSTREAM_FP + "\n")
    res = start_fails(r)
    assert res.returncode == 1 and "Stored fingerprint is invalid." in res.stderr
    fp.write_text(good_fp)

    crt = r.cfg / "server.crt"
    good_crt = crt.read_bytes()
    crt.unlink()
    res = start_fails(r)
    assert res.returncode == 1 and "Error: no SMP credentials: server.crt" in res.stderr and "smp-server cert" in res.stderr
    crt.write_bytes((FIXTURES / "server.crt").read_bytes())  # signed by another CA
    res = start_fails(r)
    assert res.returncode == 1 and "is not signed by" in res.stderr
    crt.write_bytes(_rsa_cert_pem())
    res = start_fails(r)
    assert res.returncode == 1 and "SMP needs Ed25519 or Ed448" in res.stderr
    crt.write_bytes(good_crt)

    ini = r.ini.read_text()
    r.ini.write_text(ini.replace("log_tls_errors = off", "log_tls_errors = perhaps"))
    res = start_fails(r)
    assert res.returncode == 1
    assert f"{r.ini}: [TRANSPORT] log_tls_errors: invalid value 'perhaps': allowed values are `on` and `off`" in res.stderr
    r.ini.unlink()
    r.ini.mkdir()
    res = start_fails(r)
    assert res.returncode == 1 and "cannot read the file" in res.stderr
    r.ini.rmdir()
    r.ini.write_text(ini)

    with socket.create_server(("127.0.0.1", r.port)):
        res = start_fails(r)
    assert res.returncode == 1 and f"cannot listen on port {r.port}: address already in use" in res.stderr

    assert snapshot(r.cfg, r.log) == before  # the saved message is still waiting in its file
    r.start()
    assert "Restored 1 messages" in r.output()


def _rsa_cert_pem() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa")])
    now = dt.datetime.now(dt.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(k, hashes.SHA256()))  # fmt: skip
    return certs.cert_pem(c)


def test_uninitialized(tmp_path: Path) -> None:
    env = {**os.environ, "SMP_SERVER_CFG_PATH": str(tmp_path / "etc"), "SMP_SERVER_LOG_PATH": str(tmp_path / "var")}
    res = subprocess.run([str(Path(os.sys.executable).with_name("smp-server")), "start"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 1 and "server is not initialized" in res.stderr and "smp-server init" in res.stderr


def test_messages_for_unknown_queue_stop_start_unless_skip_warnings(relay_factory) -> None:
    r = relay_factory()
    r.start()
    asyncio.run(new_queue_with(r.address, [b"orphan"]))
    r.stop()
    (r.log / "smp-server-store.log").write_text("")  # the queue record is gone
    res = start_fails(r)
    assert res.returncode == 1 and "unknown queue" in res.stderr and "--skip-warnings" in res.stderr
    assert (r.log / "smp-server-messages.log").exists()
    res = start_fails(r, "--maintenance", "--skip-warnings")
    assert res.returncode == 0 and "Maintenance done" in res.stdout
    assert not (r.log / "smp-server-messages.log").read_text()
