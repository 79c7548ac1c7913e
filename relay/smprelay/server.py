"""``smp-server start``: load, check, restore, listen, serve, and save on the way out.

Order matters for "nothing lost": every check that can refuse a start (INI, certificates,
fingerprint, ports) runs before any state file is touched; the listening sockets are bound
before messages are restored, so a port in use never strands restored messages in ``.bak``.
On SIGINT (and SIGTERM, unlike upstream, so ``systemctl stop`` with the default KillSignal
keeps messages too) the listeners close, client sessions end, undelivered messages are saved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from . import certs, config, msg_log, stats, store_log, version
from .env import ProtocolSettings, ServerEnv
from .paths import ServerPaths
from .queue_store import QueueStore

log = logging.getLogger("smprelay.server")

STATS_INTERVAL_ENV = "SMPRELAY_STATS_INTERVAL"  # seconds between daily CSV lines, for tests only


class StartError(Exception):
    """A reason not to start; the message is printed as is and the exit code is 1."""


@dataclass
class StartOptions:
    maintenance: bool = False
    skip_warnings: bool = False


@dataclass
class Credentials:
    ca_cert: object
    server_cert: object
    server_key: object
    fingerprint: str


def load_credentials(paths: ServerPaths) -> Credentials:
    """Check the certificate files and the stored fingerprint as upstream does, with clearer causes."""
    missing = [p.name for p in (paths.ca_crt, paths.server_crt, paths.server_key) if not p.exists()]
    if missing:
        raise StartError(
            f"Error: no SMP credentials: {', '.join(missing)} missing in {paths.cfg}.\n"
            "Restore them from a backup, or issue a new online certificate with `smp-server cert`."
        )
    try:
        ca = certs.load_cert_pem(paths.ca_crt.read_bytes(), str(paths.ca_crt))
        srv = certs.load_cert_pem(paths.server_crt.read_bytes(), str(paths.server_crt))
        key = certs.load_key_pem(paths.server_key.read_bytes(), str(paths.server_key))
        for path, cert in ((paths.ca_crt, ca), (paths.server_crt, srv)):
            try:
                certs.key_algorithm(cert.public_key())
            except certs.CertError as e:
                raise certs.CertError(f"{path}: {e}") from None
    except OSError as e:
        raise StartError(f"Error: cannot read {e.filename}: {e.strerror}") from None
    except certs.CertError as e:
        raise StartError(f"Error: {e}") from None
    if not paths.fingerprint.exists():
        raise StartError(
            f"Error: {paths.fingerprint} does not exist.\n"
            "It must hold the fingerprint of ca.crt, as written by `smp-server init`."
        )
    stored = certs.read_fingerprint_file(paths.fingerprint)
    if not certs.fingerprint_matches(stored, ca):
        raise StartError(
            "Stored fingerprint is invalid.\n"
            f"{paths.fingerprint} does not match {paths.ca_crt} "
            f"(stored {stored or '<empty>'}, ca.crt has {certs.fingerprint(ca)})."
        )
    if not certs.verify_issued_by(srv, ca):
        raise StartError(
            f"Error: {paths.server_crt} is not signed by {paths.ca_crt}.\n"
            "Issue a new online certificate with `smp-server cert` where ca.key is available."
        )
    if certs.public_raw(key.public_key()) != certs.public_raw(srv.public_key()):
        raise StartError(f"Error: {paths.server_key} does not belong to {paths.server_crt}.")
    return Credentials(ca, srv, key, certs.fingerprint(ca))


def protocol_settings(cfg: config.ServerConfig) -> ProtocolSettings:
    sl, ic = cfg.store_log, cfg.inactive_clients
    return ProtocolSettings(
        new_queues=cfg.auth.new_queues,
        create_password=cfg.auth.create_password.encode() if cfg.auth.create_password else None,
        message_ttl=sl.expire_messages_days * 86400,
        expire_messages_on_send=sl.expire_messages_on_send,
        ntf_ttl=sl.expire_ntfs_hours * 3600,
        inactive_ttl=ic.ttl if ic.disconnect else None,
        inactive_check_interval=ic.check_interval or 3600,
    )


PASSWORD_MASK = "********"


def banner_lines(
    paths: ServerPaths, cfg: config.ServerConfig, fingerprint: str, show_password: bool = True
) -> list[str]:
    """What ``start`` prints before serving (reference §1.6), in upstream order and wording.

    ``show_password=False`` masks the create password in the address: ``start`` passes it when
    its output is not a terminal (systemd's journal, a log file), where a secret must not land.
    """
    password = cfg.auth.create_password
    if password and not show_password:
        password = PASSWORD_MASK
    address = config.server_address(fingerprint, password, cfg.transport.host, cfg.transport.port)
    lines = [
        version.banner(),
        f"Fingerprint: {fingerprint}",
        f"Server address: {address}",
    ]
    src = cfg.information.get("source_code")
    if src:
        lines.append(f"Server source code: {src}")
    else:
        lines += [
            "Warning: server source code is not specified.",
            "Add 'source_code' property to [INFORMATION] section of INI file.",
        ]
    lines.append(f"Store log: {paths.store_log}" if cfg.store_log.enable else "Store log disabled.")
    lines += [f"Listening on port {p} (TLS)..." for p in cfg.transport.port]
    if cfg.web.https is not None or cfg.web.http is not None:
        lines.append(
            "Not serving the static site: this relay has no web server; [WEB] http/https/cert/key are ignored"
            + (f" and port {cfg.web.https} serves SMP only." if cfg.web.https in cfg.transport.port else ".")
        )
    if 443 not in cfg.transport.port:
        lines += [
            "WARNING: the clients will use port 443 by default soon.",
            "Set `port` in smp-server.ini section [TRANSPORT] to `5223,443`",
        ]
    sl, ic = cfg.store_log, cfg.inactive_clients
    lines.append(f"expiring messages after {sl.expire_messages_days} days")
    if ic.disconnect:
        lines.append(f"expiring clients inactive for {ic.ttl} seconds every {ic.check_interval} seconds")
    else:
        lines.append("not expiring inactive clients")
    if not cfg.auth.new_queues:
        lines.append("creating new queues NOT allowed")
    elif cfg.auth.create_password:
        lines.append("creating new queues requires password")
    else:
        lines.append("creating new queues allowed")
    return lines


def _bound_socket(port: int) -> socket.socket:
    """Bound, not yet listening: clients are refused (not queued) until the state is restored."""
    family = socket.AF_INET6 if socket.has_dualstack_ipv6() else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart right after a stop
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("", port))
    except BaseException:
        s.close()
        raise
    return s


def bind_listeners(ports: list[int], ini: str) -> list[socket.socket]:
    """Bind every port (all interfaces, IPv6 dual-stack when available) before touching state.

    SO_REUSEADDR lets a restart bind at once, yet on Linux a port another process listens on
    still fails here with EADDRINUSE, which is the check we want before restoring anything.
    """
    socks: list[socket.socket] = []
    try:
        for p in ports:
            try:
                s = _bound_socket(p)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise StartError(
                        f"Error: cannot listen on port {p}: address already in use.\n"
                        f"Stop the program using it, or change `port` in [TRANSPORT] of {ini}."
                    ) from None
                if e.errno == errno.EACCES:
                    raise StartError(
                        f"Error: cannot listen on port {p}: permission denied "
                        "(ports below 1024 need root or CAP_NET_BIND_SERVICE)."
                    ) from None
                raise StartError(f"Error: cannot listen on port {p}: {e.strerror}") from None
            s.setblocking(False)
            socks.append(s)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


@dataclass
class Running:
    """What the running server holds, so shutdown can put everything away."""

    env: ServerEnv
    cfg: config.ServerConfig
    paths: ServerPaths
    journal: store_log.StoreLogWriter | None
    sessions: set[asyncio.Task[None]] = field(default_factory=set)


def save_state(r: Running, out: Callable[[str], None]) -> None:
    if r.cfg.store_log.restore:
        n = msg_log.save(r.paths.messages_log, r.env.store)
        out(f"Saved {n} undelivered messages to {r.paths.messages_log}")
    if r.cfg.store_log.log_stats:
        certs.write_file_atomic(r.paths.stats_snapshot, stats.snapshot(r.env.stats).encode("ascii"), 0o600)
    if r.journal is not None:
        r.journal.close()


def restore_stats(paths: ServerPaths, cfg: config.ServerConfig) -> stats.ServerStats:
    """The counters saved at the last stop (then renamed ``.bak``), or a fresh period."""
    today = dt.datetime.now(dt.timezone.utc).date()
    p = paths.stats_snapshot
    if not cfg.store_log.log_stats or not p.exists():
        return stats.ServerStats(today)
    restored = stats.restore_snapshot(p.read_text(encoding="ascii", errors="replace"), today)
    os.replace(p, p.with_name(p.name + ".bak"))
    return restored


async def _stats_logger(r: Running) -> None:
    interval_env = os.environ.get(STATS_INTERVAL_ENV)
    while True:
        now = dt.datetime.now(dt.timezone.utc)
        delay = float(interval_env) if interval_env else (stats.next_midnight(now) - now).total_seconds()
        await asyncio.sleep(delay)
        now = dt.datetime.now(dt.timezone.utc)
        stats.append_line(r.paths.daily_stats, stats.csv_line(r.env.stats, r.env.store, now))
        stats.reset_period(r.env.stats, now)


async def serve(
    paths: ServerPaths, opts: StartOptions, out: Callable[[str], None] = print
) -> int:
    """Run ``start``; returns the exit code. Raises :class:`StartError` for refusals."""
    if not paths.ini.exists():
        raise StartError(f"Error: server is not initialized ({paths.ini} does not exist).\nRun `smp-server init`.")
    try:
        cfg = config.load(paths.ini)
    except config.ConfigError as e:
        raise StartError(f"Error: invalid configuration: {e}") from None
    for w in cfg.warnings:
        print(f"Warning: {w}", file=sys.stderr)
    creds = load_credentials(paths)
    from . import session, tls  # the protocol side, imported only when serving

    try:
        ctx = tls.server_context(paths.server_crt, paths.ca_crt, paths.server_key)
    except Exception as e:  # ssl.SSLError, OSError: report, do not trace back
        raise StartError(f"Error: cannot load the TLS credentials: {e}") from None
    for line in banner_lines(paths, cfg, creds.fingerprint, show_password=sys.stdout.isatty()):
        out(line)
    socks = bind_listeners(cfg.transport.port, str(paths.ini))

    try:
        store = QueueStore()
        journal = None
        if cfg.store_log.enable:
            paths.log.mkdir(parents=True, exist_ok=True)
            opened = store_log.open_store_log(paths.store_log, store)
            journal = opened.writer
            for w in opened.replay.warnings:
                print(f"Warning: {paths.store_log}: {w}", file=sys.stderr)
            out(f"Restored {opened.queues} queues from {paths.store_log}")
        now = int(time.time())
        if cfg.store_log.restore:
            try:
                res = msg_log.restore(
                    paths.messages_log,
                    store,
                    now=now,
                    ttl=protocol_settings(cfg).message_ttl if cfg.store_log.expire_messages_on_start else None,
                    skip_warnings=opts.skip_warnings,
                )
            except msg_log.MsgLogError as e:
                if journal is not None:
                    journal.close()
                raise StartError(f"Error: {e}") from None
            for w in res.warnings:
                print(f"Warning: {w}", file=sys.stderr)
            if res.restored or res.expired:
                out(f"Restored {res.restored} messages ({res.expired} expired) from {paths.messages_log}")
    except BaseException:
        for s in socks:
            s.close()
        raise

    env = ServerEnv(
        store=store,
        settings=protocol_settings(cfg),
        server_private_key=creds.server_key,
        cert_chain=[certs.cert_der(creds.server_cert), certs.cert_der(creds.ca_cert)],
        key_hash=certs.fingerprint_bytes(creds.ca_cert),
        stats=restore_stats(paths, cfg),
    )
    r = Running(env, cfg, paths, journal)
    if opts.maintenance:
        for s in socks:
            s.close()
        save_state(r, out)
        out("Maintenance done, server stopped.")
        return 0

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        r.sessions.add(task)
        try:
            await session.serve_client(reader, writer, env)
        except asyncio.CancelledError:
            writer.close()
        finally:
            r.sessions.discard(task)

    servers = [await asyncio.start_server(handle, sock=s, ssl=ctx) for s in socks]
    tasks = []
    if cfg.store_log.expire_messages_on_start:
        tasks.append(asyncio.create_task(session.run_housekeeping(env)))
    else:

        async def later() -> None:
            await asyncio.sleep(7200)
            await session.run_housekeeping(env)

        tasks.append(asyncio.create_task(later()))
    if cfg.store_log.log_stats:
        tasks.append(asyncio.create_task(_stats_logger(r)))
    out("Server started.")
    await stop.wait()

    out("Stopping server...")
    for srv in servers:
        srv.close()
    for t in [*tasks, *r.sessions]:
        t.cancel()
    await asyncio.gather(*tasks, *list(r.sessions), return_exceptions=True)
    save_state(r, out)
    out("Server stopped.")
    return 0
