"""The cached Debian bookworm root filesystem every host starts from (built once, shared).

The tree is built in a temporary dir and renamed into place, under an flock, so two instances
that need it at the same time build it once, and a crashed build never leaves a half tree in use.
Hosts use it read-only as the lower layer of an overlay mount.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import TestbedError
from .instance import CACHE_ROOT
from .system import remove_tree, run

SUITE = "bookworm"
MIRROR = os.environ.get("SMPFLEET_TESTBED_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "systemd", "systemd-sysv", "openssh-server", "python3", "python3-venv", "python3-apt",
    "python3-packaging", "dbus", "iproute2", "sudo",
)
# Timers and gettys that make boots noisy and nondeterministic in a throw-away host.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "systemd-tmpfiles-clean.timer", "console-getty.service", "getty@tty1.service",
)
APT_MOUNT = "/srv/testbed-apt"
WHEELS_MOUNT = "/srv/testbed-wheels"
# Bumped whenever the template changes, so an old cache is not reused by mistake.
IMAGE_VERSION = "1"


def image_dir(cache_root: Path = CACHE_ROOT) -> Path:
    return cache_root / f"{SUITE}-rootfs-v{IMAGE_VERSION}"


@contextmanager
def cache_lock(cache_root: Path = CACHE_ROOT, name: str = "build") -> Iterator[None]:
    """Exclusive lock for building shared cache entries (image, apt repo, wheelhouse)."""
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def apply_template_fixes(root: Path) -> None:
    """Make the debootstrap tree a template: per-host data removed, offline package sources set."""
    root.chmod(0o755)  # mkdtemp makes 0700: non-root daemons (dbus) inside could not read '/'
    (root / "etc/machine-id").write_text("")  # written per host
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # generated per host
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # Packages come from the read-only local repo and wheelhouse (the hosts have no route out).
    (root / "etc/apt/sources.list").write_text(f"deb [trusted=yes] file:{APT_MOUNT} ./\n")
    for extra in (root / "etc/apt/sources.list.d").glob("*"):
        extra.unlink()
    (root / "etc/pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {WHEELS_MOUNT}\n")
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    # sshd: key logins only (root logs in with the testbed's generated key).
    conf = root / "etc/ssh/sshd_config.d/testbed.conf"
    conf.write_text("PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")


def overlays_using(lower: Path) -> list[str]:
    """Mount points of overlays whose lower layer is this tree (hosts of any running testbed)."""
    users = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].startswith("overlay ") and f"lowerdir={lower}," in fields[1] + ",":
            users.append(line.split()[4])
    return users


def build_image(cache_root: Path = CACHE_ROOT, *, rebuild: bool = False, log=print) -> Path:
    """Return the cached rootfs, building it with debootstrap if missing (or if rebuild)."""
    target = image_dir(cache_root)
    with cache_lock(cache_root):
        if target.is_dir() and not rebuild:
            return target
        if target.exists() and overlays_using(target):
            raise TestbedError(
                f"cannot rebuild {target}: running test hosts use it as their lower layer "
                f"({', '.join(overlays_using(target))}); take their testbeds down first"
            )
        tmp = cache_root / f".{target.name}.tmp"
        remove_tree(tmp)
        tmp.mkdir()
        started = time.monotonic()
        log(f"image: debootstrap {SUITE} from {MIRROR} into {tmp} (about a minute)")
        try:
            try:
                run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                     SUITE, str(tmp), MIRROR], timeout=1800)
            except TestbedError as e:
                raise TestbedError(f"{e}\n(debootstrap needs the Debian mirror {MIRROR}; "
                                   "point SMPFLEET_TESTBED_MIRROR at a reachable one)") from None
            apply_template_fixes(tmp)
        except BaseException:
            remove_tree(tmp)
            raise
        if target.exists():
            old = cache_root / f".{target.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            shutil.rmtree(old)
        tmp.rename(target)
        log(f"image: ready at {target} in {time.monotonic() - started:.1f} s")
        return target
