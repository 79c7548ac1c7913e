"""Build the relay bundle once per run: the relay wheel plus every wheel it needs, and stem.

Hosts then install from the uploaded files with ``pip --no-index``, so a host without PyPI
access works. The bundle is named by a digest of the wheels' *contents* (not their bytes:
rebuilding the same source gives new zip timestamps), so an unchanged relay is not re-uploaded
or re-installed, and any change to the code installs a new version.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RELAY_DIR = REPO_ROOT / "relay"
# stem runs on the host to manage the onion service over tor's control socket.
EXTRA_REQUIREMENTS = ("stem>=1.8,<1.9",)


class BundleError(Exception):
    """The bundle could not be built; the message carries pip's output."""


@dataclass(frozen=True)
class Bundle:
    directory: Path
    wheels: tuple[Path, ...]
    digest: str  # first 16 hex digits of the content digest

    @property
    def relay_wheel(self) -> Path:
        return next(w for w in self.wheels if w.name.startswith("smpfleet_relay-"))


def wheel_content_digest(path: Path) -> str:
    """SHA-256 over the sorted member names and contents of a wheel (zip metadata ignored)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            h.update(name.encode() + b"\0")
            h.update(hashlib.sha256(z.read(name)).digest())
    return h.hexdigest()


def bundle_digest(wheels: list[Path]) -> str:
    h = hashlib.sha256()
    for w in sorted(wheels, key=lambda p: p.name):
        h.update(w.name.encode() + b"\0" + wheel_content_digest(w).encode())
    return h.hexdigest()[:16]


def build(relay_dir: Path = RELAY_DIR, out_dir: Path | None = None,
          extra: tuple[str, ...] = EXTRA_REQUIREMENTS) -> Bundle:
    """Build the wheels with this interpreter's pip into ``out_dir`` (a fresh temp dir by default).

    The relay source is copied first so the build leaves nothing in the working tree.
    """
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="smpfleet-bundle-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smpfleet-relay-src-") as src:
        src_dir = Path(src) / "relay"
        shutil.copytree(relay_dir, src_dir, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", str(out), str(src_dir), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BundleError(f"building the relay bundle failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    wheels = sorted(out.glob("*.whl"))
    if not any(w.name.startswith("smpfleet_relay-") for w in wheels):
        raise BundleError(f"no smpfleet_relay wheel in {out} after the build")
    return Bundle(out, tuple(wheels), bundle_digest(wheels))


BUNDLE_ENV = "SMPFLEET_BUNDLE"


def from_directory(directory: Path) -> Bundle:
    """A bundle built earlier (``python -m smpfleet.bundle <dir>``): deploy exactly those wheels."""
    wheels = sorted(Path(directory).glob("*.whl"))
    if not any(w.name.startswith("smpfleet_relay-") for w in wheels):
        raise BundleError(f"{directory} holds no smpfleet_relay wheel; build one with "
                          f"`python -m smpfleet.bundle {directory}`")
    return Bundle(Path(directory), tuple(wheels), bundle_digest(wheels))


@functools.lru_cache(maxsize=1)
def build_once() -> Bundle:
    """One build per deploy run, shared by every host (deploy.py runs once per host).

    With ``$SMPFLEET_BUNDLE`` set to a directory of wheels, those are deployed instead.
    """
    if os.environ.get(BUNDLE_ENV):
        return from_directory(Path(os.environ[BUNDLE_ENV]))
    bundle = build()
    atexit.register(shutil.rmtree, bundle.directory, ignore_errors=True)
    return bundle


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    b = build(out_dir=target)
    print(f"{b.directory} {b.digest}")
