"""Certificates and fingerprint: upstream shape, upstream vectors, safe key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smprelay import certs

DATA = Path(__file__).parent / "data" / "upstream-fixtures"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("ca.crt", "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="),  # upstream testKeyHash (Ed448)
        ("ed25519/ca.crt", "evk6yvqIaOtOVWfFhXQTdQRtlKeDy_4MXsJDYh2agys="),
    ],
)
def test_fingerprint_matches_upstream_vectors(path: str, expected: str) -> None:
    ca = certs.load_cert_pem((DATA / path).read_bytes())
    assert certs.fingerprint(ca) == expected
    assert certs.fingerprint_matches(expected, ca)
    assert certs.fingerprint_matches(expected.rstrip("="), ca)  # unpadded is accepted, as upstream
    other = "A" + expected[1:] if expected[0] != "A" else "B" + expected[1:]
    assert not certs.fingerprint_matches(other, ca)
    assert not certs.fingerprint_matches("", ca)


def test_upstream_fixture_chain_verifies() -> None:
    ca = certs.load_cert_pem((DATA / "ca.crt").read_bytes())
    srv = certs.load_cert_pem((DATA / "server.crt").read_bytes())
    key = certs.load_key_pem((DATA / "server.key").read_bytes())
    assert certs.verify_issued_by(srv, ca)
    assert certs.key_algorithm(key) == "ED448"
    assert certs.public_raw(key.public_key()) == certs.public_raw(srv.public_key())


@pytest.mark.parametrize("alg, cls", [("ED448", ed448.Ed448PrivateKey), ("ED25519", ed25519.Ed25519PrivateKey)])
def test_generated_pair_has_upstream_shape(alg: str, cls: type) -> None:
    ca_key, ca = certs.generate_ca(alg)
    key, srv = certs.issue_server_cert(ca_key, ca, "smp.example.com")
    assert isinstance(ca_key, cls) and isinstance(key, cls)  # server follows the CA's algorithm
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SMP server CA"
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "SimpleX"
    assert ca.issuer == ca.subject
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.version == x509.Version.v3 and srv.version == x509.Version.v3
    assert certs.cert_common_name(srv) == "smp.example.com"
    assert srv.issuer == ca.subject
    assert not srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ExtendedKeyUsageOID.SERVER_AUTH in srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert certs.verify_issued_by(srv, ca)
    assert (srv.not_valid_after_utc - srv.not_valid_before_utc).days == certs.VALIDITY_DAYS
    assert certs.key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert certs.fingerprint_bytes(ca) != certs.fingerprint_bytes(srv)
    assert len(certs.fingerprint(ca)) == 44 and certs.fingerprint(ca).endswith("=")


def test_default_algorithm_is_ed448() -> None:
    key, _ = certs.generate_ca()
    assert isinstance(key, ed448.Ed448PrivateKey)


def test_server_cert_can_use_other_algorithm_and_reload() -> None:
    ca_key, ca = certs.generate_ca("ED448")
    key, srv = certs.issue_server_cert(ca_key, ca, "10.0.0.1", "ED25519")
    assert certs.key_algorithm(key) == "ED25519"
    again = certs.load_cert_pem(certs.cert_pem(srv))
    assert certs.verify_issued_by(again, ca)
    assert certs.key_algorithm(certs.load_key_pem(certs.key_pem(key))) == "ED25519"


def test_wrong_ca_key_is_refused_and_foreign_cert_not_verified() -> None:
    ca_key, ca = certs.generate_ca("ED25519")
    other_key, other = certs.generate_ca("ED25519")
    with pytest.raises(certs.CertError, match="does not belong"):
        certs.issue_server_cert(other_key, ca, "x")
    _, srv = certs.issue_server_cert(other_key, other, "x")
    assert not certs.verify_issued_by(srv, ca)


@pytest.mark.parametrize("bad", ["ED25519X", "RSA", ""])
def test_unknown_algorithm(bad: str) -> None:
    with pytest.raises(certs.CertError, match="ED448 or ED25519"):
        certs.generate_ca(bad)


def test_garbage_pem_is_a_clear_error() -> None:
    with pytest.raises(certs.CertError, match="ca.crt: not a PEM certificate"):
        certs.load_cert_pem(b"hello", "ca.crt")
    with pytest.raises(certs.CertError, match="server.key: not an unencrypted PEM private key"):
        certs.load_key_pem(b"hello", "server.key")


def test_write_file_atomic_modes_and_exclusive(tmp_path: Path) -> None:
    p = tmp_path / "ca.key"
    certs.write_file_atomic(p, b"secret", 0o600, exclusive=True)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and p.read_bytes() == b"secret"
    with pytest.raises(FileExistsError):
        certs.write_file_atomic(p, b"other", 0o600, exclusive=True)
    assert p.read_bytes() == b"secret"
    certs.write_file_atomic(p, b"replaced", 0o600)
    assert p.read_bytes() == b"replaced"
    assert sorted(os.listdir(tmp_path)) == ["ca.key"]  # no temporary files left behind


def test_fingerprint_file_round_trip(tmp_path: Path) -> None:
    _, ca = certs.generate_ca()
    p = tmp_path / "fingerprint"
    p.write_bytes(certs.fingerprint_file_content(ca))
    assert p.read_text().endswith("\n")
    assert certs.read_fingerprint_file(p) == certs.fingerprint(ca)
