"""smp-server.ini: the upstream file written byte for byte, read back, and every bad value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from smprelay import config

APPENDIX_A = (Path(__file__).parent / "data" / "appendix_a.ini").read_text()
PASSWORD = "s3cret-Pass_word="


def appendix_a(password: str = PASSWORD) -> str:
    return APPENDIX_A.replace("<base64url of 32 random bytes, 44 chars>", password)


def test_default_render_is_appendix_a_byte_for_byte() -> None:
    assert config.render(config.IniOptions(create_password=PASSWORD)) == appendix_a()


def test_appendix_a_parses_to_upstream_values() -> None:
    cfg = config.parse(appendix_a())
    assert cfg.store_log.enable and cfg.store_log.restore
    assert cfg.store_log.store_queues == "memory" and cfg.store_log.store_messages == "memory"
    assert cfg.store_log.expire_messages_days == 21 and cfg.store_log.expire_ntfs_hours == 24
    assert cfg.store_log.expire_messages_on_start and not cfg.store_log.expire_messages_on_send
    assert not cfg.store_log.log_stats
    assert cfg.auth.new_queues and cfg.auth.create_password == PASSWORD
    assert cfg.transport.port == [5223, 443] and cfg.transport.websockets == "off"
    assert cfg.transport.host is None  # "<hostnames>"
    assert cfg.inactive_clients.disconnect and cfg.inactive_clients.ttl == 21600
    assert cfg.inactive_clients.check_interval == 3600
    assert cfg.web.static_path == "/var/opt/simplex/www" and cfg.web.https == 443
    assert cfg.web.cert == "/etc/opt/simplex/web.crt"
    assert cfg.information == {"hosting_type": "virtual"}
    assert cfg.warnings == []


def test_no_password_line_is_commented() -> None:
    text = config.render(config.IniOptions(create_password=None))
    assert config.NO_PASSWORD_COMMENT + "\n" in text
    assert config.parse(text).auth.create_password is None


def test_round_trip_of_every_option() -> None:
    o = config.IniOptions(
        cfg_path="/srv/cfg",
        log_path="/srv/log",
        store_log=False,
        log_stats=True,
        create_password="pw",
        hosts=["smp.example.com", "abcdefghij234567.onion"],
        ports=[5223, 443, 8443],
        source_code="https://example.org/src",
        server_country="de",
        operator="Example",
        operator_country="FR",
        website="https://example.org",
        hosting="Hoster",
        hosting_country="NL",
        hosting_type="dedicated",
        socks_proxy="127.0.0.1:9050",
        own_server_domains=["example.com", "example.org"],
        web_path="/srv/www",
        disable_web=True,
    )
    cfg = config.parse(config.render(o))
    assert not cfg.store_log.enable and not cfg.store_log.restore and cfg.store_log.log_stats
    assert cfg.auth.create_password == "pw"
    assert cfg.transport.host == ["smp.example.com", "abcdefghij234567.onion"]
    assert cfg.transport.port == [5223, 443, 8443]
    assert cfg.information["source_code"] == "https://example.org/src"
    assert cfg.information["server_country"] == "DE"  # upper-cased as upstream
    assert cfg.information["hosting_type"] == "dedicated"
    assert cfg.proxy.socks_proxy == "127.0.0.1:9050"
    assert cfg.proxy.own_server_domains == ["example.com", "example.org"]
    assert cfg.web.static_path == "/srv/www"
    assert cfg.web.https is None and cfg.web.cert is None  # --disable-web comments them out
    assert "# cert = /srv/cfg/web.crt" in config.render(o)


def test_colon_separator_and_comments_are_read() -> None:
    text = "; comment\n[TRANSPORT]\nport: 5223\nwebsockets:off\n# port = 1\n[AUTH]\ncreate_password : a=b\n"
    cfg = config.parse(text)
    assert cfg.transport.port == [5223]
    assert cfg.auth.create_password == "a=b"  # '=' in a value after ':' is kept


def test_unknown_keys_and_sections_warn() -> None:
    cfg = config.parse(appendix_a() + "\n[FUTURE]\nx = 1\n").warnings
    assert cfg == ["smp-server.ini: unknown section [FUTURE] is ignored"]
    text = appendix_a().replace("log_tls_errors = off", "log_tls_errors = off\nfancy_new_option = 7")
    assert config.parse(text, "/x/smp-server.ini").warnings == [
        "/x/smp-server.ini: [TRANSPORT] unknown key 'fancy_new_option' is ignored"
    ]


@pytest.mark.parametrize(
    "old, new, section, key, allowed",
    [
        ("enable = on", "enable = yes", "STORE_LOG", "enable", "`on` and `off`"),
        ("port = 5223,443", "port = 5223, 443", "TRANSPORT", "port", "1 to 65535"),
        ("port = 5223,443", "port = 70000", "TRANSPORT", "port", "1 to 65535"),
        ("port = 5223,443", "port = 5223,5223", "TRANSPORT", "port", "list each port once"),
        ("expire_messages_days = 21", "expire_messages_days = 3w", "STORE_LOG", "expire_messages_days", "whole number"),
        ("store_queues = memory", "store_queues = database", "STORE_LOG", "store_queues", "`memory`"),
        ("store_messages = memory", "store_messages = journal", "STORE_LOG", "store_messages", "`memory`"),
        ("hosting_type = virtual", "hosting_type = cloud", "INFORMATION", "hosting_type", "`owned`"),
        (f"create_password = {PASSWORD}", "create_password = a@b", "AUTH", "create_password", "'@'"),
        ("host = <hostnames>", "host = a.example.com, b.onion", "TRANSPORT", "host", "comma-separated"),
        ("ttl = 21600", "ttl = soon", "INACTIVE_CLIENTS", "ttl", "whole number"),
        ("https = 443", "https = x", "WEB", "https", "1 to 65535"),
        ("websockets = off", "websockets = maybe", "TRANSPORT", "websockets", "`off`, `on`"),
    ],
)
def test_invalid_values_name_file_section_key_and_allowed(old: str, new: str, section: str, key: str, allowed: str) -> None:
    text = appendix_a()
    assert f"\n{old}\n" in text
    with pytest.raises(config.ConfigError) as ei:
        config.parse(text.replace(f"\n{old}\n", f"\n{new}\n", 1), "/etc/opt/simplex/smp-server.ini")
    msg = str(ei.value)
    assert msg.startswith(f"/etc/opt/simplex/smp-server.ini: [{section}] {key}: ")
    assert allowed in msg
    assert (ei.value.section, ei.value.key) == (section, key)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[TRANSPORT]\nwebsockets = off\n", "[TRANSPORT] port: required key is missing"),
        ("[TRANSPORT]\nport = 5223\n", "[TRANSPORT] websockets: required key is missing"),
        ("port = 5223\n", "a key before any [SECTION] header"),
        ("[TRANSPORT]\nport = 1\nport = 2\nwebsockets = off\n", "key appears twice"),
        ("[TRANSPORT]\nport = 1\nwebsockets = off\njust words\n", "expected `[SECTION]` or `key = value`"),
        ("[TRANSPORT]\nport = 1\nwebsockets = off\n[INACTIVE_CLIENTS]\ndisconnect = on\n", "required when `disconnect = on`"),
    ],
)
def test_structural_errors(text: str, fragment: str) -> None:
    with pytest.raises(config.ConfigError, match=None) as ei:
        config.parse(text)
    assert fragment in str(ei.value)


def test_load_unreadable_and_binary(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read the file"):
        config.load(tmp_path / "missing.ini")
    p = tmp_path / "bin.ini"
    p.write_bytes(b"\xff\xfe[TRANSPORT]")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(p)


def test_render_refuses_what_start_would_refuse() -> None:
    with pytest.raises(ValueError, match="password"):
        config.render(config.IniOptions(create_password="has space"))
    with pytest.raises(ValueError):
        config.render(config.IniOptions(hosts=["bad host"]))


@pytest.mark.parametrize(
    "password, hosts, ports, expected",
    [
        (None, ["smp.example.com"], [5223], "smp://FP=@smp.example.com"),
        ("pw", ["smp.example.com", "xyz.onion"], [5223, 443], "smp://FP=:pw@smp.example.com,xyz.onion"),
        (None, ["1.2.3.4"], [443, 5223], "smp://FP=@1.2.3.4"),
        (None, ["1.2.3.4"], [443], "smp://FP=@1.2.3.4:443"),
        (None, ["a", "b.onion"], [7000, 443], "smp://FP=@a,b.onion:7000"),
        (None, None, [5223], "smp://FP=@<hostnames>"),
    ],
)
def test_server_address(password: str | None, hosts: list[str] | None, ports: list[int], expected: str) -> None:
    assert config.server_address("FP=", password, hosts, ports) == expected


def test_config_address_uses_ini_hosts_and_password() -> None:
    text = appendix_a().replace("host = <hostnames>", "host = smp.example.com,abc.onion")
    assert config.config_address(config.parse(text), "FP=") == f"smp://FP=:{PASSWORD}@smp.example.com,abc.onion"
