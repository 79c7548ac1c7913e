"""Fixtures for tests/verify: a private Tor network on 127.0.0.1 (real tor processes, ours only)."""

from __future__ import annotations

import shutil

import pytest

from smpfleet_testbed import tornet

LOOPBACK_PORT_BASE = 25100  # away from the demo's default 5100 so a running demo is not disturbed


@pytest.fixture(scope="session")
def tornet_loopback(tmp_path_factory):
    """(Network, Readiness) of a fresh private network on 127.0.0.1; stopped after the session."""
    if shutil.which("tor") is None or shutil.which("tor-gencert") is None:
        pytest.fail("tor and tor-gencert are needed (scripts/setup installs the tor package)")
    state = tmp_path_factory.mktemp("tornet")
    net, ready = tornet.up("vtlo", "127.0.0.1", LOOPBACK_PORT_BASE, timeout=150, state_root=state)
    try:
        yield net, ready
    finally:
        tornet.stop(net)
