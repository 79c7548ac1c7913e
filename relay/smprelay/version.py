"""Versions printed by ``smp-server --version`` and in the start banner.

The banner keeps upstream's shape ``SMP server v<version> / <build>`` so tools that grep it keep
working; the version is the simplexmq release whose files and protocol this relay follows and the
build slot names this implementation (upstream puts its git commit there).
"""

from . import __version__

UPSTREAM_VERSION = "6.5.5.0"  # simplexmq release the formats and protocol follow (reference §1)
BUILD = f"smprelay-{__version__}"


def banner() -> str:
    return f"SMP server v{UPSTREAM_VERSION} / {BUILD}"
