"""Where the relay keeps its files: config and log directories from the environment (reference §1.1)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CFG = "/etc/opt/simplex"
DEFAULT_LOG = "/var/opt/simplex"


def _env_path(name: str, default: str) -> Path:
    value = os.environ.get(name, "")
    return Path(value if value else default)  # empty value means the default, as upstream


@dataclass(frozen=True)
class ServerPaths:
    cfg: Path
    log: Path

    @classmethod
    def from_env(cls) -> "ServerPaths":
        return cls(_env_path("SMP_SERVER_CFG_PATH", DEFAULT_CFG), _env_path("SMP_SERVER_LOG_PATH", DEFAULT_LOG))

    @property
    def ini(self) -> Path:
        return self.cfg / "smp-server.ini"

    @property
    def ca_key(self) -> Path:
        return self.cfg / "ca.key"

    @property
    def ca_crt(self) -> Path:
        return self.cfg / "ca.crt"

    @property
    def server_key(self) -> Path:
        return self.cfg / "server.key"

    @property
    def server_crt(self) -> Path:
        return self.cfg / "server.crt"

    @property
    def fingerprint(self) -> Path:
        return self.cfg / "fingerprint"

    @property
    def store_log(self) -> Path:
        return self.log / "smp-server-store.log"

    @property
    def messages_log(self) -> Path:
        return self.log / "smp-server-messages.log"

    @property
    def daily_stats(self) -> Path:
        return self.log / "smp-server-stats.daily.log"

    @property
    def stats_snapshot(self) -> Path:
        return self.log / "smp-server-stats.log"

    @property
    def identity_files(self) -> list[Path]:
        return [self.ini, self.ca_key, self.ca_crt, self.server_key, self.server_crt, self.fingerprint]
