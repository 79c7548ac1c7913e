"""Fleet-level preparation on the operator's machine, before any host is changed.

``fleet_settings()`` validates the data of every inventory host at the first call (pyinfra runs
deploy.py once per host; the result is cached), so a broken inventory stops the run before the
first operation. ``host_identity()`` then takes over identities found on the host (a ``ca.key``
left by a manual ``smp-server init``, onion keys made by tor there) and completes the host's
entry in the key store.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

from pyinfra import host as current_host
from pyinfra import inventory
from pyinfra.facts.files import File, Sha256File
from smprelay import certs

from . import render
from .keystore import HostKeys, KeyStore, KeyStoreError
from .settings import InventoryError, RelaySettings, parse_fleet

_cache: dict[str, object] = {}


class DeployError(Exception):
    """A problem that stops the deploy before anything changes; the message says how to fix it."""


def inventory_dir(argv: list[str] | None = None) -> Path:
    """The folder of the inventory file given to pyinfra (default home of key store and output)."""
    argv = sys.argv if argv is None else argv
    files = [a for a in argv[1:] if a.endswith(".py") and Path(a).is_file()]
    return Path(files[0]).resolve().parent if len(files) >= 2 else Path.cwd()


def fleet_settings() -> dict[str, RelaySettings]:
    """Validated settings of every inventory host (computed once per run)."""
    if "fleet" not in _cache:
        hosts = {h.name: h.data.dict() for h in inventory}
        try:
            _cache["fleet"] = parse_fleet(hosts, inventory_dir())
        except InventoryError as e:
            raise DeployError(str(e)) from None
    return _cache["fleet"]  # type: ignore[return-value]


def _download(host, remote: str) -> bytes:
    buf = io.BytesIO()
    if not host.get_file(remote, buf):
        raise DeployError(f"host {host.name!r}: could not download {remote}")
    return buf.getvalue()


def host_identity(settings: RelaySettings, host=None) -> HostKeys:
    """Adopt what the host already has, then ensure the key store holds the whole identity."""
    host = host or current_host
    if settings.keystore is None:
        raise DeployError(f"host {settings.name!r}: no key store directory (smp_keystore)")
    store = KeyStore(settings.keystore)
    cfg = render.CONFIG_DIR
    try:
        if host.get_fact(File, path=f"{cfg}/ca.key"):
            files = {"ca.key": _download(host, f"{cfg}/ca.key"), "ca.crt": _download(host, f"{cfg}/ca.crt")}
            for name in ("server.key", "server.crt"):
                if host.get_fact(File, path=f"{cfg}/{name}"):
                    files[name] = _download(host, f"{cfg}/{name}")
            store.adopt_ca(settings.name, files)
        hs = render.hs_dir(settings)
        if settings.onion and not store.has_onion(settings.name) and host.get_fact(
            File, path=f"{hs}/hs_ed25519_secret_key"
        ):
            files = {n: _download(host, f"{hs}/{n}") for n in
                     ("hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname")}
            store.adopt_onion(settings.name, files, "single-hop" if settings.single_hop else "anonymous")
        keys = store.ensure(
            settings.name,
            algorithm=settings.sign_algorithm,
            cn=settings.cert_cn,
            password_policy=settings.password_policy,
            fixed_password=settings.password,
            onion_mode=("single-hop" if settings.single_hop else "anonymous") if settings.onion else None,
            control_port=settings.control_port is not None,
        )
    except KeyStoreError as e:
        raise DeployError(str(e)) from None
    _refuse_replacing_identity(host, settings, keys)
    return keys


def _refuse_replacing_identity(host, settings: RelaySettings, keys: HostKeys) -> None:
    """Never replace an identity found on a host by surprise: a different CA certificate (whose
    key is not on the host to adopt) or different onion keys mean the host is another relay."""
    cfg = render.CONFIG_DIR
    if host.get_fact(File, path=f"{cfg}/ca.crt") and \
            host.get_fact(Sha256File, path=f"{cfg}/ca.crt") != hashlib.sha256(keys.ca_crt).hexdigest():
        theirs = certs.fingerprint(certs.load_cert_pem(_download(host, f"{cfg}/ca.crt")))
        if theirs != keys.fingerprint:
            raise DeployError(
                f"host {settings.name!r} already has another identity ({cfg}/ca.crt, fingerprint "
                f"{theirs}) than the key store ({keys.fingerprint}), and its ca.key is not there to "
                f"adopt. Nothing was changed. To keep the host's identity, put its ca.key back in {cfg}; "
                f"to replace it, remove {cfg}/ca.crt on the host."
            )
    if keys.onion is not None:
        secret = f"{render.hs_dir(settings)}/hs_ed25519_secret_key"
        if host.get_fact(File, path=secret) and host.get_fact(Sha256File, path=secret) != \
                hashlib.sha256(keys.onion.secret_key_file).hexdigest():
            raise DeployError(
                f"host {settings.name!r} has other onion keys in {render.hs_dir(settings)} than the key "
                f"store ({keys.onion.hostname}). Nothing was changed. Move the host's keys away to use the "
                f"key store's, or move {keys.directory / 'onion'} away to adopt the host's."
            )
