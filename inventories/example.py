"""Example pyinfra inventory for real relays: `pyinfra inventories/example.py deploy.py`.

Every key is documented in deploy/smpfleet settings (deploy/settings.py). The key store (CA keys,
online keys, passwords, onion keys) is created in ./keystore next to this file and is
git-ignored: back it up, it is your relays' identity. Set SMPFLEET_KEYSTORE_PASSPHRASE to keep
the CA keys encrypted. Addresses are written to ./published.
"""

_hosts = [
    # Public relay that is also an onion service (single-hop onion), ED448 CA, random password.
    ("smp1.example.com", {"ssh_user": "root", "smp_fqdn": "smp1.example.com"}),
    # Public relay, ED25519, anyone may create queues (public server), no onion service.
    ("smp2.example.com", {"ssh_user": "root", "smp_fqdn": "smp2.example.com",
                          "smp_sign_algorithm": "ED25519", "smp_password_policy": "none",
                          "smp_onion": False, "smp_ports": [5223, 443], "smp_daily_stats": True}),
    # Onion-only relay (anonymous onion service), reached by SSH at an address that is not published.
    ("hidden-relay", {"ssh_hostname": "192.0.2.10", "ssh_user": "root", "smp_onion_only": True,
                      "smp_ports": [5223]}),
]

# pyinfra group "relays": (hosts, data that applies to every host of the group).
relays = (_hosts, {"smp_store_log": True})
