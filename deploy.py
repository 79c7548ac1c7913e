"""smpfleet: `pyinfra inventory.py deploy.py` provisions every inventory host as an SMP relay.

Order per host: validate the whole inventory (nothing is touched if any host is wrong) ->
key store on this machine (CA, online certificate, password, onion key) -> relay bundle ->
tor and its onion service -> relay config and systemd -> checks -> published addresses.
See deploy/settings.py for the inventory keys.
"""
import sys

from pyinfra import host

from smpfleet import bundle, check, onion, publish, relay
from smpfleet.fleet import DeployError, fleet_settings, host_identity
from smpfleet.summary import print_summary_at_exit

if host.state.config.DIFF:
    # pyinfra --diff would print the changed lines of the INI (create password) and key files.
    # Lock the change in: pyinfra restores the locked config after each deploy file, and the
    # operations run again (and would diff) when they execute.
    host.state.config.DIFF = False
    host.state.config.lock_current_state()
    print("smpfleet: --diff is turned off: the deployed files hold secrets", file=sys.stderr)

try:
    fleet = fleet_settings()
    settings = fleet[host.name]
    keys = host_identity(settings)
except DeployError as e:
    print(f"\nsmpfleet: {e}\n", file=sys.stderr)
    sys.exit(2)

relay_bundle = bundle.build_once()
bundle_changed = relay.install(relay_bundle)
check.upload_scripts()

if settings.onion:
    onion.install()
    tor_restart = onion.configure(settings, keys)
    onion.activate(tor_restart)

relay_changed, unit_changed = relay.configure(settings, keys)
relay.activate(relay_changed, unit_changed, bundle_changed)

check.verify_relay(settings, keys)
if settings.onion:
    onion.verify(settings, keys)

publish.published(
    name="publish the relay address",
    directory=settings.publish_dir,
    entry=publish.server_entry(
        settings.name, keys.fingerprint, keys.password,
        [h for h in (settings.fqdn, keys.onion.hostname if keys.onion else None) if h],
        settings.ports,
    ),
    fleet=frozenset(fleet),
)
print_summary_at_exit(settings.publish_dir, host.state)
