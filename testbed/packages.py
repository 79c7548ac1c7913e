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


def parse_depends(output: str) -> list[str]:
    """Package names from `apt-cache depends --recurse` output (lines that start with a name)."""
    names = set()
    for line in output.splitlines():
        if line and line[0].isalnum() and ":" not in line:  # skip "<virtual>", indents, foreign archs
            names.add(line.strip())
    return sorted(names)


def build_apt_repo(cache_root: Path = CACHE_ROOT, *, rebuild: bool = False, log=print) -> Path:
    """Download tor and its dependencies (no Recommends) into a flat file repository."""
    target = apt_repo_dir(cache_root)
    with cache_lock(cache_root, "apt"):
        if (target / "Packages").is_file() and not rebuild:
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
        old = cache_root / ".apt.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)  # hosts that have it mounted keep their copy until they stop
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        log(f"repo: {len(names)} packages in {target} ({time.monotonic() - started:.1f} s)")
        return target


def build_wheelhouse(cache_root: Path = CACHE_ROOT, *, rebuild: bool = False, log=print) -> Path:
    """Build wheels here (an sdist would need build tools from an index the hosts cannot reach)."""
    target = wheelhouse_dir(cache_root)
    reqs = wheel_requirements()
    stamp = "\n".join(reqs) + "\n"
    with cache_lock(cache_root, "wheels"):
        if (target / ".requirements").is_file() and (target / ".requirements").read_text() == stamp and not rebuild:
            return target
        started = time.monotonic()
        tmp = cache_root / ".wheels.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(tmp), *reqs])
        (tmp / ".requirements").write_text(stamp)
        old = cache_root / ".wheels.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        log(f"repo: {len(list(target.glob('*.whl')))} wheels in {target} ({time.monotonic() - started:.1f} s)")
        return target
