"""Running machine tools, and the checks that say which package is missing before anything starts."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

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
}


def check_root(euid: int | None = None) -> None:
    """Raise unless running as root: namespaces, mounts, cgroups and debootstrap all need it."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise TestbedError(
            "the testbed needs root (network namespaces, mounts, cgroups, systemd-nspawn): "
            "run it as root, e.g. sudo .venv/bin/python -m smpfleet_testbed ..."
        )


CGROUP_HIERARCHIES = {"/sys/fs/cgroup/unified": "cgroup2", "/sys/fs/cgroup/systemd": "cgroup"}


def check_cgroups(mountinfo: str | None = None) -> None:
    """The hosts get their own cgroups in the hybrid layout this machine kind has (cgroup2 at
    /sys/fs/cgroup/unified, name=systemd v1 at /sys/fs/cgroup/systemd); refuse anything else."""
    text = mountinfo if mountinfo is not None else open("/proc/self/mountinfo").read()
    fstypes = {}
    for line in text.splitlines():
        fstypes[line.split()[4]] = line.split(" - ", 1)[-1].split()[0]
    wrong = [f"{p} (want {t}, found {fstypes.get(p, 'nothing mounted')})"
             for p, t in CGROUP_HIERARCHIES.items() if fstypes.get(p) != t]
    if wrong:
        raise TestbedError(
            "unsupported cgroup layout: " + "; ".join(wrong) + ". The testbed needs the hybrid layout of "
            "this machine kind (PID 1 not systemd): see shared/reference/testbed.md section 2"
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


def mount_points(under: Path) -> list[Path]:
    """Mount points at or below a path (deepest first, the order to unmount them)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == under or under in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever is mounted below (a killed debootstrap can leave its
    proc/sys mounts behind) and refuses to delete through a mount it could not undo."""
    for point in mount_points(path):
        run(["umount", str(point)], check=False)
    if mount_points(path):
        raise TestbedError(f"cannot remove {path}: still mounted below it: {mount_points(path)}")
    shutil.rmtree(path, ignore_errors=True)
