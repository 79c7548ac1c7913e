"""The operator-side key store: each relay's identity lives here, not on the relay.

Layout (one directory per inventory host; directories 0700, secrets 0600)::

    <keystore>/<host>/ca.key            offline CA key (PKCS#8 PEM; encrypted PEM with a passphrase)
    <keystore>/<host>/ca.crt            CA certificate: its SHA-256 is the fingerprint
    <keystore>/<host>/server.key        online TLS key (0600; copied to the host)
    <keystore>/<host>/server.crt        online certificate, signed here by ca.key
    <keystore>/<host>/fingerprint       base64url(SHA-256(DER(ca.crt))) + newline
    <keystore>/<host>/password          random create_password (policy "random" only)
    <keystore>/<host>/control-passwords admin and user control-port passwords (if used)
    <keystore>/<host>/onion/{hs_ed25519_secret_key,hs_ed25519_public_key,hostname,mode}

The online key is made and signed here rather than from a CSR made on the host: the deploy is
then a single push (no round trip to fetch a CSR and push the certificate back), and
re-deploying a reinstalled host needs nothing from it. The online key exists on the operator
machine too; it is the key that lives on the host anyway.

Nothing here is ever overwritten: files are created exclusively; a changed certificate CN
re-issues the online certificate and keeps the old one as ``server.*.<time>.bak``. With a
passphrase (env ``SMPFLEET_KEYSTORE_PASSPHRASE``) ``ca.key`` is stored encrypted; it is only
needed to sign a new online certificate.

CLI for the Ansible role (run on the control machine)::

    python -m smpfleet.keystore ensure <dir> <host> --alg ED448 --cn smp1.example.com \
        [--onion single-hop|anonymous] [--password-policy random|none|fixed]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from smprelay import certs

from . import onionkeys

PASSPHRASE_ENV = "SMPFLEET_KEYSTORE_PASSPHRASE"
ONION_MODES = ("single-hop", "anonymous")


class KeyStoreError(Exception):
    """A key store problem the operator must resolve; the message says what and how."""


@dataclass(frozen=True)
class HostKeys:
    """What the deploy pushes to one host (never ca.key) plus what it publishes."""

    host: str
    directory: Path
    algorithm: str
    fingerprint: str
    ca_crt: bytes
    server_crt: bytes
    server_key: bytes  # unencrypted PEM, as the relay reads it
    password: str | None
    control_passwords: tuple[str, str] | None
    onion: onionkeys.OnionKeys | None
    onion_mode: str | None


def random_password() -> str:
    """Like upstream's random password: base64url of 32 random bytes (44 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _create(path: Path, data: bytes, mode: int = 0o600) -> None:
    certs.write_file_atomic(path, data, mode, exclusive=True)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _ca_key_pem(key: certs.PrivateKey) -> bytes:
    pw = _passphrase()
    enc = serialization.BestAvailableEncryption(pw) if pw else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _load_ca_key(path: Path) -> certs.PrivateKey:
    data = path.read_bytes()
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    pw = _passphrase()
    if encrypted and not pw:
        raise KeyStoreError(f"{path} is encrypted: set {PASSPHRASE_ENV} to its passphrase")
    try:
        key = serialization.load_pem_private_key(data, password=pw if encrypted else None)
    except ValueError as e:
        raise KeyStoreError(f"{path}: cannot decrypt or read the CA key ({e}); check "
                            f"{PASSPHRASE_ENV}") from None
    certs.key_algorithm(key)
    return key  # type: ignore[return-value]


