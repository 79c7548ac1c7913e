"""Inventory data -> validated, typed relay settings.

Pure: no I/O. Every host of the inventory is checked before any host is touched, and every
problem is reported at once, naming the host and the inventory key, so an operator fixes a
broken inventory in one pass instead of discovering errors host by host mid-deploy.

Inventory keys (host data, all optional except where said):

==========================  ===============================================================
``smp_fqdn``                public DNS name or IP of the relay; required unless onion-only
``smp_onion``               create a Tor onion service for the relay (default ``True``)
``smp_onion_only``          no public hostname: anonymous onion service only (default False)
``smp_password_policy``     ``random`` (default; generated once, kept in the key store),
                            ``none`` (anyone may create queues) or ``fixed``
``smp_password``            the password when the policy is ``fixed``
``smp_sign_algorithm``      ``ED448`` (default) or ``ED25519``: CA and online key algorithm
``smp_ports``               relay TLS ports (default ``[5223, 443]``)
``smp_control_port``        loopback control port (default: none)
``smp_store_log``           keep the queue store log (default ``True``)
``smp_daily_stats``         write the daily statistics CSV (default ``False``)
``smp_tor_extra_config``    extra torrc lines (e.g. a private network's DirAuthority lines)
``smp_keystore``            operator-side key store directory (default: ``keystore/`` next to
                            the inventory)
``smp_publish_dir``         where addresses are published (default: ``published/`` next to
                            the inventory)
==========================  ===============================================================
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smprelay import config

ALGORITHMS = ("ED448", "ED25519")
PASSWORD_POLICIES = ("random", "none", "fixed")
DEFAULT_PORTS = (5223, 443)
# A server password is carried inside the address: printable ASCII, no whitespace, and none
# of the address delimiters '@', ':' and '/' (upstream Init.hs comment, basicAuth validator).
_PASSWORD_RE = re.compile(r"^[!-~]+$")
_PASSWORD_FORBIDDEN = set("@:/")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_HOST_KEYS = {
    "smp_fqdn", "smp_onion", "smp_onion_only", "smp_password_policy", "smp_password",
    "smp_sign_algorithm", "smp_ports", "smp_control_port", "smp_store_log", "smp_daily_stats",
    "smp_tor_extra_config", "smp_keystore", "smp_publish_dir",
}


class InventoryError(ValueError):
    """One or more inventory problems; ``problems`` lists them as (host, key, message)."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        lines = [f"  host {h!r}, key {k!r}: {m}" for h, k, m in problems]
        super().__init__(
            f"invalid inventory ({len(problems)} problem{'s' if len(problems) != 1 else ''}); "
            "no host was touched:\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class RelaySettings:
    """Everything the deploy needs to know about one relay host."""

    name: str  # inventory host name
    fqdn: str | None  # public hostname or IP; None for onion-only relays
    onion: bool
    onion_only: bool
    password_policy: str
    password: str | None  # only for the "fixed" policy; random ones live in the key store
    sign_algorithm: str
    ports: tuple[int, ...]
    control_port: int | None
    store_log: bool
    daily_stats: bool
    tor_extra_config: tuple[str, ...] = field(default_factory=tuple)
    keystore: Path | None = None
    publish_dir: Path | None = None

    @property
    def single_hop(self) -> bool:
        """Public+onion relays use single-hop onion services: their IP is public anyway, and
        single-hop saves three hops of latency. Onion-only relays stay anonymous."""
        return self.onion and not self.onion_only

    @property
    def cert_cn(self) -> str:
        """CN of the online certificate (upstream uses the FQDN or IP; clients do not check it)."""
        return self.fqdn or "127.0.0.1"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _fqdn_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty hostname or IP address string"
    if _is_ip(value):
        return None
    name = value[:-1] if value.endswith(".") else value
    if name.endswith(".onion"):
        return "must be the public hostname; the onion hostname is created by the deploy"
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in name.split(".")):
        return f"{value!r} is neither an IP address nor a valid DNS name"
    return None


def password_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a server password in an ``smp://`` address, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if not config.valid_password(value):
        bad = sorted({c for c in value if c in _PASSWORD_FORBIDDEN or not _PASSWORD_RE.match(c)})
        shown = ", ".join(repr(c) for c in bad)
        return (
            f"contains characters an smp:// address cannot carry ({shown}); use printable "
            "ASCII without spaces, '@', ':' or '/'"
        )
    return None


def _bool(data: Mapping[str, Any], key: str, default: bool, err: list[str]) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        err.append(f"{key}\0must be true or false, got {value!r}")
        return default
    return value


