"""Inventory validation: every host checked, every problem named by host and key."""
from pathlib import Path

import pytest

from smpfleet.settings import InventoryError, parse_fleet

GOOD = {"smp_fqdn": "smp1.example.com"}


def problems(hosts):
    with pytest.raises(InventoryError) as e:
        parse_fleet(hosts)
    return e.value.problems, str(e.value)


def test_defaults_for_a_public_onion_relay():
    s = parse_fleet({"a": GOOD}, Path("/inv"))["a"]
    assert (s.fqdn, s.onion, s.onion_only, s.single_hop) == ("smp1.example.com", True, False, True)
    assert s.sign_algorithm == "ED448" and s.ports == (5223, 443) and s.password_policy == "random"
    assert s.keystore == Path("/inv/keystore") and s.publish_dir == Path("/inv/published")


def test_onion_only_relay_is_anonymous_and_needs_no_fqdn():
    s = parse_fleet({"b": {"smp_onion_only": True}})["b"]
    assert s.fqdn is None and s.onion and not s.single_hop and s.cert_cn == "127.0.0.1"


def test_all_hosts_and_all_problems_are_reported_at_once():
    found, text = problems({
        "ok": GOOD,
        "nofqdn": {},
        "badpw": {"smp_fqdn": "b.example.com", "smp_password_policy": "fixed", "smp_password": "p@ss word"},
        "alg": {"smp_fqdn": "c.example.com", "smp_sign_algorithm": "RSA"},
        "clash": {"smp_fqdn": "d.example.com", "smp_ports": [5223, 5223], "smp_control_port": 5223},
    })
    keys = {(h, k) for h, k, _ in found}
    assert keys == {("nofqdn", "smp_fqdn"), ("badpw", "smp_password"), ("alg", "smp_sign_algorithm"),
                    ("clash", "smp_ports"), ("clash", "smp_control_port")}
    assert "host 'badpw', key 'smp_password'" in text and "'@'" in text and "' '" in text
    assert "no host was touched" in text


@pytest.mark.parametrize("pw", ["a:b", "a/b", "tab\tx", "naïve"])
def test_password_characters_the_address_cannot_carry(pw):
    found, _ = problems({"h": {**GOOD, "smp_password_policy": "fixed", "smp_password": pw}})
    assert found[0][:2] == ("h", "smp_password")


def test_fixed_password_accepts_upstream_random_style_passwords():
    s = parse_fleet({"h": {**GOOD, "smp_password_policy": "fixed", "smp_password": "Ab-_=9xyz!"}})["h"]
    assert s.password == "Ab-_=9xyz!"


def test_duplicate_fqdn_across_hosts_is_a_clash():
    found, _ = problems({"a": GOOD, "b": {"smp_fqdn": "SMP1.example.com."}})
    assert found == [("b", "smp_fqdn", "'SMP1.example.com.' is already used by host 'a'")]


def test_unknown_and_mistyped_keys_are_rejected():
    found, _ = problems({"a": {**GOOD, "smp_onoin": False, "smp_store_log": "yes"}})
    assert {k for _, k, _ in found} == {"smp_onoin", "smp_store_log"}


def test_fqdn_must_not_be_an_onion_or_garbage_and_ips_are_fine():
    assert parse_fleet({"a": {"smp_fqdn": "10.0.0.1"}})["a"].fqdn == "10.0.0.1"
    for bad in ("x" * 57 + ".onion", "bad_host!.example", ""):
        found, _ = problems({"a": {"smp_fqdn": bad}})
        assert found[0][:2] == ("a", "smp_fqdn")


def test_onion_only_contradictions():
    found, _ = problems({"a": {"smp_onion_only": True, "smp_onion": False, "smp_fqdn": "a.example.com"}})
    assert {k for _, k, _ in found} == {"smp_onion", "smp_fqdn"}


def test_tor_extra_config_lines():
    s = parse_fleet({"a": {**GOOD, "smp_tor_extra_config": ["TestingTorNetwork 1", "  ", "DirAuthority x"]}})["a"]
    assert s.tor_extra_config == ("TestingTorNetwork 1", "DirAuthority x")
    found, _ = problems({"a": {**GOOD, "smp_onion": False, "smp_tor_extra_config": ["X 1"]}})
    assert found[0][1] == "smp_tor_extra_config"
