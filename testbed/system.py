"""Running machine tools, and the checks that say which package is missing before anything starts."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from .errors import TestbedError

# Tool -> Debian package that provides it (what the error message tells the operator to install).
TOOLS: Mapping[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "dpkg-scanpackages": "dpkg-dev",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "apt-get": "apt",
    "apt-cache": "apt",
    "mount": "mount",
    "umount": "mount",
    "nsenter": "util-linux",
}


def check_root(euid: int | None = None) -> None:
    """Raise unless running as root: namespaces, mounts, cgroups and debootstrap all need it."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise TestbedError(
            "the testbed needs root (network namespaces, mounts, cgroups, systemd-nspawn): "
            "run it as root, e.g. sudo .venv/bin/python -m smpfleet_testbed ..."
        )


def check_tools(tools: Sequence[str] = tuple(TOOLS), path: str | None = None) -> None:
    """Raise naming every missing tool and the apt package that provides it."""
    missing = [t for t in tools if shutil.which(t, path=path) is None]
    if missing:
        pkgs = sorted({TOOLS.get(t, t) for t in missing})
        listing = ", ".join(f"{t} (package {TOOLS.get(t, '?')})" for t in missing)
        raise TestbedError(
            f"missing tools: {listing}; install them with: apt-get install {' '.join(pkgs)} "
            "(or run scripts/setup)"
        )


def run(cmd: Sequence[str], *, check: bool = True, input: str | None = None,
        timeout: float | None = 600, env: Mapping[str, str] | None = None,
        cwd: os.PathLike | str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; on failure raise with the command and its stderr."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=timeout, cwd=cwd,
                          env=None if env is None else {**os.environ, **env})
    if check and proc.returncode != 0:
        raise TestbedError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc
