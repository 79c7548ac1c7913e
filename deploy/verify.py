"""Prove that every published address works the way a SimpleX app will use it.

For each server in ``servers.json`` and each of its hosts, connect as an SMP client (the relay's
own :mod:`smprelay.client`, not a second copy): TLS, identity check against the address's
fingerprint, handshake, then NEW (with the address's password), SKEY, SEND, receive MSG, ACK, DEL.
Public hosts are reached directly, ``.onion`` hosts through the SOCKS proxy given with ``--socks``.

    python -m smpfleet.verify published/servers.json [--socks 127.0.0.1:9050]

Prints one row per server and host (ok and latencies, or the exact failure) and exits 1 if any
address failed or could not be checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from smprelay import client as smp

from .publish import PublishedServer, read_published

# Outcome kinds, in the words the operator reads.
OK = "ok"
UNREACHABLE = "unreachable"
WRONG_FINGERPRINT = "wrong fingerprint"
PASSWORD_REFUSED = "password refused"
HANDSHAKE_ERROR = "handshake error"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol error"
BAD_ENTRY = "bad published entry"
SKIPPED = "not checked"


class VerifyError(Exception):
    """The published file cannot be used at all (missing, not JSON, wrong shape)."""


@dataclass(frozen=True)
class Check:
    """One address to prove: a server's address used with one of its hosts."""

    server: str
    host: str
    address: str
    password: str | None
    via_socks: bool
    problem: str | None = None  # set when the entry is inconsistent: reported, not connected


@dataclass(frozen=True)
class Result:
    check: Check
    kind: str
    detail: str = ""
    connect_ms: float | None = None
    message_ms: float | None = None
    total_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.kind == OK


def load(path: Path) -> list[PublishedServer]:
    """Read ``servers.json`` (or the directory holding it) as :mod:`smpfleet.publish` wrote it."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    file = directory / "servers.json" if path.is_dir() else path
    if not file.exists():
        raise VerifyError(f"{file}: no such file; run the deploy first (it writes published/servers.json)")
    if file.name != "servers.json":
        raise VerifyError(f"{file}: expected a servers.json written by the deploy's publish step")
    try:
        servers = read_published(directory)
    except json.JSONDecodeError as exc:
        raise VerifyError(f"{file}: not valid JSON ({exc}); re-run the deploy to rewrite it") from None
    except (KeyError, TypeError) as exc:
        raise VerifyError(f"{file}: an entry lacks field {exc}; re-run the deploy to rewrite it") from None
    if not servers:
        raise VerifyError(f"{file}: lists no servers")
    return servers


def plan_checks(servers: list[PublishedServer]) -> list[Check]:
    """One check per server and host; entries whose fields contradict their address are
    reported as such (an app uses the address, so the address is what gets connected to)."""
    checks: list[Check] = []
    for s in servers:
        try:
            addr = smp.parse_address(s.address)
        except ValueError as exc:
            checks.append(Check(s.host, ",".join(s.hosts) or "?", s.address, s.password, False, f"address does not parse: {exc}"))
            continue
        problem = None
        if smp.b64u_encode(addr.key_hash) != s.fingerprint and addr.key_hash != _decode_or_none(s.fingerprint):
            problem = f"fingerprint field {s.fingerprint} differs from the address's {smp.b64u_encode(addr.key_hash)}"
        elif list(addr.hosts) != list(s.hosts):
            problem = f"hosts field {s.hosts} differs from the address's {list(addr.hosts)}"
        elif (addr.password or None) != (s.password or None):
            problem = "password field differs from the address's password"
        for h in addr.hosts:
            checks.append(Check(s.host, h, s.address, s.password, h.endswith(".onion"), problem))
    return checks


def _decode_or_none(fp: str) -> bytes | None:
    try:
        return smp.b64u_decode(fp)
    except ValueError:
        return None


def classify(exc: BaseException) -> tuple[str, str]:
    """Map a client exception to the operator's words (kind, detail)."""
    if isinstance(exc, smp.WrongFingerprint):
        return WRONG_FINGERPRINT, str(exc)
    if isinstance(exc, smp.PasswordRefused):
        return PASSWORD_REFUSED, "the server answered ERR AUTH to NEW: the address's password is wrong or new queues are off"
    if isinstance(exc, smp.Unreachable):
        # The client reports TCP and TLS failures alike; a port that answered but failed the TLS
        # handshake is not "unreachable" to an operator: something else listens there.
        if "[SSL" in str(exc) or "SSLError" in str(exc):
            return HANDSHAKE_ERROR, f"TLS handshake failed: {exc}"
        return UNREACHABLE, str(exc)
    if isinstance(exc, smp.HandshakeError):
        return HANDSHAKE_ERROR, str(exc)
    if isinstance(exc, (smp.SMPTimeout, TimeoutError)):
        return TIMEOUT, str(exc) or "no answer in time"
    if isinstance(exc, smp.ConnectionClosed):
        return PROTOCOL_ERROR, f"connection closed: {exc}"
    if isinstance(exc, smp.SMPClientError):
        return PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}"
    return PROTOCOL_ERROR, f"unexpected {type(exc).__name__}: {exc}"


