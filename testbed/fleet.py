"""up / down / status of one testbed instance: the order of steps, crash clean-up and readiness.

`up` first removes whatever a previous (crashed) run of the same instance left, and on any failure
tears down what it made, so the machine is never left half set up.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import hosts, image, inventory, network, packages
from .errors import TestbedError
from .instance import MAX_HOSTS, STATE_ROOT, Instance
from .system import check_cgroups, check_root, check_tools, mount_points, run

READY_TIMEOUT = 120.0
Log = Callable[[str], None]


@dataclass
class Fleet:
    """What a running instance offers to its users (tests, the demo, the other engineers)."""

    name: str
    subnet_index: int
    bridge_address: str
    hosts: list[dict[str, str]]  # [{"name": "h1", "address": "10.213.k.11"}, ...]
    ssh_key: str
    ssh_config: str
    known_hosts: str
    pyinfra_inventory: str
    ansible_inventory: str
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, host: str, cmd: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host over SSH (OpenSSH with the instance's ssh_config)."""
        proc = subprocess.run(["ssh", "-F", self.ssh_config, host, cmd], capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise TestbedError(f"{host}: `{cmd}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    @classmethod
    def load(cls, inst: Instance) -> "Fleet":
        try:
            return cls(**json.loads(inst.instance_file.read_text()))
        except FileNotFoundError:
            raise TestbedError(f"testbed {inst.name!r} is not up (no {inst.instance_file}); run: "
                               f"python -m smpfleet_testbed up --name {inst.name}") from None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextmanager
def instance_lock(inst: Instance) -> Iterator[None]:
    """One up/down at a time per instance; other instances are not blocked."""
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(inst.lock_file, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TestbedError(f"testbed {inst.name!r} is busy: another up/down, or a test session using its "
                               f"hosts, holds {inst.lock_file}; wait for it, or use another --name") from None
        yield


def resolve(name: str, subnet_index: int | None) -> Instance:
    """The instance, with the subnet a running instance of that name was given if not told."""
    inst = Instance.make(name, subnet_index)
    recorded = _recorded_subnet(inst)
    if subnet_index is None and recorded is not None:
        inst = Instance.make(name, recorded)
    return inst


def subnet_claimed_by(inst: Instance) -> str | None:
    """Name of another instance whose state records the same subnet (running or crashed)."""
    for other in sorted(STATE_ROOT.glob("*/instance.json")):
        name = other.parent.name
        if name == inst.name:
            continue
        try:
            if int(json.loads(other.read_text())["subnet_index"]) == inst.subnet_index:
                return name
        except (OSError, KeyError, ValueError):
            continue
    return None


def _check_subnet(inst: Instance) -> None:
    other = subnet_claimed_by(inst)
    if other:
        raise TestbedError(f"subnet {inst.subnet} is used by testbed {other!r}: pick a free one with "
                           f"--subnet-index N (10.213.N.0/24), or take {other!r} down first")
    network.check_subnet_free(inst)


def _pick_subnet(inst: Instance) -> Instance:
    """The instance on a free subnet: as given if explicit (else a clear error), otherwise the one
    derived from its name or, if another instance has that, the next free one in the derived range."""
    if inst.explicit_subnet:
        _check_subnet(inst)
        return inst
    for candidate in inst.derived_candidates():
        try:
            _check_subnet(candidate)
            return candidate
        except TestbedError:
            continue
    raise TestbedError("no free subnet left in 10.213.16-239.0/24: take unused testbeds down "
                       "(python -m smpfleet_testbed status --name NAME) or pass --subnet-index N")


def _teardown(inst: Instance, log: Log = print) -> tuple[int, int]:
    stopped = hosts.stop_all(inst)
    recorded = _recorded_subnet(inst)
    for index in {inst.subnet_index, recorded} - {None}:  # also an earlier run's --subnet-index
        sub = Instance.make(inst.name, index)
        network.destroy(sub, guard_route=subnet_claimed_by(sub) is None)
    if mount_points(inst.state_dir):  # never delete through a mount
        raise TestbedError(f"still mounted under {inst.state_dir}: {mount_points(inst.state_dir)}")
    for path in inst.made_paths():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if inst.state_dir.is_dir():
        kept = sorted(p.name for p in inst.state_dir.iterdir())
        if kept:
            log(f"down: kept {inst.state_dir}/{{{','.join(kept)}}} (not made by the testbed)")
        else:
            inst.state_dir.rmdir()
    for top in inst.cgroup_dirs():
        try:
            top.parent.rmdir()  # the shared smpfleet-testbed parent, once no instance uses it
        except OSError:
            pass
    return stopped


def _recorded_subnet(inst: Instance) -> int | None:
    try:
        return int(json.loads(inst.instance_file.read_text())["subnet_index"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


def leftovers(inst: Instance) -> dict[str, list[str]]:
    """Everything of this instance still on the machine (empty lists after a clean down)."""
    return {
        "namespaces": network.our_namespaces(inst),
        "links": network.our_links(inst),
        # a subnet another instance holds is theirs, not a leftover of this one
        "routes": network.our_routes(inst) if subnet_claimed_by(inst) is None else [],
        "mounts": [str(p) for p in mount_points(inst.state_dir)],
        "cgroups": [str(d) for d in inst.cgroup_dirs() if d.exists()],
        "processes": [str(p) for p in sorted(hosts.cgroup_pids(inst.cgroup_dirs()) | hosts.nspawn_pids(inst))],
        "state": [str(p) for p in inst.made_paths() if p.exists()],
    }


def down(inst: Instance, log: Log = print) -> float:
    """Stop every host and remove every resource of the instance; return the seconds it took."""
    check_root()
    check_tools(["ip", "umount"])
    with instance_lock(inst):
        return _down_locked(inst, log)


def _down_locked(inst: Instance, log: Log) -> float:
    started = time.monotonic()
    clean, killed = _teardown(inst, log)
    took = time.monotonic() - started
    log(f"down: testbed {inst.name!r} removed in {took:.1f} s "
        f"({clean} hosts powered off, {killed} leftover processes killed)")
    return took


def _wait_ready(fleet: Fleet, host: str) -> None:
    """Ready = sshd accepts our key, systemd reports `running`, and apt sees the local repository."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        proc = fleet.run(host, "systemctl is-system-running --wait", check=False, timeout=READY_TIMEOUT)
        if proc.returncode != 255:
            break
        if time.monotonic() > deadline:
            raise TestbedError(f"{host}: sshd did not accept a login within {READY_TIMEOUT:.0f} s: "
                               f"{proc.stderr.strip()}; see {Path(fleet.ssh_config).parent}/hosts/{host}/console.log")
        time.sleep(0.2)
    state = proc.stdout.strip()
    if state != "running":
        failed = fleet.run(host, "systemctl --failed --no-legend --plain", check=False).stdout.strip()
        raise TestbedError(f"{host}: systemd is {state!r}, not 'running'; failed units: {failed or 'none'}")
    fleet.run(host, "apt-get update -qq")


def up(inst: Instance, count: int = 3, log: Log = print) -> Fleet:
    """Bring up `count` hosts (after removing any leftovers of the instance) and wait until ready."""
    _preflight(count)
    with instance_lock(inst):
        return _up_locked(inst, count, log)


@contextmanager
def session(inst: Instance, count: int = 3, log: Log = print) -> Iterator[Fleet]:
    """up, yield, always down, holding the instance lock throughout: while a test session uses the
    hosts, an `up`/`down` of the same name elsewhere fails instead of pulling them away."""
    _preflight(count)
    with instance_lock(inst):
        try:
            yield _up_locked(inst, count, log)
        finally:
            _down_locked(inst, log)


def _preflight(count: int) -> None:
    if not 1 <= count <= MAX_HOSTS:
        raise TestbedError(f"host count {count} out of range: use 1..{MAX_HOSTS}")
    check_root()
    check_tools()
    check_cgroups()


def _up_locked(inst: Instance, count: int, log: Log) -> Fleet:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    _teardown(inst, log)  # a crashed run's leftovers first: they may hold the subnet we want
    inst = _pick_subnet(inst)
    timings["cleanup"] = time.monotonic() - t0
    t = time.monotonic()
    rootfs = image.build_image(log=log)
    apt_repo = packages.build_apt_repo(log=log)
    wheels = packages.build_wheelhouse(log=log)
    timings["image_and_repo"] = time.monotonic() - t
    t = time.monotonic()
    try:
        fleet = _start(inst, count, rootfs, apt_repo, wheels, timings)
    except BaseException:
        _teardown(inst, log)
        raise
    timings["up"] = time.monotonic() - t
    fleet.timings = timings
    write_atomic(inst.instance_file, json.dumps(asdict(fleet), indent=2) + "\n")
    log(f"up: {count} hosts of testbed {inst.name!r} ready in {timings['up']:.1f} s "
        f"(bridge {inst.bridge_address}, ssh -F {fleet.ssh_config} h1)")
    return fleet


def _start(inst: Instance, count: int, rootfs: Path, apt_repo: Path, wheels: Path,
           timings: dict[str, float]) -> Fleet:
    inst.state_dir.mkdir(parents=True, exist_ok=True)
    inst.state_dir.chmod(0o700)
    # Record the subnet first: a crash from here on leaves resources a later `down` must find.
    write_atomic(inst.instance_file, json.dumps({"subnet_index": inst.subnet_index}) + "\n")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"smpfleet-testbed-{inst.name}",
         "-f", str(inst.ssh_key)])
    pubkey = inst.ssh_key.with_suffix(".pub").read_text()
    network.create(inst, count)
    hosts.ensure_nspawn_run_dir()
    entries = []
    for i in range(1, count + 1):
        root = hosts.prepare_rootfs(inst, i, count, rootfs, pubkey)
        entries.append(inventory.HostEntry(inst.host_name(i), inst.host_address(i), tuple(hosts.host_keys(root))))
    write_atomic(inst.known_hosts, inventory.known_hosts(entries))
    write_atomic(inst.ssh_config, inventory.ssh_config(entries, inst.ssh_key, inst.known_hosts))
    write_atomic(inst.pyinfra_inventory,
                 inventory.pyinfra_inventory(inst.name, entries, inst.ssh_key, inst.known_hosts, STATE_ROOT))
    write_atomic(inst.ansible_inventory, inventory.ansible_inventory(entries, inst.ssh_key, inst.ssh_config))
    for i in range(1, count + 1):
        hosts.boot(inst, i, inst.host_dir(i) / "rootfs", apt_repo, wheels)
    fleet = Fleet(
        name=inst.name, subnet_index=inst.subnet_index, bridge_address=inst.bridge_address,
        hosts=[{"name": e.name, "address": e.address} for e in entries],
        ssh_key=str(inst.ssh_key), ssh_config=str(inst.ssh_config), known_hosts=str(inst.known_hosts),
        pyinfra_inventory=str(inst.pyinfra_inventory), ansible_inventory=str(inst.ansible_inventory),
    )
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(lambda e: _wait_ready(fleet, e.name), entries))
    timings["ready_wait"] = time.monotonic() - t
    return fleet


def status(inst: Instance) -> dict[str, object]:
    """The instance's hosts with whether each nspawn is running, and anything left on the machine."""
    info: dict[str, object] = {"name": inst.name, "subnet": str(inst.subnet), "bridge_address": inst.bridge_address}
    if inst.instance_file.is_file():
        data = json.loads(inst.instance_file.read_text())
        for h in data.get("hosts", []):
            pid_file = inst.state_dir / "hosts" / h["name"] / "pid"
            h["running"] = pid_file.is_file() and Path(f"/proc/{pid_file.read_text().strip()}").exists()
        info.update(data)
    info["leftovers"] = {k: v for k, v in leftovers(inst).items() if v}
    return info
