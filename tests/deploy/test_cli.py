"""`smpfleet check` validates an inventory file without contacting any host."""
from pathlib import Path

from smpfleet import cli

REPO = Path(__file__).resolve().parents[2]


def test_example_inventory_is_valid(capsys):
    assert cli.main(["check", str(REPO / "inventories" / "example.py")]) == 0
    out = capsys.readouterr().out
    assert "hidden-relay: onion-only" in out and "smp2.example.com: public, ED25519" in out


def test_broken_inventory_names_host_and_key(tmp_path, capsys):
    inv = tmp_path / "inv.py"
    inv.write_text('relays = ([("a", {"smp_fqdn": "a.example"}), ("b", {"smp_sign_algorithm": "X"})],'
                   ' {"smp_ports": [5223]})\n')
    assert cli.main(["check", str(inv)]) == 2
    err = capsys.readouterr().err
    assert "host 'b', key 'smp_fqdn'" in err and "host 'b', key 'smp_sign_algorithm'" in err
    assert "host 'a'" not in err
