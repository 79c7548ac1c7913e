"""The instance's private network: a bridge with the machine's address, one network namespace
and veth pair per host, and a blackhole route that guards the subnet.

The addresses exist only on this bridge and in these namespaces; the hosts get no default route
and forwarding stays off, so a host can reach the other hosts and the bridge address, nothing else.
Teardown finds resources by their instance-specific names, so it also cleans up after a crash.
"""
from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

from .errors import TestbedError
from .instance import Instance
from .system import mount_points, run

BLACKHOLE_METRIC = 1000  # above the bridge's connected route: it only applies when the bridge is gone
NETNS_DIR = Path("/run/netns")


def forwarding_enabled() -> bool:
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "0"


def blackhole_cmd(inst: Instance, action: str) -> list[str]:
    return ["ip", "route", action, "blackhole", str(inst.subnet), "metric", str(BLACKHOLE_METRIC)]


def check_subnet_free(inst: Instance) -> None:
    """Refuse a subnet that some other interface or route already uses (another instance, a VPN)."""
    routes = json.loads(run(["ip", "-j", "route", "show", "table", "main"]).stdout or "[]")
    for r in routes:
        if r.get("dst", "default") == "default" or r.get("dev") == inst.bridge:
            continue
        if r.get("type") == "blackhole" and r["dst"] == str(inst.subnet):
            continue  # our own guard, left by a crashed run (other instances' are refused by name)
        if ipaddress.ip_network(r["dst"], strict=False).overlaps(inst.subnet):
            raise TestbedError(
                f"subnet {inst.subnet} of testbed {inst.name!r} is already routed ({r['dst']} dev "
                f"{r.get('dev', r.get('type', '?'))}): another testbed instance or interface uses it; "
                "pick a free one with --subnet-index N (10.213.N.0/24, N in 0..255)"
            )


def create(inst: Instance, count: int) -> None:
    """Make the bridge, the guard route and every host's namespace with its veth and address."""
    if forwarding_enabled():
        raise TestbedError(
            "net.ipv4.ip_forward is 1 on this machine: the test hosts could be routed outside. "
            "Turn it off (sysctl -w net.ipv4.ip_forward=0) or run the testbed on another machine"
        )
    check_subnet_free(inst)
    run(blackhole_cmd(inst, "replace"))
    run(["ip", "link", "add", inst.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{inst.bridge_address}/{inst.subnet.prefixlen}", "dev", inst.bridge])
    run(["ip", "link", "set", inst.bridge, "up"])
    for i in range(1, count + 1):
        ns, veth, peer = inst.netns(i), inst.veth(i), inst.veth_peer(i)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", ns])
        run(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
        run(["ip", "-n", ns, "addr", "add", f"{inst.host_address(i)}/{inst.subnet.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "link", "set", veth, "master", inst.bridge, "up"])


def netns_path(inst: Instance, index: int) -> Path:
    return NETNS_DIR / inst.netns(index)


def our_namespaces(inst: Instance) -> list[str]:
    pattern = re.compile(rf"^{re.escape(inst.name)}-h\d+$")
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return sorted(n["name"] for n in json.loads(out or "[]") if pattern.match(n["name"]))


def our_links(inst: Instance) -> list[str]:
    pattern = re.compile(rf"^{re.escape(inst.name)}-(br|h\d+|p\d+)$")
    out = run(["ip", "-j", "link", "show"]).stdout.strip()
    return sorted(l["ifname"] for l in json.loads(out or "[]") if pattern.match(l["ifname"]))


def our_routes(inst: Instance) -> list[str]:
    out = run(["ip", "-j", "route", "show", "table", "all", "root", str(inst.subnet)]).stdout.strip()
    return [f"{r.get('type', 'unicast')} {r['dst']} dev {r.get('dev', '-')}" for r in json.loads(out or "[]")
            if r.get("type") == "blackhole" or r.get("dev") == inst.bridge]


def destroy(inst: Instance, guard_route: bool = True) -> None:
    """Remove every namespace, link and route of this instance (and only this instance); the guard
    route only with guard_route (False when another instance claims the same subnet)."""
    for ns in our_namespaces(inst):
        run(["ip", "netns", "delete", ns])  # takes the inner veth end, and so the pair, with it
    for link in our_links(inst):
        run(["ip", "link", "delete", link], check=False)  # a pair end may vanish with its peer
    while guard_route and run(blackhole_cmd(inst, "delete"), check=False).returncode == 0:
        pass
    left = our_namespaces(inst) + our_links(inst) + (our_routes(inst) if guard_route else [])
    if left:
        raise TestbedError(f"could not remove network resources of testbed {inst.name!r}: {left}")
    release_netns_dir()


def release_netns_dir() -> None:
    """`ip netns add` bind-mounts /run/netns on itself; undo that once no namespace (of anyone)
    is left in it. umount without -l fails while busy, so a concurrent user is never disturbed."""
    if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        if NETNS_DIR in mount_points(NETNS_DIR):
            run(["umount", str(NETNS_DIR)], check=False)
