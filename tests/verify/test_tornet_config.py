"""The torrc rules that keep every tor we start off the public Tor network (pure, no tor run)."""

import pytest

from smpfleet_testbed.tornet_config import (
    TorNetConfigError,
    check_private_torrc,
    dirauthority_line,
    joining_torrc_lines,
    plan_network,
    render_torrc,
)

V3 = "B374351F6A199B967EB35122169DEE282D6EE982"
FP = "6AB48B70C3A32B8B7E33FEA25F61519219CE102B"


def _dirauth(plan):
    return [dirauthority_line(n.nick, plan.address, n.or_port, n.dir_port, V3, FP) for n in plan.authorities]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.213.7.1"])
def test_every_rendered_torrc_is_private(address):
    plan = plan_network("x", address, 15100)
    dirauth = _dirauth(plan)
    assert [n.role for n in plan.nodes].count("authority") == 3
    for node in plan.nodes:
        text = render_torrc(plan, node, f"/tmp/x/{node.nick}", dirauth)
        assert check_private_torrc(text, {"127.0.0.1", address}) == [], node.nick
        # control and SOCKS stay on loopback even when the network binds the bridge address
        assert f"ControlPort 127.0.0.1:{node.control_port}" in text
    assert f"ORPort {address}:15100" in render_torrc(plan, plan.node("auth0"), "/d", dirauth)
    assert "SocksPort 127.0.0.1:15400" in render_torrc(plan, plan.client, "/d", dirauth)


def test_torrc_without_our_dirauthorities_is_refused():
    plan = plan_network("x", "127.0.0.1", 15100)
    text = render_torrc(plan, plan.client, "/d", [])
    problems = check_private_torrc(text, {"127.0.0.1"})
    assert any("public directory authorities" in p for p in problems)


@pytest.mark.parametrize(
    "extra, expect",
    [
        ("FallbackDir 171.25.193.9:80 orport=443 id=0000000000000000000000000000000000000000", "fallbackdir"),
        ("DirAuthority moria1 orport=9201 v3ident=D586D18309DED4CD6D57C18FDB97EFA96D330566 128.31.0.39:9231 "
         "1A25C6358DB91342AA51720A5038B72742732498", "128.31.0.39"),
        ("UseBridges 1", "usebridges"),
        ("SocksPort 0.0.0.0:9050", "0.0.0.0"),
    ],
)
def test_any_outside_source_or_address_is_refused(extra, expect):
    plan = plan_network("x", "127.0.0.1", 15100)
    text = render_torrc(plan, plan.client, "/d", _dirauth(plan)) + extra + "\n"
    problems = check_private_torrc(text, {"127.0.0.1"})
    assert any(expect in p for p in problems), problems


def test_relay_that_could_exit_is_refused():
    plan = plan_network("x", "127.0.0.1", 15100)
    text = render_torrc(plan, plan.node("relay0"), "/d", _dirauth(plan))
    text = text.replace("ExitPolicy reject *:*\n", "ExitPolicy accept *:*\n")
    assert any("ExitPolicy" in p for p in check_private_torrc(text, {"127.0.0.1"}))


def test_testing_network_switch_required():
    plan = plan_network("x", "127.0.0.1", 15100)
    text = render_torrc(plan, plan.client, "/d", _dirauth(plan)).replace("TestingTorNetwork 1\n", "")
    assert check_private_torrc(text, {"127.0.0.1"}) == ["TestingTorNetwork 1 is missing"]


@pytest.mark.parametrize("address", ["8.8.8.8", "0.0.0.0", "::1"])
def test_plan_refuses_non_private_bind_address(address):
    with pytest.raises(TorNetConfigError, match="binds only on"):
        plan_network("x", address)


def test_dirauthority_line_validates_fingerprints():
    with pytest.raises(TorNetConfigError, match="v3ident"):
        dirauthority_line("a", "127.0.0.1", 1, 2, "nothex", FP)
    assert dirauthority_line("a", "10.213.7.1", 1, 2, V3, FP) == (
        f"DirAuthority a orport=1 no-v2 v3ident={V3} 10.213.7.1:2 {FP}")


def test_joining_lines_are_private_and_need_the_network():
    plan = plan_network("x", "10.213.7.1", 15100)
    lines = joining_torrc_lines(_dirauth(plan))
    assert check_private_torrc("\n".join(lines), {"10.213.7.1"}) == []
    with pytest.raises(TorNetConfigError):
        joining_torrc_lines([])


def test_cli_explains_missing_network_and_testbed(capsys):
    from smpfleet_testbed.__main__ import main

    assert main(["tornet", "status", "--name", "no-such-net"]) == 1
    assert "run `tornet up --name no-such-net` first" in capsys.readouterr().err
    assert main(["tornet", "up", "--name", "x", "--testbed", "nosuchtb"]) == 1
    assert "testbed 'nosuchtb' is not up" in capsys.readouterr().err
