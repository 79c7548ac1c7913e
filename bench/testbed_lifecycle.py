"""Benchmark: how long the testbed's image build, `up N` and `down` take, and what the hosts cost.

    sudo .venv/bin/python bench/testbed_lifecycle.py [--hosts 3] [--rounds 3] [--image]

--image also times a from-scratch debootstrap into a temporary cache (about a minute, needs the
Debian mirror); without it the shared cache is used (and built first if missing, untimed).
Prints numbers; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def du_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sxm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", action="store_true", help="also time a fresh image build")
    ap.add_argument("--name", default="bench")
    args = ap.parse_args()

    from smpfleet_testbed import fleet, image, packages

    if args.image:
        with tempfile.TemporaryDirectory(prefix="tb-bench-cache-", dir="/var/tmp") as tmp:
            t = time.monotonic()
            built = image.build_image(Path(tmp), log=lambda _: None)
            print(f"image build (debootstrap + template fixes): {time.monotonic() - t:.1f} s, {du_mb(built):.0f} MB")
            t = time.monotonic()
            packages.build_apt_repo(Path(tmp), log=lambda _: None)
            print(f"apt repo (tor + deps): {time.monotonic() - t:.1f} s, {du_mb(Path(tmp) / 'apt'):.0f} MB")
    image.build_image(log=lambda _: None)
    packages.build_apt_repo(log=lambda _: None)
    packages.build_wheelhouse(log=lambda _: None)

    inst = fleet.resolve(args.name, None)
    ups, downs, readies, mem, disk = [], [], [], [], []
    for _ in range(args.rounds):
        before = mem_available_mb()
        t = time.monotonic()
        f = fleet.up(inst, args.hosts, log=lambda _: None)
        ups.append(time.monotonic() - t)
        readies.append(f.timings["ready_wait"])
        mem.append(before - mem_available_mb())
        disk.append(du_mb(inst.state_dir / "hosts"))
        t = time.monotonic()
        fleet.down(inst, log=lambda _: None)
        downs.append(time.monotonic() - t)
    med = statistics.median
    print(f"up {args.hosts} (incl. readiness: ssh + is-system-running --wait + apt-get update): "
          f"median {med(ups):.2f} s, min {min(ups):.2f}, max {max(ups):.2f} over {args.rounds} rounds")
    print(f"  of which waiting for readiness: median {med(readies):.2f} s")
    print(f"down {args.hosts}: median {med(downs):.2f} s, min {min(downs):.2f}, max {max(downs):.2f}")
    print(f"memory used by {args.hosts} booted hosts: median {med(mem):.0f} MB; "
          f"disk (overlay upper dirs): {med(disk):.0f} MB")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("bench/testbed_lifecycle.py needs root (it brings up real test hosts)")
    main()
