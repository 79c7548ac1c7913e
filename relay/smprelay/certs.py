"""Server identity: the offline CA certificate, the online TLS certificate and the fingerprint.

Made in-process with ``cryptography`` to the same shape as upstream's OpenSSL recipe
(reference §3.1): CA ``CN=SMP server CA, O=SimpleX`` with critical ``CA:true``; online
certificate ``CN=<fqdn or ip>`` signed by the CA; both Ed448 or Ed25519; keys PKCS#8 PEM.
The fingerprint (the key hash in every server address) is base64url(SHA-256(DER(ca.crt))),
so the online certificate can be replaced without changing any address.

The deploy code imports this module on the operator's machine, so everything here except
the small file helpers at the bottom is pure.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SignAlgorithm = Literal["ED448", "ED25519"]
SIGN_ALGORITHMS: tuple[str, ...] = ("ED448", "ED25519")
DEFAULT_SIGN_ALGORITHM: SignAlgorithm = "ED448"
PrivateKey = Union[ed448.Ed448PrivateKey, ed25519.Ed25519PrivateKey]

VALIDITY_DAYS = 999999  # upstream `-days 999999`
CA_CN = "SMP server CA"
CA_O = "SimpleX"


class CertError(Exception):
    """A certificate or key that cannot be used; the message says which file and why."""


def new_private_key(alg: str) -> PrivateKey:
    alg = alg.upper()
    if alg == "ED448":
        return ed448.Ed448PrivateKey.generate()
    if alg == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise CertError(f"unsupported sign algorithm {alg!r}: use ED448 or ED25519")


def key_algorithm(key: object) -> SignAlgorithm:
    """ED448/ED25519 of a private or public key (for `cert` reusing the current algorithm)."""
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "ED448"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ED25519"
    raise CertError(f"unsupported key type {type(key).__name__}: SMP needs Ed25519 or Ed448")


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    return now, now + dt.timedelta(days=VALIDITY_DAYS)


def ca_name() -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, CA_CN), x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_O)]
    )


def generate_ca(alg: str = DEFAULT_SIGN_ALGORITHM) -> tuple[PrivateKey, x509.Certificate]:
    """A new offline CA key and its self-signed certificate (the server identity)."""
    key = new_private_key(alg)
    not_before, not_after = _validity()
    pub = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name())
        .issuer_name(ca_name())
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pub), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm=None)
    )
    return key, cert


def issue_server_cert(
    ca_key: PrivateKey, ca_cert: x509.Certificate, cn: str, alg: str | None = None
) -> tuple[PrivateKey, x509.Certificate]:
    """A new online key and certificate ``CN=<cn>`` signed by the CA (``alg`` defaults to the CA's)."""
    if not cn:
        raise CertError("the online certificate needs a common name (server FQDN or IP)")
    if public_raw(ca_key.public_key()) != public_raw(ca_cert.public_key()):
        raise CertError("the CA private key does not belong to the CA certificate (ca.key / ca.crt mismatch)")
    key = new_private_key(alg or key_algorithm(ca_key))
    not_before, not_after = _validity()
    pub = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, algorithm=None)
    )
    return key, cert


def public_raw(pub: object) -> bytes:
    """Raw public key bytes, to compare a key with a certificate."""
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)  # type: ignore[attr-defined]


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint_bytes(ca_cert: x509.Certificate) -> bytes:
    """SHA-256 of the whole DER CA certificate: the raw 32-byte key hash."""
    return hashlib.sha256(ca_cert.public_bytes(serialization.Encoding.DER)).digest()


def fingerprint(ca_cert: x509.Certificate) -> str:
    """The key hash as it appears in addresses and the ``fingerprint`` file (base64url, padded)."""
    return base64.urlsafe_b64encode(fingerprint_bytes(ca_cert)).decode("ascii")


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (``-----BEGIN PRIVATE KEY-----``), as ``openssl genpkey`` writes."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert_pem(data: bytes, where: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM file (upstream also uses the first)."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertError(f"{where}: not a PEM certificate ({e})") from None
    return certs[0]


def load_key_pem(data: bytes, where: str = "private key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise CertError(f"{where}: not an unencrypted PEM private key ({e})") from None
    key_algorithm(key)
    return key  # type: ignore[return-value]


def cert_common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def verify_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``cert`` names ``ca_cert`` as issuer and carries its valid signature."""
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


# -- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerCredentialFiles:
    """Names of the credential files in the config directory (upstream ``defaultX509Config``)."""

    ca_key: str = "ca.key"
    ca_crt: str = "ca.crt"
    server_key: str = "server.key"
    server_crt: str = "server.crt"
    fingerprint: str = "fingerprint"


FILES = ServerCredentialFiles()


def write_file_atomic(path: Path, data: bytes, mode: int = 0o644, *, exclusive: bool = False) -> None:
    """Write via a temporary file in the same directory and rename; ``exclusive`` refuses to replace.

    The temporary file gets ``mode`` before any byte is written, so a key is never world-readable.
    """
    path = Path(path)
    if exclusive and path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if the target appeared meanwhile
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fingerprint_file_content(ca_cert: x509.Certificate) -> bytes:
    return (fingerprint(ca_cert) + "\n").encode("ascii")


def read_fingerprint_file(path: Path) -> str:
    """First line of the ``fingerprint`` file, stripped."""
    text = Path(path).read_text(encoding="ascii", errors="replace")
    return text.splitlines()[0].strip() if text.strip() else ""


def fingerprint_matches(stored: str, ca_cert: x509.Certificate) -> bool:
    """Compare a stored fingerprint (padded or not) with the CA certificate's."""
    try:
        raw = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    except ValueError:  # binascii.Error is a ValueError
        return False
    return raw == fingerprint_bytes(ca_cert)
