"""verify's pure parts: reading the published file, planning checks, naming failures, the table."""

from __future__ import annotations

import json

import pytest
from smprelay import client as smp

from smpfleet import publish, verify

FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="
FP2 = "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="
ONION = "a" * 56 + ".onion"


def _servers():
    return [
        publish.server_entry("h1", FP, "pw1", ["10.213.7.11", ONION], [5223, 443]),
        publish.server_entry("h2", FP2, None, ["10.213.7.12"], [5223]),
    ]


def test_load_round_trips_what_publish_wrote(tmp_path):
    publish.write_published(tmp_path, _servers())
    for path in (tmp_path / "servers.json", tmp_path):
        got = verify.load(path)
        assert [(s.host, s.password, s.hosts) for s in got] == [
            ("h1", "pw1", ["10.213.7.11", ONION]), ("h2", None, ["10.213.7.12"])]


@pytest.mark.parametrize(
    "content, match",
    [(None, "no such file"), ("{not json", "not valid JSON"), ('{"servers": [{"host": "h1"}]}', "lacks field"),
     ('{"servers": []}', "lists no servers")],
)
def test_load_explains_an_unusable_file(tmp_path, content, match):
    path = tmp_path / "servers.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(verify.VerifyError, match=match):
        verify.load(path)


def test_one_check_per_server_and_host_onion_via_socks():
    checks = verify.plan_checks(_servers())
    assert [(c.server, c.host, c.via_socks, c.problem) for c in checks] == [
        ("h1", "10.213.7.11", False, None), ("h1", ONION, True, None), ("h2", "10.213.7.12", False, None)]
    assert checks[0].password == "pw1" and checks[2].password is None


def test_entry_whose_fields_contradict_its_address_is_reported():
    s = _servers()[0]
    tampered = publish.PublishedServer(s.host, FP2, s.hosts, s.port, s.password, s.address)
    checks = verify.plan_checks([tampered])
    assert all("fingerprint field" in (c.problem or "") for c in checks)
    bad = publish.PublishedServer("h9", FP, ["x"], 5223, None, "smp://nonsense")
    (c,) = verify.plan_checks([bad])
    assert "does not parse" in c.problem


@pytest.mark.parametrize(
    "exc, kind",
    [(smp.WrongFingerprint("x"), verify.WRONG_FINGERPRINT), (smp.PasswordRefused("AUTH"), verify.PASSWORD_REFUSED),
     (smp.Unreachable("refused"), verify.UNREACHABLE),
     (smp.Unreachable("cannot connect to h:5223: [SSL: WRONG_VERSION_NUMBER] wrong version number"),
      verify.HANDSHAKE_ERROR), (smp.HandshakeError("v"), verify.HANDSHAKE_ERROR),
     (smp.SMPTimeout("t"), verify.TIMEOUT), (smp.ConnectionClosed("c"), verify.PROTOCOL_ERROR),
     (RuntimeError("boom"), verify.PROTOCOL_ERROR)],
)
def test_classify_names_the_failure(exc, kind):
    assert verify.classify(exc)[0] == kind


def test_socks_argument():
    assert verify.socks_url("127.0.0.1:9050") == "socks5h://127.0.0.1:9050"
    assert verify.socks_url("socks5://127.0.0.1:9150") == "socks5h://127.0.0.1:9150"
    assert verify.socks_url(None) is None
    for bad in ("http://127.0.0.1:8080", "127.0.0.1", "127.0.0.1:99999"):
        with pytest.raises(verify.VerifyError, match="--socks"):
            verify.socks_url(bad)


def test_onion_without_socks_is_not_checked_and_fails_the_run(tmp_path, capsys):
    publish.write_published(tmp_path, [publish.server_entry("h1", FP, "pw1", [ONION], [5223])])
    rc = verify.main([str(tmp_path / "servers.json")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "NOT CHECKED" in out and "--socks" in out


def test_table_masks_password_and_shows_latency():
    checks = verify.plan_checks(_servers())
    results = [verify.Result(checks[0], verify.OK, "", 12.3, 5.4, 30.0),
               verify.Result(checks[1], verify.UNREACHABLE, "via socks5h://x: refused"),
               verify.Result(checks[2], verify.WRONG_FINGERPRINT, "CA hash differs")]
    table = verify.render_table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert "ok" in lines[2] and "12 ms" in lines[2] and "5 ms" in lines[2]
    assert "UNREACHABLE" in lines[3] and "socks" in lines[3]
    assert "WRONG FINGERPRINT" in lines[4] and "h2" in lines[4]
    assert "FAILED" in verify.summary(results) and "h1, h2" in verify.summary(results)
    assert verify.summary(results[:1]) == "verify: all 1 addresses work"


def test_bad_file_exits_2(tmp_path, capsys):
    (tmp_path / "servers.json").write_text(json.dumps({"servers": []}))
    assert verify.main([str(tmp_path / "servers.json")]) == 2
    assert "lists no servers" in capsys.readouterr().err


def test_probe_never_puts_the_password_in_a_failure_detail(monkeypatch):
    """Stand-in (named as such): smp.connect is replaced by one that fails with the password in
    its message, since no real server can be made to do that; the masking is what is tested."""
    import asyncio

    async def fail(*a, **k):
        raise smp.HandshakeError("server said pw1 is odd")

    monkeypatch.setattr(smp, "connect", fail)
    check = verify.plan_checks(_servers())[0]
    r = asyncio.run(verify.probe(check, None, 1.0))
    assert r.kind == verify.HANDSHAKE_ERROR and "pw1" not in r.detail and "********" in r.detail
