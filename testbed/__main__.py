"""python -m smpfleet_testbed image|repo|up N|down|status [--name NAME] [--subnet-index K]"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import fleet, image, packages
from .errors import TestbedError
from .system import check_root, check_tools


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smpfleet_testbed",
                                description="Local Debian test hosts (systemd + sshd) under systemd-nspawn.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=os.environ.get("SMPFLEET_TESTBED", "tb"),
                        help="instance name (env SMPFLEET_TESTBED, default tb): selects state dir, links, subnet")
    common.add_argument("--subnet-index", type=int, default=None,
                        help="use 10.213.K.0/24 (default: derived from the name)")
    sub = p.add_subparsers(dest="command", required=True)
    img = sub.add_parser("image", help="build the cached Debian bookworm root filesystem")
    img.add_argument("--rebuild", action="store_true")
    repo = sub.add_parser("repo", help="build the local apt repository (tor) and the pip wheelhouse")
    repo.add_argument("--rebuild", action="store_true")
    u = sub.add_parser("up", parents=[common], help="bring up N hosts (default 3)")
    u.add_argument("count", nargs="?", type=int, default=3)
    sub.add_parser("down", parents=[common], help="stop the hosts and remove everything the instance made")
    st = sub.add_parser("status", parents=[common], help="show hosts and leftovers")
    st.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tornet"]:  # private Tor network: smpfleet_testbed.tornet (up|down|status|torrc-lines)
        from .tornet import main as tornet_main

        return tornet_main(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.command == "image":
            check_root()
            check_tools(["debootstrap"])
            t = time.monotonic()
            print(f"image: {image.build_image(rebuild=args.rebuild)} ({time.monotonic() - t:.1f} s)")
        elif args.command == "repo":
            check_root()
            check_tools(["apt-get", "apt-cache", "dpkg-scanpackages"])
            print(f"repo: {packages.build_apt_repo(rebuild=args.rebuild)}")
            print(f"repo: {packages.build_wheelhouse(rebuild=args.rebuild)}")
        elif args.command == "up":
            f = fleet.up(fleet.resolve(args.name, args.subnet_index), args.count)
            for h in f.hosts:
                print(f"{h['name']}\t{h['address']}")
            print(f"ssh_config\t{f.ssh_config}\npyinfra\t{f.pyinfra_inventory}\nansible\t{f.ansible_inventory}")
        elif args.command == "down":
            fleet.down(fleet.resolve(args.name, args.subnet_index))
        elif args.command == "status":
            check_root()
            info = fleet.status(fleet.resolve(args.name, args.subnet_index))
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print(f"testbed {info['name']}: subnet {info['subnet']}, bridge {info['bridge_address']}")
                for h in info.get("hosts", []):
                    print(f"  {h['name']}\t{h['address']}\t{'running' if h['running'] else 'stopped'}")
                for kind, items in info["leftovers"].items():
                    print(f"  {kind}: {' '.join(items)}")
    except TestbedError as e:
        print(f"smpfleet_testbed: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
