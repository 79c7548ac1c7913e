"""Pure planning and torrc rendering for the private Tor network (no I/O here).

The network is chutney's smallest onion-service shape built from the distro tor: directory
authorities (which are also relays), plain relays, one onion-service node (for ephemeral onion
services made over its control port) and one client with a SOCKS port. Every torrc names only our
own `DirAuthority` lines, so no tor we start can ever learn about, or contact, the public Tor
network; :func:`check_private_torrc` enforces that before any tor is started.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# Options every node gets (chutney's templates, trimmed to what this shape needs).
_COMMON = [
    "TestingTorNetwork 1",
    "UseDefaultFallbackDirs 0",
    "RunAsDaemon 1",
    "ShutdownWaitLength 0",
    "SafeLogging 0",
    "ProtocolWarnings 1",
    "AssumeReachable 1",
    "PathsNeededToBuildCircuits 0.25",
    "V3AuthNIntervalsValid 2",
    "ClientUseIPv6 0",
    "CookieAuthentication 1",
    # Onion-only network: no relay exits anywhere, so even a client asked for a public
    # address has nowhere to leave from.
    "ExitRelay 0",
    "ExitPolicy reject *:*",
]

_AUTHORITY = [
    "AuthoritativeDirectory 1",
    "V3AuthoritativeDirectory 1",
    "TestingV3AuthInitialVotingInterval 5",
    "V3AuthVotingInterval 10",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
    "TestingDirAuthVoteGuard *",
    "TestingDirAuthVoteHSDir *",
]

# Options a tor that *joins* the network (the test hosts' tor@default) needs besides the
# DirAuthority lines. Kept minimal: the deploy adds them verbatim from inventory data.
_JOIN = [
    "TestingTorNetwork 1",
    "UseDefaultFallbackDirs 0",
    "PathsNeededToBuildCircuits 0.25",
    "ClientUseIPv6 0",
]


@dataclass(frozen=True)
class Node:
    """One tor process of the network."""

    nick: str
    role: str  # "authority" | "relay" | "hs" | "client"
    control_port: int
    or_port: int | None = None
    dir_port: int | None = None
    socks_port: int | None = None


@dataclass(frozen=True)
class NetworkPlan:
    """Where every node listens. `address` carries ORPorts/DirPorts (127.0.0.1 or the testbed
    bridge's machine-side address so the test hosts can join); control and SOCKS ports are
    always on 127.0.0.1."""

    name: str
    address: str
    port_base: int
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    @property
    def authorities(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == "authority")

    def node(self, nick: str) -> Node:
        for n in self.nodes:
            if n.nick == nick:
                return n
        raise KeyError(nick)

    @property
    def client(self) -> Node:
        return self.node("client")

    @property
    def hs(self) -> Node:
        return self.node("hs")


class TorNetConfigError(ValueError):
    """A network plan or a torrc that must not be used."""


def plan_network(
    name: str = "default",
    address: str = "127.0.0.1",
    port_base: int = 5100,
    authorities: int = 3,
    relays: int = 3,
) -> NetworkPlan:
    """Assign nicknames and ports: node i gets ORPort base+i, DirPort base+100+i, ControlPort
    base+200+i; the client's SOCKS port is base+300."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
        raise TorNetConfigError(f"network name {name!r}: use 1-40 letters, digits, '-' or '_'")
    addr = ipaddress.ip_address(address)
    if addr.version != 4 or addr.is_unspecified or not (addr.is_loopback or addr.is_private):
        raise TorNetConfigError(
            f"address {address}: the private Tor network binds only on 127.0.0.1 or a private "
            "IPv4 address of our own test bridge (e.g. 10.213.7.1)"
        )
    if authorities < 3:
        raise TorNetConfigError("at least 3 directory authorities are needed for a consensus")
    if not 1024 <= port_base <= 65535 - 310:
        raise TorNetConfigError(f"port base {port_base}: choose 1024..{65535 - 310}")
    nodes: list[Node] = []
    i = 0
    for k in range(authorities):
        nodes.append(Node(f"auth{k}", "authority", port_base + 200 + i, port_base + i, port_base + 100 + i))
        i += 1
    for k in range(relays):
        nodes.append(Node(f"relay{k}", "relay", port_base + 200 + i, port_base + i, port_base + 100 + i))
        i += 1
    nodes.append(Node("hs", "hs", port_base + 200 + i))
    i += 1
    nodes.append(Node("client", "client", port_base + 200 + i, socks_port=port_base + 300))
    return NetworkPlan(name=name, address=address, port_base=port_base, nodes=tuple(nodes))


def dirauthority_line(nick: str, address: str, or_port: int, dir_port: int, v3ident: str, fingerprint: str) -> str:
    """One `DirAuthority` line as tor expects it (v3ident = authority certificate fingerprint,
    the last field = the authority's relay identity fingerprint)."""
    for label, value in (("v3ident", v3ident), ("fingerprint", fingerprint)):
        if not re.fullmatch(r"[0-9A-F]{40}", value):
            raise TorNetConfigError(f"{nick}: {label} {value!r} is not 40 upper-case hex digits")
    return f"DirAuthority {nick} orport={or_port} no-v2 v3ident={v3ident} {address}:{dir_port} {fingerprint}"


def render_torrc(plan: NetworkPlan, node: Node, data_dir: str, dirauthorities: list[str]) -> str:
    """The complete torrc for one node of `plan`."""
    lines = [f"# smpfleet private Tor network {plan.name!r}, node {node.nick} ({node.role})"]
    lines += _COMMON
    lines += [
        f"Nickname {node.nick}",
        f"DataDirectory {data_dir}",
        f"PidFile {data_dir}/tor.pid",
        f"Log notice file {data_dir}/notice.log",
        f"ControlPort 127.0.0.1:{node.control_port}",
        f"SocksPort {'127.0.0.1:%d' % node.socks_port if node.socks_port else 0}",
    ]
    if node.or_port is not None:
        lines += [
            f"Address {plan.address}",
            f"ORPort {plan.address}:{node.or_port}",
            f"DirPort {plan.address}:{node.dir_port}",
            f"ContactInfo smpfleet-tornet-{plan.name}",
        ]
    if node.role == "authority":
        lines += _AUTHORITY
    lines += dirauthorities
    return "\n".join(lines) + "\n"


def joining_torrc_lines(dirauthorities: list[str]) -> list[str]:
    """The torrc lines a tor elsewhere (a test host's tor@default) needs to join the network
    instead of the public one: ours DirAuthority lines plus the testing switches."""
    if not dirauthorities:
        raise TorNetConfigError("no DirAuthority lines: the network has not been generated")
    return _JOIN + list(dirauthorities)


_ADDR_OPTS = {"orport", "dirport", "socksport", "controlport", "address", "dirauthority"}


def _addresses_in(option: str, value: str) -> list[str]:
    """Host parts named by an address-bearing option value (ports alone name none)."""
    if option == "dirauthority":
        hostport = [t for t in value.split() if re.fullmatch(r"[^=\s]+:\d+", t)]
        return [t.rsplit(":", 1)[0] for t in hostport]
    first = value.split()[0] if value.split() else ""
    if option == "address":
        return [first]
    if re.fullmatch(r"\d+|auto|0", first):
        return []
    if first.startswith("unix:"):
        return []
    return [first.rsplit(":", 1)[0]]


def check_private_torrc(text: str, allowed_addresses: set[str]) -> list[str]:
    """Problems that would let this torrc reach beyond our own network (empty list = safe).

    Safe means: TestingTorNetwork 1, at least one DirAuthority line and all of them on our
    addresses, no default fallbacks, no other directory or bridge sources, and every listening
    or advertised address one of ours."""
    problems: list[str] = []
    opts: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        opts.append((key.lower(), value.strip()))
    values = {}
    for k, v in opts:
        values.setdefault(k, []).append(v)
    if values.get("testingtornetwork") != ["1"]:
        problems.append("TestingTorNetwork 1 is missing")
    if values.get("usedefaultfallbackdirs") != ["0"]:
        problems.append("UseDefaultFallbackDirs 0 is missing")
    if not values.get("dirauthority"):
        problems.append("no DirAuthority line: tor would use the public directory authorities")
    for banned in ("fallbackdir", "alternatedirauthority", "alternatebridgeauthority", "bridge", "usebridges"):
        if banned in values:
            problems.append(f"{banned} must not be set in a private network torrc")
    for k, v in opts:
        if k in _ADDR_OPTS:
            for host in _addresses_in(k, v):
                if host not in allowed_addresses:
                    problems.append(f"{k} {v}: address {host} is not one of ours ({', '.join(sorted(allowed_addresses))})")
    if "orport" in values and (values.get("exitrelay") != ["0"] or values.get("exitpolicy") != ["reject *:*"]):
        problems.append("a relay of the private network must have ExitRelay 0 and ExitPolicy reject *:*")
    return problems
