"""Benchmark: deploy a fresh 3-host fleet with `pyinfra inventory.py deploy.py`, then re-run it.

Prints: bundle build time, fresh deploy time (relay, tor, onion, checks, publish), no-change
re-run time and the number of changed operations of the re-run. Needs root (the testbed).

    .venv/bin/python bench/deploy_fleet.py [--runs N] [--name depbench]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def changed(output: str) -> int:
    line = next(l for l in output.splitlines() if l.strip().startswith("Grand total"))
    success = line.split()[-3]
    return 0 if success == "-" else int(success)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1, help="fresh fleets to deploy (each on new hosts)")
    ap.add_argument("--name", default="depbench")
    a = ap.parse_args()
    from smpfleet_testbed import fleet

    inst = fleet.resolve(a.name, None)
    fresh, rerun, builds = [], [], []
    try:
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                t = time.monotonic()
                subprocess.run([sys.executable, "-m", "smpfleet.bundle", str(tmp / "bundle")], check=True,
                               capture_output=True)
                builds.append(time.monotonic() - t)
                tb = fleet.up(inst, 3, log=lambda m: None)
                addr = {h["name"]: h["address"] for h in tb.hosts}
                (tmp / "data.py").write_text(
                    f"data = {{'smp_keystore': {str(tmp / 'ks')!r}, 'smp_publish_dir': {str(tmp / 'pub')!r}}}\n"
                    f"host_data = {{'h1': {{'smp_fqdn': {addr['h1']!r}}}, 'h2': {{'smp_onion_only': True}},"
                    f" 'h3': {{'smp_fqdn': {addr['h3']!r}, 'smp_sign_algorithm': 'ED25519',"
                    f" 'smp_password_policy': 'none'}}}}\n")
                env = {**os.environ, "SMPFLEET_TESTBED_DATA": str(tmp / "data.py"),
                       "SMPFLEET_BUNDLE": str(tmp / "bundle")}
                cmd = [str(REPO / ".venv/bin/pyinfra"), "-y", tb.pyinfra_inventory, str(REPO / "deploy.py")]
                for bucket in (fresh, rerun):
                    t = time.monotonic()
                    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
                    bucket.append(time.monotonic() - t)
                    if p.returncode != 0:
                        print(p.stdout[-3000:], p.stderr[-3000:], file=sys.stderr)
                        return 1
                print(f"run: bundle {builds[-1]:.1f} s, fresh 3-host deploy {fresh[-1]:.1f} s, "
                      f"no-change re-run {rerun[-1]:.1f} s ({changed(p.stdout + p.stderr)} changes)")
    finally:
        fleet.down(inst, log=lambda m: None)
    print(f"median over {a.runs}: bundle {statistics.median(builds):.1f} s, fresh {statistics.median(fresh):.1f} s "
          f"(target <= 60), re-run {statistics.median(rerun):.1f} s (target <= 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
