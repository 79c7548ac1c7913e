#!/usr/bin/python
"""Complete one host's identity in the operator-side key store (smpfleet.keystore)."""
from __future__ import annotations

DOCUMENTATION = r"""
module: smp_keystore
short_description: Ensure a relay's identity in the smpfleet key store, on the control machine
description:
  - Calls C(smpfleet.keystore.KeyStore.ensure), the code the pyinfra deploy uses, so both tools
    share one key store layout - CA, online certificate, password and onion keys are never made
    twice. Optionally adopts a CA or onion keys found on the host first. Returns the host's
    public facts and the variables of the shared templates.
  - Run with C(delegate_to: localhost) and the Python that can import smpfleet.
options:
  host:
    description: Inventory host name (its key store directory).
    type: str
    required: true
  data:
    description: The host's smp_* variables.
    type: dict
    required: true
  password:
    description: The host's smp_password (fixed password policy).
    type: str
  base_dir:
    description: Directory relative smp_keystore / smp_publish_dir paths are relative to.
    type: path
    required: true
  secrets:
    description: Also return the INI variables with the passwords (use with no_log).
    type: bool
    default: false
  adopt_ca:
    description: Base64 contents of ca.key, ca.crt (and server.key, server.crt) found on the host.
    type: dict
  adopt_onion:
    description: Base64 contents of the onion key files found on the host.
    type: dict
"""

RETURN = r"""
fingerprint:
  description: CA fingerprint (base64url SHA-256 of the CA certificate).
  type: str
  returned: success
"""

import atexit
import base64
import shutil
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def _snapshot(d: Path) -> dict[str, int]:
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "data": {"type": "dict", "required": True},
            "password": {"type": "str", "no_log": True},
            "base_dir": {"type": "path", "required": True},
            "secrets": {"type": "bool", "default": False},
            "adopt_ca": {"type": "dict", "no_log": True},
            "adopt_onion": {"type": "dict", "no_log": True},
        },
        supports_check_mode=True,
    )
    try:
        from smpfleet import render
        from smpfleet.keystore import KeyStore, KeyStoreError
        from smpfleet.settings import InventoryError, parse_host
        from smprelay.certs import CertError
    except ImportError as e:
        module.fail_json(msg=f"cannot import smpfleet ({e}): run ansible-playbook from the smpfleet venv")
    p = module.params
    name = p["host"]
    data = dict(p["data"])
    if p["password"] is not None:
        data["smp_password"] = p["password"]
    settings, problems = parse_host(name, data, Path(p["base_dir"]))
    if problems:
        module.fail_json(msg=str(InventoryError(problems)))
    store = KeyStore(settings.keystore)
    real_dir = store.host_dir(name)
    if module.check_mode:
        # Nothing may change: complete a copy of the host's directory and report the difference.
        scratch = Path(tempfile.mkdtemp(prefix="smp-keystore-check-"))
        atexit.register(shutil.rmtree, scratch, True)
        if store.host_dir(name).exists():
            shutil.copytree(store.host_dir(name), scratch / name)
        store = KeyStore(scratch)
    onion_mode = ("single-hop" if settings.single_hop else "anonymous") if settings.onion else None
    before = _snapshot(store.host_dir(name))
    try:
        if p["adopt_ca"]:
            store.adopt_ca(name, {k: base64.b64decode(v) for k, v in p["adopt_ca"].items()})
        if p["adopt_onion"] and onion_mode and not store.has_onion(name):
            store.adopt_onion(name, {k: base64.b64decode(v) for k, v in p["adopt_onion"].items()},
                              onion_mode)
        keys = store.ensure(
            name, algorithm=settings.sign_algorithm, cn=settings.cert_cn,
            password_policy=settings.password_policy, fixed_password=settings.password,
            onion_mode=onion_mode, control_port=settings.control_port is not None,
        )
    except (KeyStoreError, CertError) as e:
        module.fail_json(msg=f"host {name!r}: {e}")
    onion_hostname = keys.onion.hostname if keys.onion else None
    result = {
        "changed": _snapshot(store.host_dir(name)) != before,
        "host": name,
        "directory": str(real_dir),  # in check mode too: the scratch copy is gone after the call
        "fingerprint": keys.fingerprint,
        "onion": settings.onion,
        "onion_hostname": onion_hostname,
        "onion_files": sorted(keys.onion.files) if keys.onion else [],
        "hs_dir": render.hs_dir(settings),
        "relay_hosts": render.relay_hosts(settings, onion_hostname),
        "ports": list(settings.ports),
        "publish_dir": str(settings.publish_dir),
        "unit": render.unit_vars(settings),
        "torrc": render.torrc_vars(settings) if settings.onion else None,
    }
    if p["secrets"]:
        result["password"] = keys.password
        result["ini"] = render.ini_vars(settings, password=keys.password, onion_hostname=onion_hostname,
                                        control_passwords=keys.control_passwords)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
