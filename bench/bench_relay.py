#!/usr/bin/env python3
"""Benchmark of the relay (``smp-server start``) with the independent SMP client as load generator.

Prints, for 1, 10 and 100 connections, messages/s through SEND → MSG → ACK (sender and recipient
queues on different connections, Ed25519-signed SEND and ACK, full-size bodies as SimpleX clients
send them) with p50/p99 latency from SEND to MSG receipt; a light-load latency run (one message in
flight per queue); and the relay's resident memory idle and with 10,000 queues (live and after a
restart that restores them from the store log).

    .venv/bin/python bench/bench_relay.py                 # all of it (about a minute)
    .venv/bin/python bench/bench_relay.py --conns 100 --seconds 10 --body 100
    .venv/bin/python bench/bench_relay.py --profile-server /tmp/relay.prof   # cProfile the relay

The load generator runs in this process (one core of Python: it is usually the bottleneck on a
2-core machine shared with the relay; the relay's own CPU time is printed to show its share).
Numbers, not asserts: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from smprelay import client as smp

SMP_SERVER = str(Path(sys.executable).with_name("smp-server"))


# ---------------------------------------------------------------------------- the relay
@dataclass
class Relay:
    base: Path
    port: int
    password: str = "bench"
    proc: subprocess.Popen | None = None
    profile: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SMP_SERVER_CFG_PATH": str(self.base / "etc"), "SMP_SERVER_LOG_PATH": str(self.base / "var")}

    @property
    def address(self) -> str:
        fp = (self.base / "etc" / "fingerprint").read_text().split()[0]
        return f"smp://{fp}:{self.password}@127.0.0.1:{self.port}"

    def init(self) -> None:
        subprocess.run([SMP_SERVER, "init", "-y", "--disable-web", f"--password={self.password}"],
                       env=self.env, check=True, capture_output=True)
        ini = self.base / "etc" / "smp-server.ini"
        text = ini.read_text().replace("port = 5223,443", f"port = {self.port}")
        ini.write_text(text)

    def start(self) -> None:
        cmd = [SMP_SERVER, "start"]
        if self.profile:  # CPU-time profile: on a shared machine wall time mostly measures waiting
            code = ("import cProfile, time\nfrom smprelay.cli import main\n"
                    "p = cProfile.Profile(time.process_time)\n"
                    "try:\n    p.runcall(main, ['start'])\nfinally:\n    p.dump_stats(%r)\n" % self.profile)
            cmd = [sys.executable, "-c", code]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"smp-server start exited with {self.proc.returncode}")
                time.sleep(0.05)
        raise SystemExit("smp-server did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
        return 0

    def rss_mb(self) -> float:
        return self._status("VmRSS") / 1024

    def cpu_seconds(self) -> float:
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the load
@dataclass
class Stats:
    received: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


async def recipient(c: smp.SMPClient, by_rid: dict[bytes, smp.Queue], sent_at: dict[bytes, deque],
                    credits: dict[bytes, asyncio.Semaphore], stats: Stats, measuring: list[bool]) -> None:
    """Takes every MSG, records its latency, ACKs (auto-batched into shared blocks).

    The msgId is in clear, so only every 64th body is decrypted (and checked): the relay is
    measured, not the load generator's crypto_box."""
    n = 0

    async def ack(q: smp.Queue, msg_id: bytes) -> None:
        try:
            r = await c.request(q.rcv_id, b"ACK " + smp.ss(msg_id), q.rcv_key)
        except smp.ConnectionClosed:  # the run is over
            return
        if r.tag == "MSG":  # the next message comes as the ACK's answer
            c.events.put_nowait(smp.Response(b"", r.entity_id, r.command))
        elif r.tag != "OK":
            stats.errors[r.command.decode()] = stats.errors.get(r.command.decode(), 0) + 1

    pending: set[asyncio.Task] = set()
    while True:
        ev = await c.next_event(60)
        if ev.tag != "MSG":
            stats.errors[ev.tag] = stats.errors.get(ev.tag, 0) + 1
            continue
        now = time.perf_counter_ns()
        q = by_rid[ev.entity_id]
        t0 = sent_at[q.snd_id].popleft()  # one queue delivers in order
        n += 1
        if n % 64 == 0:
            m = c.decrypt(q, ev)
            assert m.body == BODIES[len(m.body)], "message corrupted"
        if measuring[0]:
            stats.received += 1
            stats.latencies_ns.append(now - t0)
        credits[q.snd_id].release()
        msg_id = smp.Reader(ev.args).ss()
        t = asyncio.create_task(ack(q, msg_id))
        pending.add(t)
        t.add_done_callback(pending.discard)


