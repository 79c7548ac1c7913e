"""What a client connection needs from the running server, handed to ``session.serve_client``.

``server.py`` (lifecycle: config, certificates, persistence, listeners, signals) builds one
``ServerEnv``; the protocol side (``session.py``, ``commands.py``) only reads settings from it
and changes the store, the subscriptions and the counters. Keeping this seam small lets the
operator surface and the wire protocol evolve separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .queue_store import QueueStore


@dataclass(frozen=True)
class ProtocolSettings:
    """Settings from the INI that change command semantics."""

    new_queues: bool = True  # [AUTH] new_queues
    create_password: bytes | None = None  # [AUTH] create_password (None: no password)
    msg_queue_quota: int = 128  # defaultMsgQueueQuota
    message_ttl: int | None = 21 * 86400  # [STORE_LOG] expire_messages_days, seconds
    expire_messages_on_send: bool = False
    ntf_ttl: int = 24 * 3600  # [STORE_LOG] expire_ntfs_hours, seconds
    inactive_ttl: int | None = 21600  # [INACTIVE_CLIENTS] ttl when disconnect = on, else None
    inactive_check_interval: int = 3600


@dataclass
class ServerEnv:
    store: QueueStore
    settings: ProtocolSettings
    server_private_key: Any  # cryptography Ed25519PrivateKey | Ed448PrivateKey (server.key)
    cert_chain: list[bytes]  # DER certificates as served over TLS: [server.crt, ca.crt]
    key_hash: bytes  # SHA-256 of DER(ca.crt): the fingerprint, raw 32 bytes
    stats: Any  # stats.ServerStats
    # Runtime state owned by the protocol side (subscriptions, connected clients, ...).
    runtime: dict[str, Any] = field(default_factory=dict)
