"""Names, subnets and paths of testbed instances: valid, stable, distinct and within Linux limits."""
from __future__ import annotations

import re

import pytest

from smpfleet_testbed.errors import TestbedError
from smpfleet_testbed.instance import MAX_HOSTS, Instance, derived_subnet_index


@pytest.mark.parametrize("bad", ["", "Tb", "1tb", "tb-x", "tb_x", "abcdefghijk", "tb/../x"])
def test_bad_names_are_refused_with_the_rule(bad):
    with pytest.raises(TestbedError, match="1-10 characters"):
        Instance.make(bad)


def test_interface_names_fit_linux_limit_for_longest_name_and_host_count():
    inst = Instance.make("abcdefghij")
    names = [inst.bridge, inst.veth(MAX_HOSTS), inst.veth_peer(MAX_HOSTS), inst.netns(MAX_HOSTS)]
    assert all(len(n) <= 15 for n in names), names


def test_subnet_is_derived_stably_and_override_wins():
    a = Instance.make("dep")
    assert a.subnet_index == derived_subnet_index("dep") == Instance.make("dep").subnet_index
    assert 16 <= a.subnet_index < 240
    b = Instance.make("dep", 7)
    assert (str(b.subnet), b.bridge_address, b.host_address(1), b.host_address(3)) == (
        "10.213.7.0/24", "10.213.7.1", "10.213.7.11", "10.213.7.13")
    with pytest.raises(TestbedError, match="0..255"):
        Instance.make("dep", 256)


def test_derived_subnets_spread_over_names():
    indexes = {derived_subnet_index(n) for n in ["tb", "pytest", "dep", "roles", "tor", "demo", "ci", "tblife"]}
    assert len(indexes) >= 7


def test_instances_do_not_share_names_paths_or_cgroups():
    a, b = Instance.make("tb"), Instance.make("tb2")
    assert a.state_dir != b.state_dir and a.cgroup_dirs()[0] != b.cgroup_dirs()[0]
    # teardown matches links and namespaces with these patterns: tb must never match tb2's
    pat = re.compile(rf"^{re.escape(a.name)}-(br|h\d+|p\d+)$")
    assert not any(pat.match(n) for n in [b.bridge, b.veth(1), b.veth_peer(1), b.netns(1)])
    assert a.machine(1) != b.machine(1) and a.host_name(1) == b.host_name(1) == "h1"


def test_host_index_out_of_range():
    with pytest.raises(TestbedError):
        Instance.make("tb").host_address(MAX_HOSTS + 1)


def test_derived_candidates_start_at_the_derived_subnet_and_cover_the_range():
    inst = Instance.make("dep")
    cands = [c.subnet_index for c in inst.derived_candidates()]
    assert cands[0] == inst.subnet_index and sorted(cands) == list(range(16, 240))
    assert not inst.explicit_subnet and Instance.make("dep", 7).explicit_subnet
