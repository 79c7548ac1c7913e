"""A private Tor network on this machine, for the tests and the demo.

Three directory authorities (keys from ``tor-gencert``), three relays, an onion-service node and a
client with a SOCKS port, all started from the distro ``tor`` with our own ``DirAuthority`` lines
only (see :mod:`smpfleet_testbed.tornet_config`, which refuses any torrc that could reach the
public Tor network). Bound on 127.0.0.1, or on the testbed bridge's machine-side address so that the
test hosts' tor can join it with :func:`joining_torrc_lines`.

Command line::

    python -m smpfleet_testbed tornet up [--name N] [--address A | --testbed T] [--port-base P]
    python -m smpfleet_testbed tornet status|down|torrc-lines [--name N]

State lives in ``/tmp/smpfleet-tornet/<name>/`` (``network.json`` + one dir per node).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .fleet import write_atomic
from .tornet_config import (
    NetworkPlan,
    Node,
    TorNetConfigError,
    check_private_torrc,
    dirauthority_line,
    joining_torrc_lines,
    plan_network,
    render_torrc,
)

STATE_ROOT = Path(os.environ.get("SMPFLEET_TORNET_STATE", "/tmp/smpfleet-tornet"))
TOR = shutil.which("tor") or "/usr/sbin/tor"
TOR_GENCERT = shutil.which("tor-gencert") or "/usr/bin/tor-gencert"


class TorNetError(Exception):
    """Something the operator can fix; the message says what, where and how."""


@dataclass
class Network:
    """A generated (and possibly running) network: its plan, where it lives, its DirAuthority lines."""

    plan: NetworkPlan
    root: Path
    dirauthorities: list[str]

    @property
    def socks(self) -> tuple[str, int]:
        return ("127.0.0.1", self.plan.client.socks_port or 0)

    def node_dir(self, node: Node) -> Path:
        return self.root / node.nick

    def joining_torrc_lines(self) -> list[str]:
        return joining_torrc_lines(self.dirauthorities)

    def save(self) -> None:
        data = {"plan": asdict(self.plan), "dirauthorities": self.dirauthorities}
        write_atomic(self.root / "network.json", json.dumps(data, indent=2) + "\n")
        write_atomic(self.root / "torrc-join", "\n".join(self.joining_torrc_lines()) + "\n")

    @classmethod
    def load(cls, name: str, state_root: Path = STATE_ROOT) -> "Network":
        root = state_root / name
        path = root / "network.json"
        if not path.exists():
            raise TorNetError(f"no private Tor network {name!r} ({path} missing): run `tornet up --name {name}` first")
        data = json.loads(path.read_text())
        p = data["plan"]
        plan = NetworkPlan(p["name"], p["address"], p["port_base"], tuple(Node(**n) for n in p["nodes"]))
        return cls(plan, root, list(data["dirauthorities"]))


def _run(cmd: list[str], stdin: str | None = None) -> str:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise TorNetError(f"{' '.join(cmd[:2])} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout


def _gen_authority_keys(plan: NetworkPlan, node: Node, data: Path) -> str:
    """Authority identity/signing keys + certificate with tor-gencert; returns the v3ident."""
    keys = data / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Empty passphrase on stdin: these are throw-away test keys, never for a real network.
    _run(
        [TOR_GENCERT, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
         "-a", f"{plan.address}:{node.dir_port}",
         "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
         "-c", str(keys / "authority_certificate")],
        stdin="\n",
    )
    for line in (keys / "authority_certificate").read_text().splitlines():
        if line.startswith("fingerprint "):
            return line.split()[1]
    raise TorNetError(f"{keys / 'authority_certificate'} has no fingerprint line")


def _relay_fingerprint(node: Node, data: Path, empty: Path) -> str:
    """Create the node's relay identity key and return its fingerprint (no network: a placeholder
    DirAuthority on 127.0.0.1:1 keeps even this tor from looking at the public authorities)."""
    _run(
        [TOR, "--defaults-torrc", str(empty), "-f", str(empty), "--list-fingerprint",
         "--DisableNetwork", "1", "--orport", "1", "--Nickname", node.nick,
         "--DirAuthority", "placeholder 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff",
         "--datadirectory", str(data)]
    )
    return (data / "fingerprint").read_text().split()[1]


def generate(plan: NetworkPlan, state_root: Path = STATE_ROOT) -> Network:
    """Keys, DirAuthority lines and torrcs for a fresh network (replaces a stopped one's state)."""
    root = state_root / plan.name
    if root.exists():
        if running_pids(root):
            raise TorNetError(f"private Tor network {plan.name!r} is running: `tornet down --name {plan.name}` first")
        shutil.rmtree(root)
    root.mkdir(parents=True, mode=0o755)
    empty = root / "empty-torrc"
    empty.write_text("")
    dirauth: list[str] = []
    for node in plan.nodes:
        (root / node.nick).mkdir(mode=0o700)
    for node in plan.authorities:
        data = root / node.nick
        v3ident = _gen_authority_keys(plan, node, data)
        fp = _relay_fingerprint(node, data, empty)
        dirauth.append(dirauthority_line(node.nick, plan.address, node.or_port, node.dir_port, v3ident, fp))
    net = Network(plan, root, dirauth)
    allowed = {"127.0.0.1", plan.address}
    for node in plan.nodes:
        data = root / node.nick
        torrc = render_torrc(plan, node, str(data), dirauth)
        problems = check_private_torrc(torrc, allowed)
        if problems:
            raise TorNetConfigError(f"refusing torrc of {node.nick}: " + "; ".join(problems))
        write_atomic(data / "torrc", torrc, 0o600)
    net.save()
    return net


def running_pids(root: Path) -> dict[str, int]:
    """Live tor processes of the network under `root`, by node nick: found by their command line
    naming our torrc (a PidFile would miss a tor that died before writing it)."""
    ours = {str(d / "torrc").encode(): d.name for d in root.iterdir() if d.is_dir()} if root.exists() else {}
    out: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        for arg in argv:
            if arg in ours:
                out[ours[arg]] = int(proc.name)
    return out


def start(net: Network) -> None:
    """Start every node (tor daemonises once its config is accepted, so errors surface here)."""
    allowed = {"127.0.0.1", net.plan.address}
    empty = net.root / "empty-torrc"
    for node in net.plan.nodes:
        data = net.node_dir(node)
        torrc = data / "torrc"
        problems = check_private_torrc(torrc.read_text(), allowed)  # re-check what is on disk
        if problems:
            raise TorNetConfigError(f"refusing to start {node.nick}: " + "; ".join(problems))
        res = subprocess.run([TOR, "--defaults-torrc", str(empty), "-f", str(torrc)],
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            stop(net)
            raise TorNetError(f"tor {node.nick} did not start (exit {res.returncode}): {res.stdout.strip()[-800:]}")
    # The daemonised tor writes its PidFile a moment after the parent returns.
    deadline = time.monotonic() + 10
    while len(running_pids(net.root)) < len(net.plan.nodes):
        if time.monotonic() > deadline:
            missing = sorted({n.nick for n in net.plan.nodes} - set(running_pids(net.root)))
            stop(net)
            raise TorNetError(f"tor {', '.join(missing)} exited after start: see {net.root}/<node>/notice.log")
        time.sleep(0.05)


def stop(net_or_root: Network | Path, timeout: float = 10.0) -> list[str]:
    """SIGTERM every node of the network (only PIDs whose cmdline names our torrc), then
    SIGKILL what is left after `timeout`. Returns the nicks that were running."""
    root = net_or_root.root if isinstance(net_or_root, Network) else net_or_root
    pids = running_pids(root)
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids.values()):
        time.sleep(0.1)
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(pids)


@contextmanager
def controller(net: Network, nick: str) -> Iterator["stem.control.Controller"]:  # noqa: F821
    from stem.control import Controller

    node = net.plan.node(nick)
    ctl = Controller.from_port("127.0.0.1", node.control_port)
    try:
        ctl.authenticate()
        yield ctl
    finally:
        ctl.close()


def bootstrap_progress(net: Network) -> int:
    """The client's bootstrap percentage (0 when its control port is not up yet)."""
    try:
        with controller(net, "client") as ctl:
            phase = ctl.get_info("status/bootstrap-phase")
    except Exception:  # noqa: BLE001 - not up yet is the normal early answer
        return 0
    for tok in phase.split():
        if tok.startswith("PROGRESS="):
            return int(tok.split("=", 1)[1])
    return 0


@contextmanager
def echo_server() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1 (the backend of the readiness onion service)."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop_flag = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop_flag.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    while data := conn.recv(4096):
                        conn.sendall(data)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop_flag.set()
        t.join()
        srv.close()


def socks_connect(socks: tuple[str, int], host: str, port: int, timeout: float = 30.0) -> socket.socket:
    """A TCP connection to host:port through a SOCKS5 proxy, the name resolved by the proxy."""
    from python_socks.sync import Proxy

    proxy = Proxy.from_url(f"socks5://{socks[0]}:{socks[1]}", rdns=True)
    return proxy.connect(dest_host=host, dest_port=port, timeout=timeout)


@contextmanager
def onion_service(net: Network, ports: dict[int, str], await_publication: bool = True,
                  timeout: float = 60.0) -> Iterator[str]:
    """An ephemeral onion service on the network's hs node (virtual port -> "addr:port");
    yields the ``<56 chars>.onion`` host and removes it afterwards."""
    with controller(net, "hs") as ctl:
        resp = ctl.create_ephemeral_hidden_service(ports, key_type="NEW", key_content="ED25519-V3",
                                                   await_publication=await_publication, timeout=timeout)
        try:
            yield f"{resp.service_id}.onion"
        finally:
            ctl.remove_ephemeral_hidden_service(resp.service_id)


@dataclass
class Readiness:
    bootstrapped_s: float
    onion_published_s: float
    first_round_trip_s: float
    round_trip_ms: list[float]


def wait_ready(net: Network, timeout: float = 120.0, samples: int = 5) -> Readiness:
    """Block until the client is bootstrapped 100% and an echo through a fresh onion service works.
    Times are seconds since this call (which comes right after `start`)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while bootstrap_progress(net) < 100:
        if time.monotonic() > deadline:
            raise TorNetError(
                f"client of {net.plan.name!r} not bootstrapped after {timeout:.0f} s: see {net.root}/client/notice.log")
        time.sleep(0.5)
    boot = time.monotonic() - t0
    with echo_server() as port:
        while True:
            try:
                with onion_service(net, {7: f"127.0.0.1:{port}"}, timeout=max(5.0, deadline - time.monotonic())) as onion:
                    published = time.monotonic() - t0
                    first, rtts = _echo_round_trips(net, onion, deadline, samples)
                    return Readiness(boot, published, first - t0, rtts)
            except TorNetError:
                raise
            except Exception as exc:  # noqa: BLE001 - publication can time out while HSDirs appear
                if time.monotonic() > deadline:
                    raise TorNetError(f"no onion round trip on {net.plan.name!r} within {timeout:.0f} s: {exc}") from exc
                time.sleep(1)


def _echo_round_trips(net: Network, onion: str, deadline: float, samples: int) -> tuple[float, list[float]]:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socks_connect(net.socks, onion, 7, timeout=max(1.0, deadline - time.monotonic())) as s:
                first = time.monotonic()
                rtts = []
                for i in range(samples):
                    msg = f"ping {i}\n".encode()
                    t = time.perf_counter()
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        chunk = s.recv(4096)
                        if not chunk:
                            raise TorNetError("echo connection closed early")
                        got += chunk
                    rtts.append((time.perf_counter() - t) * 1000)
                    if got != msg:
                        raise TorNetError(f"echo through {onion} returned {got!r}, sent {msg!r}")
                return first, rtts
        except TorNetError:
            raise
        except Exception as exc:  # noqa: BLE001 - descriptor not yet fetchable: retry
            last = exc
            time.sleep(0.5)
    raise TorNetError(f"no echo through {onion}: {last}")


def up(name: str = "default", address: str = "127.0.0.1", port_base: int = 5100,
       timeout: float = 120.0, state_root: Path = STATE_ROOT) -> tuple[Network, Readiness]:
    """Generate, start and wait for a usable network (stops it again if it does not become ready)."""
    plan = plan_network(name, address, port_base)
    net = generate(plan, state_root)
    start(net)
    try:
        ready = wait_ready(net, timeout)
    except BaseException:
        stop(net)
        raise
    return net, ready


def down(name: str = "default", state_root: Path = STATE_ROOT) -> list[str]:
    root = state_root / name
    return stop(root) if root.exists() else []


def testbed_bridge(name: str) -> str:
    """The machine-side bridge address of a running testbed instance (its instance.json)."""
    from .instance import STATE_ROOT as TESTBED_STATE

    path = TESTBED_STATE / name / "instance.json"
    try:
        return json.loads(path.read_text())["bridge_address"]
    except (OSError, ValueError, KeyError):
        raise TorNetError(f"testbed {name!r} is not up ({path} missing or unreadable): "
                          f"run `python -m smpfleet_testbed up 3 --name {name}` first") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smpfleet_testbed.tornet",
                                 description="Private Tor network (ours only) for tests and the demo")
    ap.add_argument("action", choices=["up", "down", "status", "torrc-lines"])
    ap.add_argument("--name", default="default")
    ap.add_argument("--address", default="127.0.0.1",
                    help="address for ORPorts/DirPorts: 127.0.0.1, or the testbed bridge's machine side (10.213.<k>.1) so test hosts can join")
    ap.add_argument("--testbed", metavar="NAME",
                    help="bind on the bridge of this running testbed instance (its hosts then join with `torrc-lines`)")
    ap.add_argument("--port-base", type=int, default=5100)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            address = testbed_bridge(args.testbed) if args.testbed else args.address
            net, r = up(args.name, address, args.port_base, args.timeout)
            print(f"tornet {args.name}: up on {address}; SOCKS {net.socks[0]}:{net.socks[1]}")
            print(f"  client bootstrapped in {r.bootstrapped_s:.1f} s; onion published at {r.onion_published_s:.1f} s; "
                  f"first onion round trip at {r.first_round_trip_s:.1f} s")
            print(f"  onion echo round trip: {', '.join(f'{x:.1f}' for x in r.round_trip_ms)} ms")
            print(f"  torrc lines for joining tors: {net.root / 'torrc-join'}")
        elif args.action == "down":
            stopped = down(args.name)
            print(f"tornet {args.name}: stopped {', '.join(stopped) or 'nothing (not running)'}")
        elif args.action == "status":
            net = Network.load(args.name)
            pids = running_pids(net.root)
            for node in net.plan.nodes:
                print(f"{node.nick:8} {node.role:9} {'running pid %d' % pids[node.nick] if node.nick in pids else 'stopped'}")
            print(f"client bootstrap: {bootstrap_progress(net)}%  SOCKS {net.socks[0]}:{net.socks[1]}")
            return 0 if len(pids) == len(net.plan.nodes) else 1
        else:
            print("\n".join(Network.load(args.name).joining_torrc_lines()))
    except (TorNetError, TorNetConfigError) as exc:
        print(f"tornet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
