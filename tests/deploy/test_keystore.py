"""The key store: identities made once, never replaced, ca.key kept here (optionally encrypted)."""
import json
import stat

import pytest
from smprelay import certs

from smpfleet import keystore
from smpfleet.keystore import KeyStore, KeyStoreError


def mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_ensure_creates_a_complete_identity_with_safe_modes(tmp_path):
    ks = KeyStore(tmp_path / "ks")
    k = ks.ensure("h1", algorithm="ED448", cn="smp1.example.com", onion_mode="single-hop")
    d = tmp_path / "ks" / "h1"
    assert mode(tmp_path / "ks") == 0o700 and mode(d) == 0o700
    for secret in ("ca.key", "server.key", "password", "onion/hs_ed25519_secret_key"):
        assert mode(d / secret) == 0o600, secret
    ca = certs.load_cert_pem(k.ca_crt)
    assert certs.key_algorithm(ca.public_key()) == "ED448"
    assert k.fingerprint == certs.fingerprint(ca) == (d / "fingerprint").read_text().strip()
    srv = certs.load_cert_pem(k.server_crt)
    assert certs.verify_issued_by(srv, ca) and certs.cert_common_name(srv) == "smp1.example.com"
    assert len(k.password) == 44 and k.onion.hostname.endswith(".onion")
    assert b"PRIVATE KEY" in k.server_key and b"ca.key" not in k.server_key


def test_second_ensure_returns_the_same_identity_and_changes_nothing(tmp_path):
    ks = KeyStore(tmp_path)
    a = ks.ensure("h", algorithm="ED25519", cn="a.example", onion_mode="anonymous")
    before = {p: p.read_bytes() for p in (tmp_path / "h").rglob("*") if p.is_file()}
    b = ks.ensure("h", algorithm="ED25519", cn="a.example", onion_mode="anonymous")
    after = {p: p.read_bytes() for p in (tmp_path / "h").rglob("*") if p.is_file()}
    assert a == b and before == after


def test_changed_cn_reissues_online_cert_keeping_fingerprint_and_old_files(tmp_path):
    ks = KeyStore(tmp_path)
    a = ks.ensure("h", algorithm="ED25519", cn="old.example")
    b = ks.ensure("h", algorithm="ED25519", cn="new.example")
    assert a.fingerprint == b.fingerprint and a.server_crt != b.server_crt
    assert certs.cert_common_name(certs.load_cert_pem(b.server_crt)) == "new.example"
    assert len(list((tmp_path / "h").glob("server.crt.*.bak"))) == 1


def test_algorithm_and_onion_mode_cannot_flip(tmp_path):
    ks = KeyStore(tmp_path)
    ks.ensure("h", algorithm="ED448", cn="a", onion_mode="single-hop")
    with pytest.raises(KeyStoreError, match="cannot change algorithm"):
        ks.ensure("h", algorithm="ED25519", cn="a")
    with pytest.raises(KeyStoreError, match="single-hop mode"):
        ks.ensure("h", algorithm="ED448", cn="a", onion_mode="anonymous")


def test_passphrase_encrypts_ca_key_and_is_required_to_sign(tmp_path, monkeypatch):
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, "correct horse")
    ks = KeyStore(tmp_path)
    ks.ensure("h", algorithm="ED25519", cn="a")
    assert (tmp_path / "h" / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")
    monkeypatch.delenv(keystore.PASSPHRASE_ENV)
    ks.ensure("h", algorithm="ED25519", cn="a")  # nothing to sign: no passphrase needed
    with pytest.raises(KeyStoreError, match=keystore.PASSPHRASE_ENV):
        ks.ensure("h", algorithm="ED25519", cn="b")
    monkeypatch.setenv(keystore.PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyStoreError, match="cannot decrypt"):
        ks.ensure("h", algorithm="ED25519", cn="b")


def test_password_policies(tmp_path):
    ks = KeyStore(tmp_path)
    assert ks.ensure("n", algorithm="ED25519", cn="a", password_policy="none").password is None
    assert ks.ensure("f", algorithm="ED25519", cn="a", password_policy="fixed",
                     fixed_password="s3cret").password == "s3cret"
    assert not (tmp_path / "n" / "password").exists()


def test_adopting_a_host_made_identity(tmp_path):
    ca_key, ca = certs.generate_ca("ED25519")
    srv_key, srv = certs.issue_server_cert(ca_key, ca, "h.example")
    host_files = {"ca.key": certs.key_pem(ca_key), "ca.crt": certs.cert_pem(ca),
                  "server.key": certs.key_pem(srv_key), "server.crt": certs.cert_pem(srv)}
    ks = KeyStore(tmp_path)
    assert ks.adopt_ca("h", host_files) == certs.fingerprint(ca)
    k = ks.ensure("h", algorithm="ED25519", cn="h.example")
    assert k.fingerprint == certs.fingerprint(ca) and k.server_crt == certs.cert_pem(srv)
    assert (tmp_path / "h" / "ca.key").read_bytes() == certs.key_pem(ca_key)
    # a different CA on the host than in the store: refuse, change nothing
    other_key, other = certs.generate_ca("ED25519")
    with pytest.raises(KeyStoreError, match="different one"):
        ks.adopt_ca("h", {"ca.key": certs.key_pem(other_key), "ca.crt": certs.cert_pem(other)})
    # a key that does not belong to the certificate
    with pytest.raises(KeyStoreError, match="does not belong"):
        KeyStore(tmp_path / "x").adopt_ca("h", {"ca.key": certs.key_pem(other_key), "ca.crt": certs.cert_pem(ca)})
    assert not (tmp_path / "x" / "h").exists()


def test_cli_ensure_prints_public_facts_only(tmp_path, capsys):
    assert keystore.main(["ensure", str(tmp_path), "h", "--alg", "ED25519", "--cn", "a.example",
                          "--onion", "anonymous"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fingerprint"] == (tmp_path / "h" / "fingerprint").read_text().strip()
    assert out["onion_hostname"] == (tmp_path / "h" / "onion" / "hostname").read_text().strip()
    assert out["has_password"] is True
    assert (tmp_path / "h" / "password").read_text().strip() not in json.dumps(out)
    assert keystore.main(["ensure", str(tmp_path), "h", "--alg", "ED448", "--cn", "a.example"]) == 1
    assert "cannot change algorithm" in capsys.readouterr().err
