"""Template variables and rendering for the files a relay host receives.

Pure functions: settings + secrets in, text out. The Ansible roles render the same
``templates/*.j2`` with the same variables, so the variables are plain values (no pyinfra
objects) and the Jinja2 options match Ansible's defaults (``trim_blocks`` on,
``lstrip_blocks`` off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from .settings import RelaySettings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
CONFIG_DIR = "/etc/opt/simplex"
LOG_DIR = "/var/opt/simplex"
VENV_DIR = "/opt/smpfleet/venv"
SMP_SERVER_BIN = "/usr/local/bin/smp-server"
HS_DIR_ANONYMOUS = "/var/lib/tor/simplex-smp"
# Separate directory for single-hop services: tor marks keys used in single-hop mode as
# non-anonymous, so the two modes must never share keys.
HS_DIR_SINGLE_HOP = "/var/lib/tor/simplex-smp-singlehop"
SOURCE_CODE = "https://github.com/simplex-chat/simplexmq"


def hs_dir(settings: RelaySettings) -> str:
    return HS_DIR_SINGLE_HOP if settings.single_hop else HS_DIR_ANONYMOUS


def _env(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=False,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(name: str, variables: dict[str, Any], templates_dir: Path = TEMPLATES_DIR) -> str:
    """Render ``templates/<name>`` with ``variables``."""
    return _env(templates_dir).get_template(name).render(**variables)


def relay_hosts(settings: RelaySettings, onion_hostname: str | None) -> list[str]:
    """Hostnames in address order: public first, onion second (the client convention)."""
    hosts = [h for h in (settings.fqdn, onion_hostname) if h]
    if not hosts:
        raise ValueError(f"host {settings.name!r}: no public hostname and no onion hostname")
    return hosts


def ini_vars(
    settings: RelaySettings,
    *,
    password: str | None,
    onion_hostname: str | None,
    control_passwords: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Variables for ``smp-server.ini.j2``."""
    admin, user = control_passwords or (None, None)
    if settings.control_port and not control_passwords:
        raise ValueError("a control port needs its admin and user passwords")
    return {
        "managed_by": "smpfleet",
        "source_code": SOURCE_CODE,
        "store_log": settings.store_log,
        "daily_stats": settings.daily_stats,
        "expire_messages_days": 21,
        "create_password": password,
        "control_port": settings.control_port,
        "control_port_admin_password": admin,
        "control_port_user_password": user,
        "hosts": relay_hosts(settings, onion_hostname),
        "ports": list(settings.ports),
        # Onion-only relays reach other onion relays through their own tor's SOCKS port.
        "socks_proxy": "127.0.0.1:9050" if settings.onion_only else None,
        "config_dir": CONFIG_DIR,
        "log_dir": LOG_DIR,
    }


def unit_vars(settings: RelaySettings) -> dict[str, Any]:
    """Variables for ``smp-server.service.j2``."""
    return {
        "user": "smp",
        "config_dir": CONFIG_DIR,
        "log_dir": LOG_DIR,
        "smp_server_bin": SMP_SERVER_BIN,
        "bind_low_ports": any(p < 1024 for p in settings.ports),
    }


def torrc_vars(settings: RelaySettings) -> dict[str, Any]:
    """Variables for ``torrc.j2``."""
    return {
        "single_hop": settings.single_hop,
        "hs_dir": hs_dir(settings),
        "ports": list(settings.ports),
        "extra_lines": list(settings.tor_extra_config),
    }
