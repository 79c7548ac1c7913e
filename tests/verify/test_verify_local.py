"""verify against real relays on 127.0.0.1 (`smp-server init -y` + `start`) and, for the onion host,
an onion service of the loopback private Tor network that forwards to the relay. No root needed."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import sys
import time
from pathlib import Path

import pytest

from smpfleet import publish
from smpfleet_testbed import tornet

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_verify(path: Path, *args: str) -> tuple[int, str, list[dict] | None]:
    res = subprocess.run([sys.executable, "-m", "smpfleet.verify", str(path), *args],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    parsed = json.loads(res.stdout) if "--json" in args and res.returncode in (0, 1) else None
    return res.returncode, res.stdout + res.stderr, parsed


def test_local_relays_direct_and_onion(local_relays, tornet_loopback, tmp_path):
    net, _ = tornet_loopback
    a = local_relays("ra", "ra-secret")
    b = local_relays("rb", None)
    with tornet.onion_service(net, {a.port: f"127.0.0.1:{a.port}"}) as onion:
        servers = [publish.server_entry("ra", a.fingerprint, a.password, ["127.0.0.1", onion], [a.port]),
                   publish.server_entry("rb", b.fingerprint, None, ["127.0.0.1"], [b.port])]
        publish.write_published(tmp_path / "pub", servers)
        path = tmp_path / "pub" / "servers.json"
        socks = f"127.0.0.1:{net.socks[1]}"

        rc, out, res = run_verify(path, "--socks", socks, "--json")
        assert rc == 0, out
        assert [(r["server"], r["host"], r["result"], r["via_socks"]) for r in res] == [
            ("ra", "127.0.0.1", "ok", False), ("ra", onion, "ok", True), ("rb", "127.0.0.1", "ok", False)]
        assert all(r["connect_ms"] > 0 and r["message_ms"] > 0 for r in res)

        # the human table: one row per server and host, password never printed
        rc, out, _ = run_verify(path, "--socks", socks)
        assert rc == 0 and out.count(" ok ") == 3 and "ra-secret" not in out
        assert "verify: all 3 addresses work" in out

        # without --socks the onion host is not proven: reported, and the run fails
        rc, out, res = run_verify(path, "--json")
        assert rc == 1 and [r["result"] for r in res] == ["ok", "not checked", "ok"]
        rc, out, res = run_verify(path, "--json", "--public-only")
        assert rc == 0 and [r["host"] for r in res] == ["127.0.0.1", "127.0.0.1"]

        # wrong password -> refused on both hosts of that server only
        doc = json.loads(path.read_text())
        doc["servers"][0]["address"] = doc["servers"][0]["address"].replace(":ra-secret@", ":guess@")
        doc["servers"][0]["password"] = {"secret": "guess"}
        bad_pw = tmp_path / "pw" / "servers.json"
        bad_pw.parent.mkdir()
        bad_pw.write_text(json.dumps(doc))
        rc, out, res = run_verify(bad_pw, "--socks", socks, "--json")
        assert rc == 1 and [r["result"] for r in res] == ["password refused", "password refused", "ok"]

        # relay b stopped -> exactly its address is unreachable
        b.stop()
        rc, out, res = run_verify(path, "--socks", socks, "--json")
        assert rc == 1 and [r["result"] for r in res] == ["ok", "ok", "unreachable"]

        # relay a stopped: its onion host is unreachable through tor too
        a.stop()
        rc, out, res = run_verify(path, "--socks", socks, "--json")
        assert [r["result"] for r in res] == ["unreachable", "unreachable", "unreachable"]


def test_tampered_fingerprint_locally_is_not_retried(local_relays, tmp_path):
    a = local_relays("rc", None)
    other = "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="  # a real CA hash, not this relay's
    publish.write_published(tmp_path, [publish.server_entry("rc", other, None, ["127.0.0.1"], [a.port])])
    t0 = time.monotonic()
    rc, out, res = run_verify(tmp_path / "servers.json", "--json", "--retry-for", "60")
    assert rc == 1 and res[0]["result"] == "wrong fingerprint"
    assert time.monotonic() - t0 < 30  # a wrong identity is final, not waited on


def test_retry_for_waits_for_a_relay_that_comes_up(local_relays, tmp_path):
    r = local_relays("rd", None, start=False)
    publish.write_published(tmp_path, [publish.server_entry("rd", r.fingerprint, None, ["127.0.0.1"], [r.port])])
    rc, _, res = run_verify(tmp_path / "servers.json", "--json")
    assert rc == 1 and res[0]["result"] == "unreachable"
    proc = subprocess.Popen([sys.executable, "-m", "smpfleet.verify", str(tmp_path / "servers.json"), "--json",
                             "--retry-for", "60"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None  # still retrying
        r.start()
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and json.loads(out)[0]["result"] == "ok"


def test_port_that_is_not_an_smp_relay_is_a_handshake_error(tmp_path):
    """Something answers on the port but it is not TLS/SMP (here: an SSH-like banner)."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    fp = "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="
    publish.write_published(tmp_path, [publish.server_entry("ssh", fp, None, ["127.0.0.1"], [port])])
    try:
        rc, out, res = run_verify(tmp_path / "servers.json", "--json")
    finally:
        srv.close()
    assert rc == 1 and res[0]["result"] == "handshake error" and "TLS" in res[0]["detail"]
