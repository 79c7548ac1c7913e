"""Runs on a relay host (root, the relay venv's python): make tor serve the relay's onion service.

Talks to tor through stem over the control socket with cookie authentication: checks that the
onion service for the relay ports is configured (creates it with stem if tor lacks it, e.g.
after someone edited the torrc by hand), then reads the hostname tor derived from its key and
compares it with the one the key store expects. Prints one JSON line; exit 0 only on a match.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import stem
import stem.connection  # AuthenticationFailure; not imported by stem.control
from stem.control import Controller


def connect(socket_path: str, deadline: float) -> Controller:
    # systemd reports tor ready before the control socket exists: retry for a while.
    while True:
        try:
            ctl = Controller.from_socket_file(socket_path)
            ctl.authenticate()
            return ctl
        except (stem.SocketError, stem.connection.AuthenticationFailure) as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"onion: cannot reach tor's control socket {socket_path}: {e}")
            time.sleep(0.3)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--socket", default="/run/tor/control")
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, action="append", required=True)
    p.add_argument("--expect", required=True, help="the .onion hostname the key store holds")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    deadline = time.monotonic() + a.timeout
    hs_dir = a.dir.rstrip("/")
    with connect(a.socket, deadline) as ctl:
        conf = {k.rstrip("/"): v for k, v in ctl.get_hidden_service_conf().items()}
        have = {int(port) for port, _addr, _tport in conf.get(hs_dir, {}).get("HiddenServicePort", [])}
        created = []
        for port in a.port:
            if port not in have:
                ctl.create_hidden_service(hs_dir, port, target_address="127.0.0.1", target_port=port)
                created.append(port)
        hostname_file = Path(hs_dir) / "hostname"
        while not hostname_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"onion: tor wrote no {hostname_file}")
            time.sleep(0.2)
        hostname = hostname_file.read_text().strip()
        result = {"hostname": hostname, "created_ports": created,
                  "bootstrap": ctl.get_info("status/bootstrap-phase", "")}
    print(json.dumps(result))
    if hostname != a.expect:
        print(f"onion: tor serves {hostname} but the key store holds {a.expect}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