BODIES: dict[int, bytes] = {}


async def sender(c: smp.SMPClient, snd_id: bytes, key: smp.AuthKey, credit: asyncio.Semaphore, body: int,
                 sent_at: deque, stats: Stats, interval: float | None = None) -> None:
    """SENDs from a pool of pre-signed transmissions (signing 16 KB bodies would otherwise be
    the load generator's largest cost); one in flight, the recipient's ACKs give credit."""
    payload = BODIES.setdefault(body, os.urandom(body))
    pool = [c.transmission(snd_id, b"SEND F " + payload, key) for _ in range(4)]
    i = 0
    loop = asyncio.get_running_loop()
    next_t = loop.time() + (random.random() * interval if interval else 0)
    while True:
        if interval:  # paced: a fixed offered load instead of as fast as possible
            next_t += interval
            await asyncio.sleep(max(0.0, next_t - loop.time()))
        await credit.acquire()
        corr, t = pool[i % len(pool)]
        i += 1
        sent_at.append(time.perf_counter_ns())
        r = await c.request_encoded(corr, t)
        if r.tag != "OK":
            sent_at.pop()
            credit.release()
            stats.errors[r.command.decode()] = stats.errors.get(r.command.decode(), 0) + 1


async def throughput(address: str, conns: int, queues_per_conn: int, window: int, body: int,
                     seconds: float, relay: Relay, rate: float | None = None) -> dict:
    clients = [await smp.connect(address, timeout=60) for _ in range(conns)]
    owned: list[list[smp.Queue]] = []
    for c in clients:
        qs = []
        for _ in range(queues_per_conn):
            qs.append(await c.create_queue())
        owned.append(qs)
    stats, measuring = Stats(), [False]
    credits: dict[bytes, asyncio.Semaphore] = {}
    sent_at: dict[bytes, deque] = {}
    tasks = []
    for i, c in enumerate(clients):
        by_rid = {q.rcv_id: q for q in owned[i]}
        for q in owned[i]:
            credits[q.snd_id] = asyncio.Semaphore(window)
            sent_at[q.snd_id] = deque()
        tasks.append(asyncio.create_task(recipient(c, by_rid, sent_at, credits, stats, measuring)))
    for i, c in enumerate(clients):  # connection i sends to the queues of connection i+1
        for q in owned[(i + 1) % conns]:
            key = smp.AuthKey.generate("ed25519")
            await c.secure_by_sender(q.snd_id, key)
            interval = conns * queues_per_conn / rate if rate else None
            tasks.append(asyncio.create_task(
                sender(c, q.snd_id, key, credits[q.snd_id], body, sent_at[q.snd_id], stats, interval)))
    await asyncio.sleep(min(2.0, seconds / 3))  # warm-up
    cpu0, t0, gen0 = relay.cpu_seconds(), time.perf_counter(), time.process_time()
    measuring[0] = True
    await asyncio.sleep(seconds)
    measuring[0] = False
    elapsed, cpu = time.perf_counter() - t0, relay.cpu_seconds() - cpu0
    gen = time.process_time() - gen0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        await c.close()
    lat = sorted(stats.latencies_ns) or [0]
    return {
        "conns": conns, "queues": conns * queues_per_conn, "window": window, "body": body,
        "msgs": stats.received, "msg_per_s": stats.received / elapsed,
        "p50_ms": lat[len(lat) // 2] / 1e6, "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6,
        "relay_cpu_pct": 100 * cpu / elapsed, "errors": stats.errors,
        "relay_cpu_us_per_msg": 1e6 * cpu / max(1, stats.received),
        "gen_cpu_pct": 100 * gen / elapsed,
    }


async def make_queues(address: str, n: int, conns: int = 4) -> None:
    """Creates n queues (not subscribed), NEWs batched 60 per block."""
    clients = [await smp.connect(address, timeout=60) for _ in range(conns)]

    async def worker(c: smp.SMPClient, count: int) -> None:
        done = 0
        while done < count:
            k = min(60, count - done)
            cmds = []
            for _ in range(k):
                key = smp.AuthKey.generate("ed25519")
                dh, _ = smp.sodium.crypto_box_keypair()
                cmds.append((b"", smp.encode_new(c.version, key, dh, c.address.password.encode(), False), key))
            rs = await c.request_batch(cmds)
            bad = [r.command for r in rs if r.tag != "IDS"]
            if bad:
                raise SystemExit(f"NEW failed: {bad[0]!r}")
            done += k

    await asyncio.gather(*(worker(c, n // conns + (1 if i < n % conns else 0)) for i, c in enumerate(clients)))
    for c in clients:
        await c.close()


def fmt(r: dict) -> str:
    err = f"  errors {r['errors']}" if r["errors"] else ""
    return (f"{r['conns']:>4} conns {r['queues']:>4} queues window {r['window']} body {r['body']:>5} B: "
            f"{r['msg_per_s']:>8.0f} msg/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"relay CPU {r['relay_cpu_pct']:3.0f}%, {r['relay_cpu_us_per_msg']:.0f} µs/msg "
            f"(⇒ {1e6 / max(1, r['relay_cpu_us_per_msg']):.0f} msg/s per relay core); "
            f"load generator CPU {r['gen_cpu_pct']:.0f}%{err}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, nargs="*", default=[1, 10, 100])
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--body", type=int, default=16000, help="SEND body bytes (SimpleX clients send ~16 KB)")
    ap.add_argument("--window", type=int, default=4, help="messages in flight per queue")
    ap.add_argument("--queues", type=int, default=100, help="total queues in the throughput runs")
    ap.add_argument("--rates", type=float, nargs="*", default=[500, 1000], help="offered loads for the paced latency runs")
    ap.add_argument("--rss-queues", type=int, default=10000)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--profile-server", metavar="FILE", help="run the relay under cProfile, print its top entries")
    args = ap.parse_args()
    try:
        import uvloop  # type: ignore

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    print(f"load generator: 1 process ({loop_name}), {os.cpu_count()} CPUs on this machine; relay: smp-server start; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="smp-bench-") as tmp:
        relay = Relay(Path(tmp) / "r1", free_port(), profile=args.profile_server)
        relay.base.mkdir()
        relay.init()
        relay.start()
        try:
            print(f"relay RSS idle: {relay.rss_mb():.1f} MB")
            print("throughput, SEND→MSG→ACK (Ed25519 SEND and ACK, sender and recipient on different connections):")
            for n in args.conns:
                r = asyncio.run(throughput(relay.address, n, max(1, args.queues // n), args.window, args.body,
                                           args.seconds, relay))
                print("  " + fmt(r), flush=True)
            print("latency: one message in flight per queue (1 queue: unloaded; 10 connections: light load):")
            for n in (1, 10):
                r = asyncio.run(throughput(relay.address, n, 1, 1, args.body, args.seconds, relay))
                print("  " + fmt(r), flush=True)
            for rate in args.rates:
                print(f"latency at a fixed offered load of {rate} msg/s over 100 connections:")
                r = asyncio.run(throughput(relay.address, 100, 1, 4, args.body, args.seconds, relay, rate))
                print("  " + fmt(r), flush=True)
        finally:
            relay.stop()
        if args.profile_server:
            print(f"relay profile (cProfile, CPU time, top 25 by own time), {args.profile_server}:")
            pstats.Stats(args.profile_server).sort_stats("tottime").print_stats(25)
        if not args.skip_rss:
            r2 = Relay(Path(tmp) / "r2", free_port())
            r2.base.mkdir()
            r2.init()
            r2.start()
            try:
                idle = r2.rss_mb()
                t0 = time.perf_counter()
                asyncio.run(make_queues(r2.address, args.rss_queues))
                dt = time.perf_counter() - t0
                time.sleep(0.5)
                live = r2.rss_mb()
                r2.stop()
                r2.start()
                time.sleep(0.5)
                restored = r2.rss_mb()
            finally:
                r2.stop()
            print(f"relay RSS: idle {idle:.1f} MB; with {args.rss_queues} queues {live:.1f} MB "
                  f"(created in {dt:.1f} s, {args.rss_queues / dt:.0f} NEW/s); "
                  f"after restart restoring them from the store log {restored:.1f} MB")


if __name__ == "__main__":
    main()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