def _port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def parse_host(name: str, data: Mapping[str, Any], base_dir: Path | None = None) -> tuple[
    RelaySettings | None, list[tuple[str, str, str]]
]:
    """Validate one host's data; returns (settings or None, problems)."""
    err: list[str] = []  # "key\0message"
    unknown = sorted(k for k in data if k.startswith("smp_") and k not in _HOST_KEYS)
    for key in unknown:
        err.append(f"{key}\0unknown setting; known: {', '.join(sorted(_HOST_KEYS))}")

    onion = _bool(data, "smp_onion", True, err)
    onion_only = _bool(data, "smp_onion_only", False, err)
    store_log = _bool(data, "smp_store_log", True, err)
    daily_stats = _bool(data, "smp_daily_stats", False, err)
    if onion_only and not onion:
        err.append("smp_onion\0is false but smp_onion_only is true; an onion-only relay needs "
                   "its onion service (remove smp_onion or set it to true)")

    fqdn = data.get("smp_fqdn")
    if onion_only:
        if fqdn is not None:
            err.append("smp_fqdn\0must be absent for an onion-only relay (smp_onion_only: true)")
        fqdn = None
    elif fqdn is None:
        err.append("smp_fqdn\0missing: set the relay's public DNS name or IP address "
                   "(or smp_onion_only: true)")
    elif (problem := _fqdn_problem(fqdn)) is not None:
        err.append(f"smp_fqdn\0{problem}")

    policy = data.get("smp_password_policy", "random")
    password = data.get("smp_password")
    if policy not in PASSWORD_POLICIES:
        err.append(f"smp_password_policy\0{policy!r} is not one of {', '.join(PASSWORD_POLICIES)}")
    elif policy == "fixed":
        if password is None:
            err.append("smp_password\0missing: the policy is 'fixed', so give the password")
        elif (problem := password_problem(password)) is not None:
            err.append(f"smp_password\0{problem}")
    elif password is not None:
        err.append(f"smp_password\0is set but smp_password_policy is {policy!r}; "
                   "set smp_password_policy: fixed to use it")
        password = None

    alg = data.get("smp_sign_algorithm", "ED448")
    if isinstance(alg, str) and alg.upper() in ALGORITHMS:
        alg = alg.upper()
    else:
        err.append(f"smp_sign_algorithm\0{alg!r} is not a known algorithm; use "
                   f"{' or '.join(ALGORITHMS)}")

    ports_raw = data.get("smp_ports", DEFAULT_PORTS)
    ports: tuple[int, ...] = ()
    if isinstance(ports_raw, int) and not isinstance(ports_raw, bool):
        ports_raw = [ports_raw]
    if not isinstance(ports_raw, Sequence) or isinstance(ports_raw, str) or not ports_raw:
        err.append(f"smp_ports\0must be a non-empty list of port numbers, got {ports_raw!r}")
    else:
        bad = [p for p in ports_raw if not _port(p)]
        if bad:
            err.append(f"smp_ports\0{bad!r}: ports must be integers 1..65535")
        else:
            ports = tuple(ports_raw)
            dups = sorted({p for p in ports if ports.count(p) > 1})
            if dups:
                err.append(f"smp_ports\0port clash: {dups} listed more than once")

    control_port = data.get("smp_control_port")
    if control_port is not None:
        if not _port(control_port):
            err.append(f"smp_control_port\0{control_port!r}: must be an integer 1..65535")
        elif control_port in ports:
            err.append(f"smp_control_port\0port clash: {control_port} is also a relay port "
                       "in smp_ports")

    extra = data.get("smp_tor_extra_config", ())
    if isinstance(extra, str):
        extra = extra.splitlines()
    if not isinstance(extra, Sequence) or not all(isinstance(x, str) for x in extra):
        err.append("smp_tor_extra_config\0must be a list of torrc lines (strings)")
        extra = ()
    else:
        extra = tuple(line.strip() for line in extra if line.strip())
        if extra and not onion:
            err.append("smp_tor_extra_config\0is set but smp_onion is false (no tor on this host)")

    def _dir(key: str, default_name: str) -> Path | None:
        value = data.get(key)
        if value is None:
            return (base_dir / default_name) if base_dir is not None else None
        if not isinstance(value, str | Path) or not str(value):
            err.append(f"{key}\0must be a directory path")
            return None
        path = Path(value)
        return path if path.is_absolute() or base_dir is None else base_dir / path

    keystore = _dir("smp_keystore", "keystore")
    publish_dir = _dir("smp_publish_dir", "published")

    problems = [(name, *e.split("\0", 1)) for e in err]
    if problems:
        return None, problems  # type: ignore[return-value]
    return RelaySettings(
        name=name, fqdn=fqdn, onion=onion, onion_only=onion_only, password_policy=policy,
        password=password if policy == "fixed" else None, sign_algorithm=alg, ports=ports,
        control_port=control_port, store_log=store_log, daily_stats=daily_stats,
        tor_extra_config=extra, keystore=keystore, publish_dir=publish_dir,
    ), []


def parse_fleet(
    hosts: Mapping[str, Mapping[str, Any]], base_dir: Path | None = None
) -> dict[str, RelaySettings]:
    """Validate every host, then the fleet as a whole; raise InventoryError listing all problems."""
    problems: list[tuple[str, str, str]] = []
    fleet: dict[str, RelaySettings] = {}
    if not hosts:
        raise InventoryError([("(inventory)", "hosts", "the inventory has no hosts")])
    for name, data in hosts.items():
        settings, host_problems = parse_host(name, data, base_dir)
        problems += host_problems
        if settings is not None:
            fleet[name] = settings
    seen: dict[str, str] = {}
    for name, s in fleet.items():
        if s.fqdn is None:
            continue
        key = s.fqdn.lower().rstrip(".")
        if key in seen:
            problems.append((name, "smp_fqdn", f"{s.fqdn!r} is already used by host {seen[key]!r}"))
        else:
            seen[key] = name
    if problems:
        raise InventoryError(problems)
    return fleet