class KeyStore:
    """A key store directory on the operator's machine."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def host_dir(self, host: str) -> Path:
        if not host or "/" in host or host in (".", ".."):
            raise KeyStoreError(f"{host!r} cannot name a key store directory")
        return self.root / host

    # -- identity ------------------------------------------------------------------------

    def ensure(
        self,
        host: str,
        *,
        algorithm: str,
        cn: str,
        password_policy: str = "random",
        fixed_password: str | None = None,
        onion_mode: str | None = None,
        control_port: bool = False,
    ) -> HostKeys:
        """Create what is missing for ``host`` and return its keys; never replace an identity."""
        _mkdir(self.root)
        d = self.host_dir(host)
        _mkdir(d)
        ca_key_path, ca_crt_path = d / "ca.key", d / "ca.crt"
        if ca_crt_path.exists():
            ca_crt = certs.load_cert_pem(ca_crt_path.read_bytes(), str(ca_crt_path))
            have = certs.key_algorithm(ca_crt.public_key())
            if have != algorithm:
                raise KeyStoreError(
                    f"host {host!r}: the key store CA ({ca_crt_path}) is {have} but the inventory "
                    f"asks for {algorithm}; an identity cannot change algorithm without changing "
                    f"its fingerprint. Set smp_sign_algorithm: {have}, or move {d} away to make a "
                    "new identity."
                )
        else:
            if ca_key_path.exists():
                raise KeyStoreError(f"{ca_key_path} exists without ca.crt; restore ca.crt or move "
                                    "the directory away")
            ca_key, ca_crt = certs.generate_ca(algorithm)
            _create(ca_key_path, _ca_key_pem(ca_key))
            _create(ca_crt_path, certs.cert_pem(ca_crt), 0o644)
        fp = certs.fingerprint(ca_crt)
        fp_path = d / "fingerprint"
        if fp_path.exists():
            if not certs.fingerprint_matches(certs.read_fingerprint_file(fp_path), ca_crt):
                raise KeyStoreError(f"{fp_path} does not match {ca_crt_path}; the key store is "
                                    "inconsistent, restore it from backup")
        else:
            _create(fp_path, certs.fingerprint_file_content(ca_crt), 0o644)

        self._ensure_server_cert(d, ca_crt, cn, algorithm)

        password: str | None = None
        if password_policy == "random":
            pw_path = d / "password"
            if not pw_path.exists():
                _create(pw_path, (random_password() + "\n").encode())
            password = pw_path.read_text().strip()
        elif password_policy == "fixed":
            password = fixed_password
        elif password_policy != "none":
            raise KeyStoreError(f"unknown password policy {password_policy!r}")

        control = None
        if control_port:
            cp_path = d / "control-passwords"
            if not cp_path.exists():
                _create(cp_path, f"{random_password()}\n{random_password()}\n".encode())
            admin, user = cp_path.read_text().split()[:2]
            control = (admin, user)

        onion = self._ensure_onion(host, d / "onion", onion_mode) if onion_mode else None
        return HostKeys(
            host=host, directory=d, algorithm=algorithm, fingerprint=fp,
            ca_crt=ca_crt_path.read_bytes(), server_crt=(d / "server.crt").read_bytes(),
            server_key=(d / "server.key").read_bytes(), password=password,
            control_passwords=control, onion=onion, onion_mode=onion_mode,
        )

    def _ensure_server_cert(self, d: Path, ca_crt, cn: str, algorithm: str) -> None:
        key_path, crt_path = d / "server.key", d / "server.crt"
        if crt_path.exists() and key_path.exists():
            crt = certs.load_cert_pem(crt_path.read_bytes(), str(crt_path))
            key = certs.load_key_pem(key_path.read_bytes(), str(key_path))
            ok = (
                certs.verify_issued_by(crt, ca_crt)
                and certs.cert_common_name(crt) == cn
                and key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                == crt.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            )
            if ok:
                return
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            os.replace(crt_path, d / f"server.crt.{stamp}.bak")
            os.replace(key_path, d / f"server.key.{stamp}.bak")
        elif crt_path.exists() or key_path.exists():
            raise KeyStoreError(f"{d}: only one of server.key / server.crt exists; move the "
                                "other away to issue a new online certificate")
        ca_key_path = d / "ca.key"
        if not ca_key_path.exists():
            raise KeyStoreError(f"{ca_key_path} is missing: a new online certificate (CN {cn}) "
                                "needs the CA key; restore it from your offline backup")
        ca_key = _load_ca_key(ca_key_path)
        key, crt = certs.issue_server_cert(ca_key, ca_crt, cn, algorithm)
        _create(key_path, certs.key_pem(key))
        _create(crt_path, certs.cert_pem(crt), 0o644)

    def _ensure_onion(self, host: str, d: Path, mode: str) -> onionkeys.OnionKeys:
        if mode not in ONION_MODES:
            raise KeyStoreError(f"unknown onion mode {mode!r}")
        mode_path = d / "mode"
        if (d / "hs_ed25519_secret_key").exists():
            keys = self.load_onion(d)
            have = mode_path.read_text().strip() if mode_path.exists() else mode
            if have != mode:
                raise KeyStoreError(
                    f"host {host!r}: the onion key in {d} was used in {have} mode and tor cannot "
                    f"switch it to {mode} (the key is marked). Keep the relay's public/onion-only "
                    f"setting, or move {d} away to get a new .onion address."
                )
            if not mode_path.exists():
                _create(mode_path, (mode + "\n").encode(), 0o644)
            return keys
        _mkdir(d)
        keys = onionkeys.generate()
        self.store_onion(d, keys, mode)
        return keys

    @staticmethod
    def load_onion(d: Path) -> onionkeys.OnionKeys:
        try:
            return onionkeys.parse_files(
                (d / "hs_ed25519_secret_key").read_bytes(),
                (d / "hs_ed25519_public_key").read_bytes(),
                (d / "hostname").read_text(),
            )
        except (OSError, ValueError) as e:
            raise KeyStoreError(f"{d}: onion keys unreadable or inconsistent ({e})") from None

    @staticmethod
    def store_onion(d: Path, keys: onionkeys.OnionKeys, mode: str) -> None:
        _mkdir(d)
        for name, data in keys.files.items():
            _create(d / name, data, 0o600 if "secret" in name else 0o644)
        _create(d / "mode", (mode + "\n").encode(), 0o644)

    # -- adoption of identities found on hosts --------------------------------------------

    def has_identity(self, host: str) -> bool:
        return (self.host_dir(host) / "ca.crt").exists()

    def has_onion(self, host: str) -> bool:
        return (self.host_dir(host) / "onion" / "hs_ed25519_secret_key").exists()

    def adopt_ca(self, host: str, files: dict[str, bytes]) -> str:
        """Take over an identity made on the host by ``smp-server init``.

        ``files`` holds the host's ``ca.key``, ``ca.crt`` and, if present, ``server.key`` and
        ``server.crt``. The copies are verified (the key belongs to the certificate, the
        online certificate was issued by it) and written; the caller removes ``ca.key`` from
        the host only after this returns. Returns the fingerprint.
        """
        d = self.host_dir(host)
        try:
            ca_key = serialization.load_pem_private_key(files["ca.key"], password=None)
            ca_crt = certs.load_cert_pem(files["ca.crt"], f"{host}:ca.crt")
        except (KeyError, ValueError, TypeError, certs.CertError) as e:
            raise KeyStoreError(f"host {host!r}: cannot adopt its ca.key/ca.crt ({e})") from None
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        if ca_key.public_key().public_bytes(*raw) != ca_crt.public_key().public_bytes(*raw):
            raise KeyStoreError(f"host {host!r}: its ca.key does not belong to its ca.crt; "
                                "nothing was adopted, fix the host by hand")
        fp = certs.fingerprint(ca_crt)
        if (d / "ca.crt").exists():
            mine = certs.load_cert_pem((d / "ca.crt").read_bytes())
            if certs.fingerprint(mine) != fp:
                raise KeyStoreError(
                    f"host {host!r} has its own CA ({fp}) but the key store already holds a "
                    f"different one ({certs.fingerprint(mine)}) in {d}. Decide which identity "
                    "to keep: move the key store directory away to adopt the host's."
                )
            if not (d / "ca.key").exists():
                _create(d / "ca.key", _ca_key_pem(ca_key))
            return fp
        _mkdir(self.root)
        _mkdir(d)
        _create(d / "ca.key", _ca_key_pem(ca_key))
        _create(d / "ca.crt", certs.cert_pem(ca_crt), 0o644)
        _create(d / "fingerprint", certs.fingerprint_file_content(ca_crt), 0o644)
        if "server.crt" in files and "server.key" in files:
            crt = certs.load_cert_pem(files["server.crt"])
            if certs.verify_issued_by(crt, ca_crt):
                _create(d / "server.key", files["server.key"])
                _create(d / "server.crt", files["server.crt"], 0o644)
        # Verify the copy before anyone deletes the original.
        copy = _load_ca_key(d / "ca.key")
        if copy.public_key().public_bytes(*raw) != ca_crt.public_key().public_bytes(*raw):
            raise KeyStoreError(f"{d / 'ca.key'}: the stored copy does not verify")
        return fp

    def adopt_onion(self, host: str, files: dict[str, bytes], mode: str) -> str:
        """Take over onion keys found on the host (made by tor there); returns the hostname."""
        d = self.host_dir(host) / "onion"
        try:
            keys = onionkeys.parse_files(
                files["hs_ed25519_secret_key"], files["hs_ed25519_public_key"],
                files["hostname"].decode(),
            )
        except (KeyError, ValueError) as e:
            raise KeyStoreError(f"host {host!r}: cannot adopt its onion keys ({e})") from None
        _mkdir(self.host_dir(host))
        self.store_onion(d, keys, mode)
        if self.load_onion(d).hostname != keys.hostname:
            raise KeyStoreError(f"{d}: the stored onion keys do not verify")
        return keys.hostname


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smpfleet.keystore", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ensure", help="create what is missing for a host; print its public facts as JSON")
    e.add_argument("directory")
    e.add_argument("host")
    e.add_argument("--alg", default="ED448", choices=certs.SIGN_ALGORITHMS)
    e.add_argument("--cn", required=True, help="CN of the online certificate (FQDN or IP)")
    e.add_argument("--password-policy", default="random", choices=("random", "none", "fixed"))
    e.add_argument("--password-env", default="SMPFLEET_FIXED_PASSWORD",
                   help="environment variable holding the fixed password (never on the command line)")
    e.add_argument("--onion", choices=ONION_MODES)
    e.add_argument("--control-port", action="store_true")
    args = p.parse_args(argv)
    fixed = os.environ.get(args.password_env) if args.password_policy == "fixed" else None
    if args.password_policy == "fixed" and not fixed:
        print(f"error: policy 'fixed' needs the password in ${args.password_env}", file=sys.stderr)
        return 2
    try:
        keys = KeyStore(Path(args.directory)).ensure(
            args.host, algorithm=args.alg, cn=args.cn, password_policy=args.password_policy,
            fixed_password=fixed, onion_mode=args.onion, control_port=args.control_port,
        )
    except (KeyStoreError, certs.CertError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({
        "host": keys.host,
        "directory": str(keys.directory),
        "algorithm": keys.algorithm,
        "fingerprint": keys.fingerprint,
        "onion_hostname": keys.onion.hostname if keys.onion else None,
        "has_password": keys.password is not None,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
