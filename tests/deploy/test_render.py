"""The templates render files the relay accepts, with the settings they were given."""
from smprelay import config

from smpfleet import render
from smpfleet.settings import parse_fleet

ONION = "a" * 56 + ".onion"


def fleet():
    return parse_fleet({
        "pub": {"smp_fqdn": "smp1.example.com", "smp_daily_stats": True, "smp_control_port": 5224},
        "oo": {"smp_onion_only": True, "smp_ports": [5223], "smp_store_log": False,
               "smp_tor_extra_config": ["TestingTorNetwork 1"]},
        "plain": {"smp_fqdn": "10.1.2.3", "smp_onion": False, "smp_ports": [7000],
                  "smp_password_policy": "none"},
    })


def parse_ini(settings, **kw):
    text = render.render("smp-server.ini.j2", render.ini_vars(settings, **kw))
    return text, config.parse(text, "smp-server.ini")


def test_ini_carries_both_hostnames_password_and_settings():
    s = fleet()["pub"]
    text, cfg = parse_ini(s, password="pw-1", onion_hostname=ONION, control_passwords=("adm", "usr"))
    assert "host = smp1.example.com," + ONION in text.splitlines()
    assert list(cfg.transport.host) == ["smp1.example.com", ONION]
    assert list(cfg.transport.port) == [5223, 443]
    assert cfg.auth.create_password == "pw-1"
    assert "log_stats = on" in text and "control_port = 5224" in text
    assert config.config_address(cfg, "FP=") == f"smp://FP=:pw-1@smp1.example.com,{ONION}"


def test_ini_for_onion_only_and_passwordless_relays():
    f = fleet()
    text, cfg = parse_ini(f["oo"], password=None, onion_hostname=ONION)
    assert list(cfg.transport.host) == [ONION] and cfg.auth.create_password is None
    assert "enable = off" in text and "socks_proxy = 127.0.0.1:9050" in text.splitlines()
    text, cfg = parse_ini(f["plain"], password=None, onion_hostname=None)
    assert list(cfg.transport.host) == ["10.1.2.3"] and list(cfg.transport.port) == [7000]


def test_unit_has_sigint_restart_limits_and_hardening():
    f = fleet()
    unit = render.render("smp-server.service.j2", render.unit_vars(f["pub"])).splitlines()
    for line in ("User=smp", "KillSignal=SIGINT", "Restart=on-failure", "LimitNOFILE=65535",
                 "ProtectSystem=strict", "ReadWritePaths=/var/opt/simplex", "NoNewPrivileges=yes",
                 "ExecStart=/usr/local/bin/smp-server start", "AmbientCapabilities=CAP_NET_BIND_SERVICE"):
        assert line in unit
    unit = render.render("smp-server.service.j2", render.unit_vars(f["plain"])).splitlines()
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" not in unit and "CapabilityBoundingSet=" in unit


def test_torrc_single_hop_for_public_and_anonymous_for_onion_only():
    f = fleet()
    pub = render.render("torrc.j2", render.torrc_vars(f["pub"])).splitlines()
    assert {"SOCKSPort 0", "HiddenServiceSingleHopMode 1", "HiddenServiceNonAnonymousMode 1"} <= set(pub)
    assert f"HiddenServiceDir {render.HS_DIR_SINGLE_HOP}" in pub
    assert "HiddenServicePort 443 127.0.0.1:443" in pub
    oo = render.render("torrc.j2", render.torrc_vars(f["oo"])).splitlines()
    assert "HiddenServiceSingleHopMode 1" not in oo and f"HiddenServiceDir {render.HS_DIR_ANONYMOUS}" in oo
    assert oo[-1] == "TestingTorNetwork 1"
