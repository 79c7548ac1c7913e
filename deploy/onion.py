"""pyinfra operations for the relay's Tor onion service.

install: tor from the host's apt sources. configure: the torrc and the onion keys from the key
store, written before tor uses the service directory, so a reinstalled host comes back with the
same ``.onion``. activate: restart tor only when its config or keys changed. verify (run after
the relay is up): stem over the control socket checks that tor serves the service and that its
hostname is the one the key store holds.
"""

from __future__ import annotations

import io
import shlex

from pyinfra.operations import files, systemd

from . import render
from .check import execute_only_shell, unit_state
from .keystore import HostKeys
from .relay import SCRIPTS_DIR, apt_install
from .settings import RelaySettings

TORRC = "/etc/tor/torrc"
TOR_SERVICE = "tor@default.service"
CONTROL_SOCKET = "/run/tor/control"


def install() -> None:
    apt_install("tor")


def configure(settings: RelaySettings, keys: HostKeys) -> bool:
    """torrc and onion keys; returns True if tor must restart."""
    assert keys.onion is not None
    torrc = files.put(name="torrc", src=io.BytesIO(
        render.render("torrc.j2", render.torrc_vars(settings)).encode()),
        dest=TORRC, user="root", group="root", mode="644")
    hs = render.hs_dir(settings)
    # 2700: Debian's /var/lib/tor is setgid and tor keeps that bit on service directories.
    ops = [torrc, files.directory(name="onion service dir", path=hs, user="debian-tor",
                                  group="debian-tor", mode="2700")]
    for name, data in keys.onion.files.items():
        ops.append(files.put(name=f"onion {name}", src=io.BytesIO(data), dest=f"{hs}/{name}",
                             user="debian-tor", group="debian-tor", mode="600"))
    return any(op.will_change for op in ops)


def activate(restart: bool) -> None:
    # Debian enables tor.service, which pulls in tor@default ("enabled-runtime").
    systemd.service(name="tor enabled", service="tor.service", running=True, enabled=True)
    systemd.service(name="tor@default running", service=TOR_SERVICE, running=True, restarted=restart)


def verify(settings: RelaySettings, keys: HostKeys) -> None:
    assert keys.onion is not None
    args = ["--socket", CONTROL_SOCKET, "--dir", render.hs_dir(settings), "--expect", keys.onion.hostname]
    for port in settings.ports:
        args += ["--port", str(port)]
    execute_only_shell(
        name="onion service served by tor (stem, control socket)",
        command=f"{render.VENV_DIR}/bin/python {SCRIPTS_DIR}/onion_service.py "
                + " ".join(shlex.quote(a) for a in args)
                # On failure: tor's state and last log lines (control socket opened? restarted?).
                + f" || {{ {unit_state(TOR_SERVICE)}; journalctl -u {TOR_SERVICE} -n 20 --no-pager"
                  " -o short-precise; exit 1; }",
    )
