"""Deploy settings for the local testbed hosts (merged by the testbed's generated inventory).

h1: public+onion relay, ED448, random password, daily stats.
h2: onion-only relay (anonymous onion service), fixed password.
h3: public relay with ED25519, no password, no onion.
The testbed's "public" names are the hosts' bridge addresses; the key store and published files
go next to this file unless SMPFLEET_KEYSTORE / SMPFLEET_PUBLISH_DIR say otherwise.
"""
import json
import os
import pathlib

_here = pathlib.Path(__file__).resolve().parent
_tor_extra = [line for line in os.environ.get("SMPFLEET_TOR_EXTRA", "").split("\n") if line.strip()]

data = {
    "smp_keystore": os.environ.get("SMPFLEET_KEYSTORE", str(_here / "testbed" / "keystore")),
    "smp_publish_dir": os.environ.get("SMPFLEET_PUBLISH_DIR", str(_here / "testbed" / "published")),
    "smp_ports": [5223, 443],
}


def _addresses() -> dict:
    """Host name -> bridge address of the running testbed instance ($SMPFLEET_TESTBED, default tb)."""
    state = pathlib.Path(os.environ.get("SMPFLEET_TESTBED_STATE", "/tmp/smpfleet-testbed"))
    instance = state / os.environ.get("SMPFLEET_TESTBED", "tb") / "instance.json"
    try:
        return {h["name"]: h["address"] for h in json.loads(instance.read_text())["hosts"]}
    except (OSError, ValueError, KeyError):
        return {}


_addr = _addresses()
host_data = {
    # tor on the onion hosts joins the private test network through these lines (SMPFLEET_TOR_EXTRA)
    "h1": {"smp_fqdn": _addr.get("h1"), "smp_daily_stats": True, "smp_tor_extra_config": _tor_extra},
    "h2": {"smp_onion_only": True, "smp_password_policy": "fixed", "smp_password": "testbed-h2-secret",
           "smp_tor_extra_config": _tor_extra},
    "h3": {"smp_fqdn": _addr.get("h3"), "smp_sign_algorithm": "ED25519", "smp_password_policy": "none",
           "smp_onion": False},
}
