"""pyinfra operations for the relay itself: install the bundle, configure, activate.

Stages in the chatmail/cmdeploy style: ``install`` (user, directories, venv from the uploaded
wheels), ``configure`` (identity files, INI, unit; returns whether anything changed) and
``activate`` (systemd: enable, start, restart only when a file it reads changed).
"""

from __future__ import annotations

import io
import shlex

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, FindDirectories
from pyinfra.operations import apt, files, server, systemd

from . import render
from .bundle import Bundle
from .keystore import HostKeys
from .settings import RelaySettings

BASE_DIR = "/opt/smpfleet"
BUNDLES_DIR = f"{BASE_DIR}/bundles"
SCRIPTS_DIR = f"{BASE_DIR}/bin"
UNIT_PATH = "/etc/systemd/system/smp-server.service"
SERVICE = "smp-server.service"


def apt_install(package: str) -> None:
    """Install a package; refresh the apt lists only when something is missing (a fresh host's
    lists may be stale), so runs that change nothing stay free of apt updates."""
    missing = package not in (host.get_fact(DebPackages) or {})
    apt.packages(name=f"{package} present", packages=[package], update=missing)


def install(bundle: Bundle) -> bool:
    """User, directories, venv with the bundle; returns True if a new bundle gets installed."""
    apt_install("python3-venv")
    server.user(name="user smp", user="smp", system=True, home=render.LOG_DIR,
                shell="/usr/sbin/nologin", create_home=False)
    files.directory(name="config dir", path=render.CONFIG_DIR, user="root", group="smp", mode="750")
    files.directory(name="state dir", path=render.LOG_DIR, user="smp", group="smp", mode="750")
    files.directory(name="smpfleet dir", path=BASE_DIR, user="root", group="root", mode="755")

    bundle_dir = f"{BUNDLES_DIR}/{bundle.digest}"
    marker = f"{bundle_dir}/.installed"
    new = not host.get_fact(File, path=marker)
    if new:
        files.directory(name="bundle dir", path=bundle_dir, user="root", group="root", mode="755")
        for wheel in bundle.wheels:
            files.put(name=f"upload {wheel.name}", src=str(wheel), dest=f"{bundle_dir}/{wheel.name}",
                      mode="644")
        venv = render.VENV_DIR
        wheels = " ".join(shlex.quote(f"{bundle_dir}/{w.name}") for w in bundle.wheels)
        server.shell(
            name=f"install relay bundle {bundle.digest}",
            commands=[
                f"test -x {venv}/bin/python || python3 -m venv {venv}",
                # --force-reinstall: a changed relay may keep its version number.
                f"{venv}/bin/pip install --quiet --no-index --no-deps --force-reinstall {wheels}",
                f"touch {marker}",
            ],
        )
    old = [d for d in host.get_fact(FindDirectories, path=BUNDLES_DIR, maxdepth=1) or []
           if d.rstrip("/") != BUNDLES_DIR and d.rstrip("/").rsplit("/", 1)[-1] != bundle.digest]
    for d in old:
        files.directory(name=f"remove old bundle {d}", path=d, present=False)
    files.link(name="smp-server on PATH", path=render.SMP_SERVER_BIN, target=f"{render.VENV_DIR}/bin/smp-server")
    return new


def configure(settings: RelaySettings, keys: HostKeys) -> tuple[bool, bool]:
    """Identity, INI and unit; returns (relay files changed, unit changed)."""
    cfg = render.CONFIG_DIR
    # An identity adopted from the host: its CA key is in the key store now, remove it here.
    ca_key = files.file(name="no ca.key on the host", path=f"{cfg}/ca.key", present=False)
    for stale in ("server.csr", "openssl_ca.conf", "ca.srl"):
        files.file(name=f"no {stale}", path=f"{cfg}/{stale}", present=False)
    ops = [ca_key]
    for name, data, mode in (
        ("ca.crt", keys.ca_crt, "644"),
        ("server.crt", keys.server_crt, "644"),
        ("server.key", keys.server_key, "600"),
        ("fingerprint", (keys.fingerprint + "\n").encode(), "644"),
    ):
        ops.append(files.put(name=f"{name}", src=io.BytesIO(data), dest=f"{cfg}/{name}",
                             user="smp", group="smp", mode=mode))
    ini = render.render("smp-server.ini.j2", render.ini_vars(
        settings, password=keys.password,
        onion_hostname=keys.onion.hostname if keys.onion else None,
        control_passwords=keys.control_passwords,
    ))
    # The INI holds the create password: readable by the relay user only.
    ops.append(files.put(name="smp-server.ini", src=io.BytesIO(ini.encode()),
                         dest=f"{cfg}/smp-server.ini", user="smp", group="smp", mode="600"))
    unit = files.put(name="smp-server unit", src=io.BytesIO(
        render.render("smp-server.service.j2", render.unit_vars(settings)).encode()),
        dest=UNIT_PATH, user="root", group="root", mode="644")
    return any(op.will_change for op in ops), unit.will_change


def activate(restart: bool, daemon_reload: bool, bundle_changed: bool) -> None:
    systemd.service(
        name="smp-server running and enabled",
        service=SERVICE,
        running=True,
        enabled=True,
        restarted=restart or daemon_reload or bundle_changed,
        daemon_reload=daemon_reload,
    )
