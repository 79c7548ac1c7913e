"""``smp-server.ini``: the upstream file, read and written (reference §2 and Appendix A).

Reading follows the upstream ``ini`` package rules: ``[SECTION]``, ``key = value`` or
``key: value``, whole-line ``#``/``;`` comments, no inline comments, case-sensitive keys.
Every value is validated when the file is read, so a typo fails at ``start`` with the file,
section, key and what is allowed, instead of surprising a client later. Keys this relay does
not know are reported as warnings (an operator may carry keys from a newer upstream).

Writing renders the text upstream ``init`` writes, so an operator who knows upstream finds the
same file. Everything here is pure except :func:`load` (reads one file).
"""

from __future__ import annotations

import configparser
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

DEFAULT_PORT = 5223
HOSTNAMES_PLACEHOLDER = "<hostnames>"  # upstream writes this when no FQDN/IP was given
NO_PASSWORD_COMMENT = (
    "# create_password = password to create new queues and forward messages "
    "(any printable ASCII characters without whitespace, '@', ':' and '/')"
)
DEFAULT_SOURCE_CODE = "https://github.com/simplex-chat/simplexmq"


class ConfigError(Exception):
    """An invalid INI value: names the file, section and key, and says what is allowed."""

    def __init__(self, path: str, section: str | None, key: str | None, problem: str):
        self.path, self.section, self.key, self.problem = path, section, key, problem
        where = path
        if section:
            where += f": [{section}]"
        if key:
            where += f" {key}"
        super().__init__(f"{where}: {problem}")


# -- value parsers (each raises ValueError with "what is allowed") ----------------------------


def on_off(v: str) -> bool:
    if v == "on":
        return True
    if v == "off":
        return False
    raise ValueError(f"invalid value {v!r}: allowed values are `on` and `off`")


def nat(v: str) -> int:
    if not re.fullmatch(r"[0-9]+", v):
        raise ValueError(f"invalid value {v!r}: allowed is a non-negative whole number")
    return int(v)


