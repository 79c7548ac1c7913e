"""Offline package sources for the hosts: a local apt repository (tor and its dependencies) and a
pip wheelhouse, both built on the machine and bind-mounted read-only into every host.

A real deploy uses the hosts' normal apt and PyPI; the hosts' template points apt and pip here,
so the deploy code does not know it runs against the testbed.
"""
from __future__ import annotations

import shutil
import sys
import time
import tomllib
from pathlib import Path

from .image import cache_lock
from .instance import CACHE_ROOT
from .system import run

APT_PACKAGES = ("tor", "tor-geoipdb")
# What deploys pip-install on the hosts: stem (onion services) and the relay wheel's dependencies.
BASE_WHEELS = ("stem", "cffi", "pycparser", "setuptools", "wheel")
REPO_ROOT = Path(__file__).resolve().parent.parent


def apt_repo_dir(cache_root: Path = CACHE_ROOT) -> Path:
    return cache_root / "apt"


def wheelhouse_dir(cache_root: Path = CACHE_ROOT) -> Path:
    return cache_root / "wheels"


def relay_requirements(pyproject: Path = REPO_ROOT / "relay" / "pyproject.toml") -> list[str]:
    """The relay distribution's runtime requirements, read from its pyproject.toml."""
    data = tomllib.loads(pyproject.read_text())
    return list(data["project"].get("dependencies", []))


def wheel_requirements() -> list[str]:
    return [*BASE_WHEELS, *relay_requirements()]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def parse_depends(output: str) -> list[str]:
    """Package names from `apt-cache depends --recurse` output (lines that start with a name)."""
    names = set()
    for line in output.splitlines():
        if line and line[0].isalnum() and ":" not in line:  # skip "<virtual>", indents, foreign archs
            names.add(line.strip())
    return sorted(names)


def hosts_running_from(cache_root: Path) -> list[int]:
    """PIDs of systemd-nspawn processes (any instance) that bind-mount something from the cache."""
    needle = str(cache_root).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and any(needle in a for a in argv):
                pids.append(int(proc.name))
    return pids


def publish(built: Path, link: Path) -> Path:
    """Put a freshly built tree in place as a new version `<link>.<n>` and point the symlink `link`
    at it. Running hosts keep the version they bind-mounted: a rebuild never empties a mount under
    them. Old versions are deleted only once no test host on the machine uses the cache."""
    version = link.with_name(f"{link.name}.{time.time_ns()}")
    built.rename(version)
    if link.is_dir() and not link.is_symlink():  # a plain directory from an older layout
        link.rename(link.with_name(f"{link.name}.legacy-{time.time_ns()}"))
    tmp_link = link.with_name(f".{link.name}.link")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(version.name)
    tmp_link.rename(link)
    if not hosts_running_from(link.parent):
        for old in link.parent.glob(f"{link.name}.*"):
            if old.is_dir() and old != version:
                shutil.rmtree(old)
    return version


def build_apt_repo(cache_root: Path = CACHE_ROOT, *, rebuild: bool = False, log=print) -> Path:
    """Download tor and its dependencies (no Recommends) into a flat file repository."""
    target = apt_repo_dir(cache_root)
    stamp = "\n".join(APT_PACKAGES) + "\n"
    with cache_lock(cache_root, "apt"):
        if (target / "Packages").is_file() and _read(target / ".requested") == stamp and not rebuild:
            return target
        started = time.monotonic()
        depends = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                       "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *APT_PACKAGES])
        names = parse_depends(depends.stdout)
        tmp = cache_root / ".apt.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        run(["apt-get", "download", *names], cwd=tmp)
        scan = run(["dpkg-scanpackages", "-m", ".", "/dev/null"], cwd=tmp)
        (tmp / "Packages").write_text(scan.stdout)
        (tmp / ".requested").write_text(stamp)
        publish(tmp, target)
        log(f"repo: {len(names)} packages in {target} ({time.monotonic() - started:.1f} s)")
        return target


def build_wheelhouse(cache_root: Path = CACHE_ROOT, *, rebuild: bool = False, log=print) -> Path:
    """Build wheels here (an sdist would need build tools from an index the hosts cannot reach)."""
    target = wheelhouse_dir(cache_root)
    reqs = wheel_requirements()
    stamp = "\n".join(reqs) + "\n"
    with cache_lock(cache_root, "wheels"):
        if _read(target / ".requirements") == stamp and not rebuild:
            return target
        started = time.monotonic()
        tmp = cache_root / ".wheels.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(tmp), *reqs])
        (tmp / ".requirements").write_text(stamp)
        publish(tmp, target)
        log(f"repo: {len(list(target.glob('*.whl')))} wheels in {target} ({time.monotonic() - started:.1f} s)")
        return target
