"""The private Tor network with real tor processes: it bootstraps, carries an onion round trip,
talks only to our own loopback addresses, and stops cleanly."""

from __future__ import annotations

import subprocess

import pytest

from smpfleet_testbed import tornet

pytestmark = pytest.mark.slow


def _tor_peer_addresses(pids: set[int]) -> set[str]:
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    peers = set()
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            peers.add(line.split()[4].rsplit(":", 1)[0])
    return peers


def test_network_becomes_usable(tornet_loopback):
    net, ready = tornet_loopback
    assert tornet.bootstrap_progress(net) == 100
    assert 0 < ready.bootstrapped_s <= ready.onion_published_s <= ready.first_round_trip_s
    assert len(ready.round_trip_ms) == 5 and all(x > 0 for x in ready.round_trip_ms)
    print(f"\ntornet: bootstrapped {ready.bootstrapped_s:.1f} s, first onion round trip "
          f"{ready.first_round_trip_s:.1f} s, rtt {ready.round_trip_ms} ms")


def test_every_node_runs_and_talks_only_to_loopback(tornet_loopback):
    net, _ = tornet_loopback
    pids = tornet.running_pids(net.root)
    assert sorted(pids) == sorted(n.nick for n in net.plan.nodes)
    peers = _tor_peer_addresses(set(pids.values()))
    assert peers, "tor nodes have no TCP connections at all"
    assert peers <= {"127.0.0.1"}, peers


def test_new_onion_service_round_trip(tornet_loopback):
    net, _ = tornet_loopback
    with tornet.echo_server() as port, tornet.onion_service(net, {4242: f"127.0.0.1:{port}"}) as onion:
        assert onion.endswith(".onion") and len(onion) == 62
        with tornet.socks_connect(net.socks, onion, 4242, timeout=60) as s:
            s.sendall(b"through our own Tor network\n")
            got = b""
            while not got.endswith(b"\n"):
                got += s.recv(100)
        assert got == b"through our own Tor network\n"


def test_unknown_onion_is_unreachable(tornet_loopback):
    net, _ = tornet_loopback
    bogus = "a" * 56 + ".onion"
    with pytest.raises(Exception):
        tornet.socks_connect(net.socks, bogus, 80, timeout=30).close()


def test_up_refuses_while_running_and_down_stops_everything(tornet_loopback, tmp_path):
    net, _ = tornet_loopback
    with pytest.raises(tornet.TorNetError, match="is running"):
        tornet.generate(net.plan, net.root.parent)
    # a second, separate network: stop it and check nothing of it is left
    plan = tornet.plan_network("vtstop", "127.0.0.1", 26100)
    other = tornet.generate(plan, tmp_path)
    tornet.start(other)
    try:
        assert len(tornet.running_pids(other.root)) == len(plan.nodes)
    finally:
        stopped = tornet.stop(other)
    assert stopped == sorted(n.nick for n in plan.nodes)
    assert tornet.running_pids(other.root) == {}
    assert len(tornet.running_pids(net.root)) == len(net.plan.nodes)  # the first one untouched