def integer(v: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", v):
        raise ValueError(f"invalid value {v!r}: allowed is a whole number")
    return int(v)


def port_number(v: str) -> int:
    if not re.fullmatch(r"[0-9]+", v) or not 1 <= int(v) <= 65535:
        raise ValueError(f"invalid port {v!r}: allowed is a number from 1 to 65535")
    return int(v)


def port_list(v: str) -> list[int]:
    """Comma-separated TLS ports, no spaces (upstream splits on ',' only)."""
    if not v:
        raise ValueError("no port given: allowed is a comma-separated list of ports, e.g. `5223,443`")
    ports = [port_number(p) for p in v.split(",")]
    if len(set(ports)) != len(ports):
        raise ValueError(f"port listed twice in {v!r}: list each port once")
    return ports


def one_of(*allowed: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in allowed:
            raise ValueError(f"invalid value {v!r}: allowed values are " + ", ".join(f"`{a}`" for a in allowed))
        return v

    return parse


def supported(name: str, *allowed: str, unsupported: tuple[str, ...] = ()) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v in unsupported:
            raise ValueError(
                f"`{v}` is not supported by this relay: allowed is " + ", ".join(f"`{a}`" for a in allowed)
            )
        return one_of(*allowed)(v)

    return parse


_BASIC_AUTH_BAD = set("@:/")


def valid_password(v: str) -> bool:
    """Upstream ``basicAuth``: 1+ printable ASCII characters, no whitespace, '@', ':' or '/'."""
    return bool(v) and all(33 <= ord(c) <= 126 and c not in _BASIC_AUTH_BAD for c in v)


def password(v: str) -> str:
    if not valid_password(v):
        raise ValueError(
            "invalid password: allowed are printable ASCII characters without whitespace, '@', ':' and '/'"
        )
    return v


def host_list(v: str) -> list[str]:
    """Comma-separated hostnames (public and onion), printed verbatim in the address."""
    hosts = v.split(",")
    for h in hosts:
        if not h or re.search(r"[\s:#;/@]", h) and not _is_ipv6(h):
            raise ValueError(
                f"invalid host {h!r} in {v!r}: allowed is a comma-separated list of domain names, "
                "IP addresses and .onion addresses, without spaces or ports"
            )
    return hosts


def _is_ipv6(h: str) -> bool:
    try:
        ipaddress.IPv6Address(h.strip("[]"))
        return True
    except ValueError:
        return False


def country(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", v):
        raise ValueError(f"invalid value {v!r}: use ISO3166 2-letter code")
    return v.upper()


def uri(v: str) -> str:
    if not (v.startswith("http://") or v.startswith("https://")):
        raise ValueError(f"invalid value {v!r}: URI should start from http:// or https://")
    return v


def socks_proxy(v: str) -> str:
    """``IPv4[:port]`` or ``IPv6[:port]`` (upstream rejects hostnames)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]+))?|([0-9.]+)(?::([0-9]+))?|([0-9A-Fa-f:]+)", v)
    try:
        if not m:
            raise ValueError
        if m.group(1):
            ipaddress.IPv6Address(m.group(1))
        elif m.group(3):
            ipaddress.IPv4Address(m.group(3))
        else:
            ipaddress.IPv6Address(m.group(5))
        p = m.group(2) or m.group(4)
        if p:
            port_number(p)
    except ValueError:
        raise ValueError(
            f"invalid value {v!r}: allowed is an IP address with optional port, e.g. `127.0.0.1:9050` "
            "(host names are not accepted)"
        ) from None
    return v


def websockets(v: str) -> str:
    if v in ("on", "off"):
        return v
    try:
        port_list(v)
    except ValueError:
        raise ValueError(f"invalid value {v!r}: allowed values are `off`, `on` or a list of ports") from None
    return v


def text(v: str) -> str:
    return v


# -- the keys this relay knows (reference §2.2) ---------------------------------------------

KEYS: dict[str, dict[str, Callable[[str], Any]]] = {
    "INFORMATION": {
        "source_code": uri,
        "usage_conditions": text,
        "condition_amendments": text,
        "server_country": country,
        "operator": text,
        "operator_country": country,
        "website": text,
        "admin_simplex": text,
        "admin_email": text,
        "admin_pgp": text,
        "admin_pgp_fingerprint": text,
        "complaints_simplex": text,
        "complaints_email": text,
        "complaints_pgp": text,
        "complaints_pgp_fingerprint": text,
        "hosting": text,
        "hosting_country": country,
        "hosting_type": one_of("virtual", "dedicated", "colocation", "owned"),
    },
    "STORE_LOG": {
        "enable": on_off,
        "store_queues": supported("store_queues", "memory", unsupported=("database",)),
        "store_messages": supported("store_messages", "memory", unsupported=("journal", "database")),
        "restore_messages": on_off,
        "expire_messages_days": nat,
        "expire_messages_on_start": on_off,
        "expire_messages_on_send": on_off,
        "expire_ntfs_hours": nat,
        "log_stats": on_off,
        "prometheus_interval": nat,
        "db_connection": text,
        "db_schema": text,
        "db_pool_size": nat,
        "db_store_log": on_off,
        "db_deleted_ttl": nat,
    },
    "AUTH": {
        "new_queues": on_off,
        "create_password": password,
        "control_port_admin_password": password,
        "control_port_user_password": password,
        "daily_block_queue_quota": integer,
    },
    "TRANSPORT": {
        "host": host_list,
        "port": port_list,
        "log_tls_errors": on_off,
        "websockets": websockets,
        "control_port": port_number,
        "accept_service_credentials": on_off,
    },
    "PROXY": {
        "socks_proxy": socks_proxy,
        "socks_mode": one_of("onion", "always"),
        "host_mode": one_of("public", "onion"),
        "required_host_mode": on_off,
        "own_server_domains": text,
        "client_concurrency": nat,
    },
    "INACTIVE_CLIENTS": {"disconnect": on_off, "ttl": nat, "check_interval": nat},
    "WEB": {"static_path": text, "http": port_number, "https": port_number, "cert": text, "key": text},
}

REQUIRED = [("TRANSPORT", "port"), ("TRANSPORT", "websockets")]


# -- the parsed file ----------------------------------------------------------------------------


@dataclass
class StoreLogSettings:
    enable: bool = False
    store_queues: str = "memory"
    store_messages: str = "memory"
    restore_messages: bool | None = None  # None: follows `enable`
    expire_messages_days: int = 21
    expire_messages_on_start: bool = True
    expire_messages_on_send: bool = True  # upstream default when absent (init writes off)
    expire_ntfs_hours: int = 24
    log_stats: bool = False
    prometheus_interval: int | None = None

    @property
    def restore(self) -> bool:
        return self.enable if self.restore_messages is None else self.restore_messages


@dataclass
class AuthSettings:
    new_queues: bool = True
    create_password: str | None = None
    control_port_admin_password: str | None = None
    control_port_user_password: str | None = None
    daily_block_queue_quota: int = 20


@dataclass
class TransportSettings:
    port: list[int]
    websockets: str
    host: list[str] | None = None  # None: printed as <hostnames>
    port_text: str = ""  # the raw value, for the upstream-style listing
    log_tls_errors: bool = False
    control_port: int | None = None
    accept_service_credentials: bool = True


@dataclass
class ProxySettings:
    socks_proxy: str | None = None
    socks_mode: str = "onion"
    host_mode: str = "public"
    required_host_mode: bool = False
    own_server_domains: list[str] = field(default_factory=list)
    client_concurrency: int = 32


@dataclass
class InactiveClientsSettings:
    disconnect: bool = False
    ttl: int | None = None
    check_interval: int | None = None


@dataclass
class WebSettings:
    static_path: str | None = None
    http: int | None = None
    https: int | None = None
    cert: str | None = None
    key: str | None = None


@dataclass
class ServerConfig:
    """Everything ``start`` reads from ``smp-server.ini``."""

    transport: TransportSettings
    store_log: StoreLogSettings = field(default_factory=StoreLogSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)
    inactive_clients: InactiveClientsSettings = field(default_factory=InactiveClientsSettings)
    web: WebSettings = field(default_factory=WebSettings)
    information: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _reader() -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(
        delimiters=("=", ":"),
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        strict=True,
        empty_lines_in_values=False,
        interpolation=None,
        default_section="\0no default section",
    )
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    return cp


def parse(text_: str, path: str = "smp-server.ini") -> ServerConfig:
    """Parse and validate the INI text; raise :class:`ConfigError` naming file, section and key."""
    cp = _reader()
    try:
        cp.read_string(text_, source=path)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(path, None, None, f"line {e.lineno}: a key before any [SECTION] header: {e.line.strip()!r}") from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(path, e.section, None, f"line {e.lineno}: section appears twice; merge the two") from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(path, e.section, e.option, f"line {e.lineno}: key appears twice in the section; keep one") from None
    except configparser.ParsingError as e:
        lines = ", ".join(f"line {ln}: {ln_text.strip()!r}" for ln, ln_text in e.errors)
        raise ConfigError(path, None, None, f"cannot parse {lines}: expected `[SECTION]` or `key = value`") from None

    values: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for section in cp.sections():
        known = KEYS.get(section)
        if known is None:
            warnings.append(f"{path}: unknown section [{section}] is ignored")
            continue
        for key, raw in cp.items(section):
            raw = raw.strip() if raw is not None else ""
            parser = known.get(key)
            if parser is None:
                warnings.append(f"{path}: [{section}] unknown key {key!r} is ignored")
                continue
            try:
                values.setdefault(section, {})[key] = parser(raw)
            except ValueError as e:
                raise ConfigError(path, section, key, str(e)) from None
    for section, key in REQUIRED:
        if key not in values.get(section, {}):
            raise ConfigError(path, section, key, "required key is missing (e.g. `port = 5223` and `websockets = off`)")
    ic = values.get("INACTIVE_CLIENTS", {})
    if ic.get("disconnect"):
        for key in ("ttl", "check_interval"):
            if key not in ic:
                raise ConfigError(path, "INACTIVE_CLIENTS", key, "required when `disconnect = on` (seconds, e.g. 21600 and 3600)")
    info = values.get("INFORMATION", {})
    if set(info) - {"hosting_type"} and "source_code" not in info:
        # upstream ignores the whole section then; we say so instead of silently dropping it
        warnings.append(f"{path}: [INFORMATION] is ignored without `source_code`")
    tr = values["TRANSPORT"]
    proxy = dict(values.get("PROXY", {}))
    if "own_server_domains" in proxy:
        proxy["own_server_domains"] = proxy["own_server_domains"].split()
    return ServerConfig(
        transport=TransportSettings(
            port=tr["port"],
            websockets=tr["websockets"],
            host=None if tr.get("host") in (None, [HOSTNAMES_PLACEHOLDER]) else tr["host"],
            port_text=cp.get("TRANSPORT", "port").strip(),
            log_tls_errors=tr.get("log_tls_errors", False),
            control_port=tr.get("control_port"),
            accept_service_credentials=tr.get("accept_service_credentials", True),
        ),
        store_log=StoreLogSettings(**{k: v for k, v in values.get("STORE_LOG", {}).items() if k in StoreLogSettings.__dataclass_fields__}),
        auth=AuthSettings(**values.get("AUTH", {})),
        proxy=ProxySettings(**proxy),
        inactive_clients=InactiveClientsSettings(**ic),
        web=WebSettings(**values.get("WEB", {})),
        information={k: v for k, v in info.items()},
        warnings=warnings,
    )


def load(path: str | Path) -> ServerConfig:
    """Read and parse the INI file; unreadable files raise :class:`ConfigError` too."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), None, None, f"cannot read the file: {e.strerror}") from None
    try:
        return parse(data.decode("utf-8"), str(p))
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), None, None, f"not UTF-8 text (byte {e.start})") from None


# -- addresses ----------------------------------------------------------------------------------


def server_address(fingerprint: str, password: str | None, hosts: list[str] | str | None, ports: list[int] | None = None) -> str:
    """``smp://<fingerprint>[:<password>]@<host>[,<host>...][:<port>]``.

    The port is omitted when 5223 (the client default) is among the listening ports, otherwise
    the first port is given. (Upstream prints the raw INI value, ``:5223,443``, which no client
    can parse: reference §2.5.)
    """
    if hosts is None or hosts == []:
        host = HOSTNAMES_PLACEHOLDER
    elif isinstance(hosts, str):
        host = hosts
    else:
        host = ",".join(hosts)
    auth = f":{password}" if password else ""
    suffix = "" if not ports or DEFAULT_PORT in ports else f":{ports[0]}"
    return f"smp://{fingerprint}{auth}@{host}{suffix}"


def config_address(cfg: ServerConfig, fingerprint: str) -> str:
    return server_address(fingerprint, cfg.auth.create_password, cfg.transport.host, cfg.transport.port)


# -- writing ------------------------------------------------------------------------------------


@dataclass
class IniOptions:
    """What ``init`` puts in the INI (defaults = ``smp-server init -y``, Appendix A).

    ``create_password`` None means no password (the line is written commented out);
    ``hosts`` None means upstream's ``<hostnames>`` placeholder.
    """

    cfg_path: str = "/etc/opt/simplex"
    log_path: str = "/var/opt/simplex"
    store_log: bool = True
    log_stats: bool = False
    create_password: str | None = None
    hosts: list[str] | None = None
    ports: list[int] = field(default_factory=lambda: [5223, 443])
    source_code: str | None = None
    server_country: str | None = None
    operator: str | None = None
    operator_country: str | None = None
    website: str | None = None
    hosting: str | None = None
    hosting_country: str | None = None
    hosting_type: str = "virtual"
    socks_proxy: str | None = None
    own_server_domains: list[str] | None = None
    web_path: str | None = None  # default <log>/www
    disable_web: bool = False


def _opt_line(key: str, value: str | None, commented: str) -> str:
    return f"{key} = {value}" if value is not None else commented


def render(o: IniOptions) -> str:
    """The INI text upstream ``init`` writes for these options; validated before it is returned."""
    if o.create_password is not None and not valid_password(o.create_password):
        raise ValueError("invalid password: allowed are printable ASCII characters without whitespace, '@', ':' and '/'")
    hosts = ",".join(o.hosts) if o.hosts else HOSTNAMES_PLACEHOLDER
    if o.hosts:
        host_list(hosts)
    text_ = _TEMPLATE.format(
        source_code_line=_opt_line("source_code", o.source_code, "# source_code = URI"),
        server_country_line=_opt_line("server_country", o.server_country, "# server_country = ISO-3166 2-letter code"),
        operator_line=_opt_line("operator", o.operator, "# operator = entity (organization or person name)"),
        operator_country_line=_opt_line("operator_country", o.operator_country, "# operator_country = ISO-3166 2-letter code"),
        website_line=_opt_line("website", o.website, "# website = "),
        hosting_line=_opt_line("hosting", o.hosting, "# hosting = entity (organization or person name)"),
        hosting_country_line=_opt_line("hosting_country", o.hosting_country, "# hosting_country = ISO-3166 2-letter code"),
        hosting_type=o.hosting_type,
        store_log="on" if o.store_log else "off",
        log_stats="on" if o.log_stats else "off",
        create_password_line=_opt_line("create_password", o.create_password, NO_PASSWORD_COMMENT),
        host=hosts,
        port=",".join(str(p) for p in o.ports),
        own_domains_line=_opt_line(
            "own_server_domains", " ".join(o.own_server_domains) if o.own_server_domains else None, "# own_server_domains = "
        ),
        socks_proxy_line=_opt_line("socks_proxy", o.socks_proxy, "# socks_proxy = localhost:9050"),
        static_path=o.web_path or f"{o.log_path}/www",
        web_comment="# " if o.disable_web else "",
        cfg=o.cfg_path,
    )
    parse(text_, "rendered smp-server.ini")  # never write a file start would refuse
    return text_


_TEMPLATE = """\
[INFORMATION]
# AGPLv3 license requires that you make any source code modifications
# available to the end users of the server.
# LICENSE: https://github.com/simplex-chat/simplexmq/blob/stable/LICENSE
# Include correct source code URI in case the server source code is modified in any way.
# If any other information fields are present, source code property also MUST be present.

{source_code_line}

# Declaring all below information is optional, any of these fields can be omitted.

# Server usage conditions and amendments.
# It is recommended to use standard conditions with any amendments in a separate document.
# usage_conditions = https://github.com/simplex-chat/simplex-chat/blob/stable/PRIVACY.md
# condition_amendments = link

# Server location and operator.
{server_country_line}
{operator_line}
{operator_country_line}
{website_line}

# Administrative contacts.
# admin_simplex = SimpleX address
# admin_email =
# admin_pgp =
# admin_pgp_fingerprint =

# Contacts for complaints and feedback.
# complaints_simplex = SimpleX address
# complaints_email =
# complaints_pgp =
# complaints_pgp_fingerprint =

# Hosting provider.
{hosting_line}
{hosting_country_line}

# Hosting type can be `virtual`, `dedicated`, `colocation`, `owned`
hosting_type = {hosting_type}

[STORE_LOG]
# The server uses memory or PostgreSQL database for persisting queue records.
# Use `enable = on` to use append-only log to preserve and restore queue records on restart.
# Log is compacted on start (deleted objects are removed).
enable = {store_log}

# Queue storage mode: `memory` or `database` (to store queue records in PostgreSQL database).
# `memory` - in-memory persistence, with optional append-only log (`enable = on`).
# `database`- PostgreSQL databass (requires `store_messages = journal`).
store_queues = memory

# Database connection settings for PostgreSQL database (`store_queues = database`).
# db_connection = postgresql://smp@/smp_server_store
# db_schema = smp_server
# db_pool_size = 10

# Write database changes to store log file
# db_store_log = off

# Time to retain deleted queues in the database, days.
# db_deleted_ttl = 21

# Message storage mode: `memory` or `journal`.
store_messages = memory

# When store_messages is `memory`, undelivered messages are optionally saved and restored
# when the server restarts, they are preserved in the .bak file until the next restart.
restore_messages = {store_log}

# Messages and notifications expiration periods.
expire_messages_days = 21
expire_messages_on_start = on
expire_messages_on_send = off
expire_ntfs_hours = 24

# Log daily server statistics to CSV file
log_stats = {log_stats}

# Log interval for real-time Prometheus metrics
# prometheus_interval = 60

[AUTH]
# Set new_queues option to off to completely prohibit creating new messaging queues.
# This can be useful when you want to decommission the server, but not all connections are switched yet.
new_queues = on

# Use create_password option to enable basic auth to create new messaging queues.
# The password should be used as part of server address in client configuration:
# smp://fingerprint:password@host1,host2
# The password will not be shared with the connecting contacts, you must share it only
# with the users who you want to allow creating messaging queues on your server.
{create_password_line}

# control_port_admin_password = 
# control_port_user_password = 

# The limit for queues that can be blocked via control port per day, resets at 0:00 UTC.
# Set to 0 to disable limit, to -1 to prohibit blocking. Default is 20.
# daily_block_queue_quota = 20

[TRANSPORT]
# Host is only used to print server address on start.
# You can specify multiple server ports.
host = {host}
port = {port}
log_tls_errors = off

# Use `websockets = 443` to run websockets server in addition to plain TLS.
# This option is deprecated and should be used for testing only.
# , port 443 should be specified in port above
websockets = off
# control_port = 5224

[PROXY]
# Network configuration for SMP proxy client.
# `host_mode` can be 'public' (default) or 'onion'.
# It defines prefferred hostname for destination servers with multiple hostnames.
# host_mode = public
# required_host_mode = off

# The domain suffixes of the relays you operate (space-separated) to count as separate proxy statistics.
{own_domains_line}

# SOCKS proxy port for forwarding messages to destination servers.
# You may need a separate instance of SOCKS proxy for incoming single-hop requests.
{socks_proxy_line}

# `socks_mode` can be 'onion' for SOCKS proxy to be used for .onion destination hosts only (default)
# or 'always' to be used for all destination hosts (can be used if it is an .onion server).
# socks_mode = onion

# Limit number of threads a client can spawn to process proxy commands in parrallel.
# client_concurrency = 32

[INACTIVE_CLIENTS]
# TTL and interval to check inactive clients
disconnect = on
ttl = 21600
check_interval = 3600

[WEB]
# Set path to generate static mini-site for server information and qr codes/links
static_path = {static_path}

# Run an embedded server on this port
# Onion sites can use any port and register it in the hidden service config.
# Running on a port 80 may require setting process capabilities.
# http = 8000

# You can run an embedded TLS web server too if you provide port and cert and key files.
# Not required for running relay on onion address.
{web_comment}https = 443
{web_comment}cert = {cfg}/web.crt
{web_comment}key = {cfg}/web.key
"""
