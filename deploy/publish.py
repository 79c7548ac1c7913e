"""Publish the fleet's addresses: servers.json, addresses.txt, one QR code per server, a table.

Addresses are composed here (fingerprint, password, hosts, port), never scraped from a server
log: upstream prints ``:5223,443`` for multi-port relays, which is not a valid address.
Passwords are secrets: the files that hold them are 0600, and the printed table masks them
unless ``SMPFLEET_SHOW_SECRETS=1``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import segno
from pyinfra.api import FunctionCommand, operation
from smprelay import certs, config

SHOW_SECRETS_ENV = "SMPFLEET_SHOW_SECRETS"
DEFAULT_PORT = 5223


@dataclass(frozen=True)
class PublishedServer:
    host: str  # inventory name
    fingerprint: str
    hosts: list[str]  # public first, onion second
    port: int  # the port clients use (5223 is implied in the address)
    password: str | None
    address: str  # smp://fp[:password]@hosts[:port]


def address_port(ports: tuple[int, ...] | list[int]) -> int:
    """Clients default to 5223; otherwise the first listed port."""
    return DEFAULT_PORT if DEFAULT_PORT in ports else ports[0]


def smp_address(fingerprint: str, password: str | None, hosts: list[str], port: int) -> str:
    """``smp://<fp>[:<password>]@<host>[,<host>][:<port>]`` (the relay package's own rule)."""
    return config.server_address(fingerprint, password, list(hosts), [port])


def server_entry(host: str, fingerprint: str, password: str | None, hosts: list[str],
                 ports: tuple[int, ...] | list[int]) -> PublishedServer:
    port = address_port(ports)
    return PublishedServer(host, fingerprint, list(hosts), port, password,
                           smp_address(fingerprint, password, hosts, port))


def mask(address: str, password: str | None) -> str:
    return address.replace(f":{password}@", ":********@") if password else address


def show_secrets() -> bool:
    return os.environ.get(SHOW_SECRETS_ENV) == "1"


def summary_table(servers: list[PublishedServer], reveal: bool | None = None) -> str:
    """A plain-text table; passwords masked unless ``reveal`` (default: the env switch)."""
    reveal = show_secrets() if reveal is None else reveal
    rows = [("host", "fingerprint", "port", "address")]
    for s in servers:
        rows.append((s.host, s.fingerprint, str(s.port), s.address if reveal else mask(s.address, s.password)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if i == 0:
            lines.append("-" * (sum(widths) + 6 + len("address")))
    if not reveal and any(s.password for s in servers):
        lines.append(f"(passwords masked; the files hold them, or set {SHOW_SECRETS_ENV}=1)")
    return "\n".join(lines)


def write_published(directory: Path, servers: list[PublishedServer]) -> list[Path]:
    """Write servers.json, addresses.txt and <host>.png atomically; returns the paths written.

    servers.json marks the password field as secret (``"password": {"secret": ...}``) so
    tools that print it know not to.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    written = []
    doc = {
        "servers": [
            {**{k: v for k, v in asdict(s).items() if k != "password"},
             "password": {"secret": s.password} if s.password else None}
            for s in sorted(servers, key=lambda s: s.host)
        ]
    }
    path = directory / "servers.json"
    certs.write_file_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    written.append(path)
    path = directory / "addresses.txt"
    text = "".join(s.address + "\n" for s in sorted(servers, key=lambda s: s.host))
    certs.write_file_atomic(path, text.encode(), 0o600)
    written.append(path)
    for s in servers:
        path = directory / f"{s.host}.png"
        tmp = directory / f".{s.host}.tmp.png"
        segno.make(s.address, error="m").save(str(tmp), scale=6, border=4)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        written.append(path)
    return written


def read_published(directory: Path) -> list[PublishedServer]:
    doc = json.loads((Path(directory) / "servers.json").read_text())
    out = []
    for e in doc["servers"]:
        pw = e["password"]["secret"] if e.get("password") else None
        out.append(PublishedServer(e["host"], e["fingerprint"], e["hosts"], e["port"], pw, e["address"]))
    return out


# -- pyinfra side: one entry per host, written when the deploy executes ---------------------


def merged_servers(directory: Path, entry: PublishedServer, fleet: set[str]) -> list[PublishedServer]:
    """The published servers after updating ``entry`` and dropping hosts no longer in the fleet."""
    try:
        current = read_published(directory)
    except (OSError, ValueError, KeyError):
        current = []
    kept = [s for s in current if s.host in fleet and s.host != entry.host]
    return sorted([*kept, entry], key=lambda s: s.host)


def publish_is_current(directory: Path, entry: PublishedServer, fleet: set[str]) -> bool:
    try:
        current = read_published(directory)
    except (OSError, ValueError, KeyError):
        return False
    mine = [s for s in current if s.host == entry.host]
    stale = [s for s in current if s.host not in fleet]
    addresses = (Path(directory) / "addresses.txt")
    return (
        mine == [entry]
        and not stale
        and (Path(directory) / f"{entry.host}.png").exists()
        and addresses.exists()
        and entry.address in addresses.read_text().splitlines()
    )


def update_published(directory: Path, entry: PublishedServer, fleet: set[str]) -> None:
    write_published(directory, merged_servers(directory, entry, fleet))


@operation(is_idempotent=True)
def published(directory: Path, entry: PublishedServer, fleet: frozenset[str]):
    """Record the host's address in the fleet files; a change only when the entry differs."""
    if not publish_is_current(directory, entry, set(fleet)):
        yield FunctionCommand(update_published, (directory, entry, set(fleet)), {})
