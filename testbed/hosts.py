"""Booting and stopping the hosts: an overlay copy of the image per host, per-host identity
(machine-id, SSH host keys, hostname, root's authorized key), and systemd-nspawn with systemd as
PID 1 in the host's pre-made network namespace and in the instance's own cgroups.

nspawn runs without machined or a system bus here (PID 1 of this machine is not systemd), hence
--register=no --keep-unit and our own cgroup per host; --console=read-only because a passive
console whose pty nobody reads blocks the host's PID 1 (see shared/reference/testbed.md §2).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from .errors import TestbedError
from .image import APT_MOUNT, WHEELS_MOUNT
from .instance import Instance
from .network import netns_path
from .system import mount_points, run

NSPAWN_RUN = Path("/run/systemd/nspawn")
STOP_TIMEOUT = 20.0


def etc_hosts(inst: Instance, count: int) -> str:
    """/etc/hosts of every host: all hosts of the instance by name, so they find each other."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{inst.host_address(i)}\t{inst.host_name(i)}" for i in range(1, count + 1)]
    return "\n".join(lines) + "\n"


def prepare_rootfs(inst: Instance, index: int, count: int, image: Path, pubkey: str) -> Path:
    """Overlay-mount a fresh copy-on-write root for one host and give it its own identity."""
    hdir = inst.host_dir(index)
    upper, work, root = hdir / "upper", hdir / "work", hdir / "rootfs"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={image},upperdir={upper},workdir={work}", str(root)])
    root.chmod(0o755)
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hostname").write_text(inst.host_name(index) + "\n")
    (root / "etc/hosts").write_text(etc_hosts(inst, count))
    run(["ssh-keygen", "-q", "-A", "-f", str(root)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(pubkey)
    keys.chmod(0o600)
    return root


def host_keys(root: Path) -> list[str]:
    """The host's public SSH host keys ("type base64"), for the instance's known_hosts."""
    return [" ".join(p.read_text().split()[:2]) for p in sorted((root / "etc/ssh").glob("ssh_host_*_key.pub"))]


def ensure_nspawn_run_dir() -> None:
    """nspawn keeps per-machine propagation dirs here and refuses to delete them on a disk /run."""
    NSPAWN_RUN.mkdir(parents=True, exist_ok=True)
    if NSPAWN_RUN not in mount_points(NSPAWN_RUN):
        run(["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", str(NSPAWN_RUN)])


def release_nspawn_run_dir() -> None:
    """Unmount the tmpfs once no nspawn (of any instance) uses it; busy means someone does."""
    propagate = NSPAWN_RUN / "propagate"
    if NSPAWN_RUN in mount_points(NSPAWN_RUN) and not (propagate.is_dir() and any(propagate.iterdir())):
        run(["umount", str(NSPAWN_RUN)], check=False)


def _join_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        (d / "cgroup.procs").write_text("0\n")


def boot(inst: Instance, index: int, root: Path, apt_repo: Path, wheelhouse: Path) -> int:
    """Start one host with systemd as PID 1; return the nspawn PID (also written to <host>/pid)."""
    hdir = inst.host_dir(index)
    cgroups = inst.cgroup_dirs(index)
    for d in cgroups:
        d.mkdir(parents=True, exist_ok=True)
    cmd = [
        "systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--console=read-only", "--boot",
        f"--machine={inst.machine(index)}", f"--hostname={inst.host_name(index)}",
        f"--directory={root}", f"--network-namespace-path={netns_path(inst, index)}",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        # resolved: the current version of each cache entry (a rebuild publishes a new one)
        f"--bind-ro={apt_repo.resolve()}:{APT_MOUNT}", f"--bind-ro={wheelhouse.resolve()}:{WHEELS_MOUNT}",
    ]
    with open(hdir / "console.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: _join_cgroups(cgroups))
    (hdir / "pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _is_running(pid: int) -> bool:
    """True while pid is a live process; reaps it first if it is our exited child."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _our_nspawn(inst: Instance, pid: int) -> bool:
    """Only signal a PID that is still this instance's nspawn (PIDs are reused after a crash)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and any(
        a.startswith(b"--machine=") and a[len(b"--machine="):].decode(errors="replace").startswith(f"{inst.name}-h")
        for a in argv)


def nspawn_pids(inst: Instance) -> set[int]:
    """PIDs of this instance's nspawn processes, found by command line (independent of cgroups)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _our_nspawn(inst, int(proc.name)):
            found.add(int(proc.name))
    return found


def cgroup_pids(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for top in dirs:
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def _rmdir_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        d.rmdir()
    top.rmdir()


def stop_all(inst: Instance) -> tuple[int, int]:
    """Power off every host of the instance (SIGTERM to nspawn), kill stragglers, drop mounts and
    cgroups. Returns (hosts powered off cleanly, processes that had to be killed)."""
    pids = []
    hosts_dir = inst.state_dir / "hosts"
    for pid_file in sorted(hosts_dir.glob("*/pid")) if hosts_dir.is_dir() else []:
        pid = int(pid_file.read_text())
        if _is_running(pid) and _our_nspawn(inst, pid):
            os.kill(pid, signal.SIGTERM)  # nspawn turns this into a clean poweroff of the host
            pids.append(pid)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_is_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    stuck = [p for p in pids if _is_running(p)]
    cgroups = inst.cgroup_dirs()
    unified = cgroups[0]
    leftover = cgroup_pids(cgroups)
    if leftover and (unified / "cgroup.kill").exists():
        (unified / "cgroup.kill").write_text("1\n")
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while (cgroup_pids(cgroups) or any(_is_running(p) for p in pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for point in mount_points(inst.state_dir):
        run(["umount", str(point)])
    for top in cgroups:
        _rmdir_tree(top)
    still = cgroup_pids(cgroups) | {p for p in pids if _is_running(p)}
    if still:
        raise TestbedError(f"processes of testbed {inst.name!r} survived SIGKILL: {sorted(still)}")
    release_nspawn_run_dir()
    return len(pids) - len(stuck), len(leftover)
