"""How long the private Tor network takes to be usable, and what an onion round trip costs.

Brings up a fresh loopback network N times (3 authorities, 3 relays, hs, client) and prints the
time to "client bootstrapped 100%" and to the first echo through a fresh onion service, then the
echo round-trip time through the onion; then starts a real ``smp-server`` on 127.0.0.1, serves it
as an onion service too, and prints what ``smpfleet.verify`` measures for each path (connect =
TCP/SOCKS + TLS + SMP handshake; message = SEND until MSG arrives; total = NEW..DEL).

    .venv/bin/python bench/tornet_verify.py [--runs 3] [--probes 10]

Numbers, not asserts. Everything binds on 127.0.0.1; every tor started here is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smpfleet import publish, verify
from smpfleet_testbed import tornet

SMP_SERVER = str(Path(sys.executable).with_name("smp-server"))
PORT_BASE = 29100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    return (f"min {xs[0]:.1f}  median {statistics.median(xs):.1f}  max {xs[-1]:.1f}"
            + (f"  p90 {xs[int(len(xs) * 0.9) - 1]:.1f}" if len(xs) >= 10 else ""))


def _rss_mb(net: tornet.Network) -> float:
    total_kb = 0
    for pid in tornet.running_pids(net.root).values():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def start_relay(root: Path) -> tuple[subprocess.Popen, int, str]:
    env = {**os.environ, "SMP_SERVER_CFG_PATH": str(root / "cfg"), "SMP_SERVER_LOG_PATH": str(root / "log")}
    subprocess.run([SMP_SERVER, "init", "-y", "--disable-web", "--password", "bench-secret"], env=env,
                   check=True, capture_output=True)
    port = _free_port()
    ini = root / "cfg" / "smp-server.ini"
    ini.write_text(re.sub(r"(?m)^port = .*$", f"port = {port}", ini.read_text(), count=1))
    proc = subprocess.Popen([SMP_SERVER, "start"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, port, (root / "cfg" / "fingerprint").read_text().split()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="fresh networks to bring up (default 3)")
    ap.add_argument("--probes", type=int, default=10, help="verify probes per path (default 10)")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench-tornet-"))
    boots, firsts, rtts = [], [], []
    net = None
    for i in range(args.runs):
        if net is not None:
            tornet.stop(net)
        t0 = time.monotonic()
        net, ready = tornet.up("bench", "127.0.0.1", PORT_BASE, timeout=180, state_root=state)
        print(f"run {i + 1}: up() returned after {time.monotonic() - t0:.1f} s; bootstrapped {ready.bootstrapped_s:.1f} s, "
              f"onion published {ready.onion_published_s:.1f} s, first onion echo {ready.first_round_trip_s:.1f} s")
        boots.append(ready.bootstrapped_s)
        firsts.append(ready.first_round_trip_s)
        rtts += ready.round_trip_ms
    assert net is not None
    proc = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            proc, port, fp = start_relay(Path(tmp))
            with tornet.onion_service(net, {port: f"127.0.0.1:{port}"}) as onion:
                entry = publish.server_entry("bench", fp, "bench-secret", ["127.0.0.1", onion], [port])
                socks = f"socks5h://127.0.0.1:{net.socks[1]}"
                results = []
                for _ in range(args.probes):
                    results += asyncio.run(verify.verify([entry], socks, timeout=60))
        print(f"\nprivate Tor network, {args.runs} fresh start(s) on 127.0.0.1 (8 tor processes):")
        print(f"  client bootstrapped 100%  [s]: {_stats(boots)}")
        print(f"  first onion round trip    [s]: {_stats(firsts)}")
        print(f"  onion echo round trip    [ms]: {_stats(rtts)}  (n={len(rtts)})")
        print(f"  resident memory of the 8 tor processes: {_rss_mb(net):.0f} MB")
        for via in (False, True):
            rs = [r for r in results if r.check.via_socks == via]
            bad = [r for r in rs if not r.ok]
            print(f"verify {'onion via SOCKS' if via else 'direct TLS'} (n={len(rs)}, failed {len(bad)}):")
            ok = [r for r in rs if r.ok]
            if ok:
                print(f"  connect  [ms]: {_stats([r.connect_ms for r in ok])}")
                print(f"  SEND->MSG[ms]: {_stats([r.message_ms for r in ok])}")
                print(f"  NEW..DEL [ms]: {_stats([r.total_ms for r in ok])}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        tornet.stop(net)
    return 0


if __name__ == "__main__":
    sys.exit(main())