async def probe(check: Check, socks: str | None, timeout: float) -> Result:
    """Connect and run one queue's whole life on `check`'s host; never raises for a bad server."""
    if check.problem:
        return Result(check, BAD_ENTRY, check.problem)
    if check.via_socks and not socks:
        return Result(check, SKIPPED, "onion host: pass --socks HOST:PORT (a tor SOCKS port) to check it")
    t0 = time.perf_counter()
    c = None
    stage = "connect"
    try:
        c = await smp.connect(check.address, socks=socks if check.via_socks else None, host=check.host, timeout=timeout)
        t_conn = time.perf_counter()
        stage = "NEW"
        q = await c.create_queue()
        stage = "SKEY"
        sk = smp.AuthKey.generate("ed25519")
        await c.secure_by_sender(q.snd_id, sk)
        body = b"smpfleet verify " + secrets.token_hex(8).encode()
        stage = "SEND"
        t_send = time.perf_counter()
        await c.send(q.snd_id, body, sk)
        stage = "MSG"
        m = await c.receive(q, timeout=timeout)
        t_msg = time.perf_counter()
        if m.body != body:
            return Result(check, PROTOCOL_ERROR, f"received {m.body[:40]!r}, sent {body!r}")
        stage = "ACK"
        await c.ack(q, m.msg_id)
        stage = "DEL"
        await c.delete(q)
        t_end = time.perf_counter()
        return Result(check, OK, "", (t_conn - t0) * 1000, (t_msg - t_send) * 1000, (t_end - t0) * 1000)
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the report
        kind, detail = classify(exc)
        if kind in (PROTOCOL_ERROR, TIMEOUT) and stage != "connect":
            detail = f"at {stage}: {detail}"
        if check.password:  # details go to terminals and CI logs: never the password
            detail = detail.replace(check.password, "********")
        return Result(check, kind, detail, total_ms=(time.perf_counter() - t0) * 1000)
    finally:
        if c is not None:
            try:
                await c.close()
            except Exception:  # noqa: BLE001
                pass


# Failures that can be transient right after a deploy (a relay restarting, an onion descriptor
# not yet on the HSDirs); a wrong fingerprint or password never is.
RETRYABLE = (UNREACHABLE, TIMEOUT)


async def verify(servers: list[PublishedServer], socks: str | None, timeout: float = 30.0,
                 concurrency: int = 8, retry_for: float = 0.0) -> list[Result]:
    """Probe every check; with `retry_for` > 0, re-probe unreachable/timed-out ones every 2 s
    until they work or that many seconds have passed (the last result is reported)."""
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + retry_for

    async def one(ch: Check) -> Result:
        while True:
            async with sem:
                r = await probe(ch, socks, timeout)
            if r.kind not in RETRYABLE or time.monotonic() + 2 > deadline:
                return r
            await asyncio.sleep(2)

    return list(await asyncio.gather(*(one(ch) for ch in plan_checks(servers))))


def socks_url(value: str | None) -> str | None:
    """``127.0.0.1:9050`` or ``socks5h://127.0.0.1:9050`` -> the client's ``socks5h://`` URL."""
    if not value:
        return None
    v = value if "://" in value else f"socks5h://{value}"
    if not v.startswith(("socks5h://", "socks5://")):
        raise VerifyError(f"--socks {value}: give HOST:PORT of a SOCKS5 proxy (tor's SocksPort), e.g. 127.0.0.1:9050")
    hostport = v.split("://", 1)[1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VerifyError(f"--socks {value}: give HOST:PORT, e.g. 127.0.0.1:9050")
    return "socks5h://" + hostport


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x:.0f} ms"


def render_table(results: list[Result]) -> str:
    """One row per server and host; passwords never shown."""
    rows = [("server", "host", "via", "result", "connect", "message", "total", "detail")]
    for r in results:
        via = "socks" if r.check.via_socks else "direct"
        rows.append((r.check.server, r.check.host, via, r.kind.upper() if not r.ok else "ok",
                     _ms(r.connect_ms), _ms(r.message_ms), _ms(r.total_ms),
                     r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(7)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:7], widths)) + "  " + row[7])
        if i == 0:
            lines.append("-" * (sum(widths) + 14 + len("detail")))
    return "\n".join(line.rstrip() for line in lines)


def summary(results: list[Result]) -> str:
    bad = [r for r in results if not r.ok]
    if not bad:
        return f"verify: all {len(results)} addresses work"
    servers = sorted({r.check.server for r in bad})
    return (f"verify: {len(bad)} of {len(results)} addresses FAILED or were not checked "
            f"(servers: {', '.join(servers)})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smpfleet.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("published", type=Path, help="published/servers.json (or its directory)")
    ap.add_argument("--socks", help="tor SOCKS5 proxy HOST:PORT for the .onion hosts, e.g. 127.0.0.1:9050")
    ap.add_argument("--public-only", action="store_true", help="check only the public hosts (onion hosts are left out)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per step (default 30; onion connects take longer)")
    ap.add_argument("--retry-for", type=float, default=0.0, metavar="SECONDS",
                    help="re-try unreachable/timed-out addresses for up to SECONDS (e.g. right after a deploy, "
                         "while onion descriptors are published); default 0: report the first answer")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        socks = socks_url(args.socks)
        servers = load(args.published)
    except VerifyError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    results = asyncio.run(verify(servers, socks, args.timeout, retry_for=args.retry_for))
    if args.public_only:
        results = [r for r in results if not r.check.via_socks]
    if args.json:
        print(json.dumps([{"server": r.check.server, "host": r.check.host, "via_socks": r.check.via_socks,
                           "result": r.kind, "detail": r.detail, "connect_ms": r.connect_ms,
                           "message_ms": r.message_ms, "total_ms": r.total_ms} for r in results], indent=2))
    else:
        print(render_table(results))
        print(summary(results))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
