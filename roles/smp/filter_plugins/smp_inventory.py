"""Filters that hand inventory data to the deploy's own Python code (package ``smpfleet``).

They run on the control machine, in the Python that runs ansible-playbook (the smpfleet venv).
"""
from __future__ import annotations

import re
from typing import Any

# Variables the roles define for themselves; every other smp_* variable is inventory data and
# goes to smpfleet.settings, which reports unknown keys (typos) instead of ignoring them.
_ROLE_OWN = re.compile(r"^smp_(role|relay)_|^smp_publish_(?!dir$)|^smp_tor_(?!extra_config$)")


# The fixed password travels to the modules as its own no_log option, never inside the data.
SECRET_KEYS = ("smp_password",)


def smp_inventory_data(host_vars: Any, with_password: bool = False) -> dict[str, Any]:
    """The smp_* inventory keys of one host (as pyinfra host data), role variables left out, and
    the password too unless ``with_password`` (only for tasks under no_log: a module masks the
    values of its no_log options in everything it returns, so the password cannot be a no_log
    option of a call that must return it)."""
    out = {}
    for key in list(host_vars.keys()):
        if key.startswith("smp_") and not _ROLE_OWN.match(key) and (with_password or key not in SECRET_KEYS):
            out[key] = host_vars[key]
    return out


def smp_inventory_password(host_vars: Any) -> str | None:
    """The host's smp_password (fixed password policy), or None."""
    return host_vars["smp_password"] if "smp_password" in host_vars else None


def smp_bundle(directory: str) -> dict[str, Any]:
    """Wheels and content digest of a relay bundle directory (smpfleet.bundle.from_directory)."""
    from ansible.errors import AnsibleFilterError
    from smpfleet.bundle import BundleError, from_directory

    try:
        b = from_directory(directory)
    except BundleError as e:
        raise AnsibleFilterError(str(e)) from None
    return {"directory": str(b.directory), "digest": b.digest, "wheels": [str(w) for w in b.wheels]}


def smp_publish_entry(keys: dict[str, Any]) -> dict[str, Any]:
    """The smp_publish entry of one host, from its smp_keystore result (with secrets)."""
    return {"host": keys["host"], "fingerprint": keys["fingerprint"], "password": keys.get("password"),
            "hosts": keys["relay_hosts"], "ports": keys["ports"], "publish_dir": keys["publish_dir"]}


def smp_slurped(register: Any) -> dict[str, str]:
    """File name -> base64 content from a registered slurp loop (skipped items left out)."""
    out = {}
    for r in (register or {}).get("results", []) if isinstance(register, dict) else []:
        if "content" in r:
            out[str(r["item"]).rsplit("/", 1)[-1]] = r["content"]
    return out


class FilterModule:
    def filters(self):
        return {"smp_inventory_data": smp_inventory_data, "smp_bundle": smp_bundle,
                "smp_publish_entry": smp_publish_entry, "smp_slurped": smp_slurped,
                "smp_inventory_password": smp_inventory_password}
