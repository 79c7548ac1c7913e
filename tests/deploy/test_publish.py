"""Published addresses: composed from the key store facts, secrets marked and masked."""
import json
import stat

from smpfleet import publish

FP = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI="
ONION = "b" * 56 + ".onion"


def test_address_forms():
    assert publish.server_entry("a", FP, "pw", ["smp.example", ONION], (5223, 443)).address == \
        f"smp://{FP}:pw@smp.example,{ONION}"
    e = publish.server_entry("b", FP, None, ["10.0.0.1"], (7000,))
    assert e.address == f"smp://{FP}@10.0.0.1:7000" and e.port == 7000


def test_files_modes_secret_marking_and_qr(tmp_path):
    servers = [publish.server_entry("a", FP, "s3cret", ["smp.example", ONION], (5223,)),
               publish.server_entry("b", FP, None, [ONION], (5223,))]
    publish.write_published(tmp_path / "pub", servers)
    doc = json.loads((tmp_path / "pub" / "servers.json").read_text())
    assert doc["servers"][0]["password"] == {"secret": "s3cret"} and doc["servers"][1]["password"] is None
    assert doc["servers"][0]["hosts"] == ["smp.example", ONION]
    assert (tmp_path / "pub" / "addresses.txt").read_text().splitlines() == [s.address for s in servers]
    for name in ("servers.json", "addresses.txt", "a.png", "b.png"):
        assert stat.S_IMODE((tmp_path / "pub" / name).stat().st_mode) == 0o600
    assert (tmp_path / "pub" / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert publish.read_published(tmp_path / "pub") == sorted(servers, key=lambda s: s.host)


def test_summary_masks_passwords_unless_asked(monkeypatch):
    servers = [publish.server_entry("a", FP, "s3cret", ["smp.example"], (5223,))]
    monkeypatch.delenv(publish.SHOW_SECRETS_ENV, raising=False)
    assert "s3cret" not in publish.summary_table(servers) and "********" in publish.summary_table(servers)
    monkeypatch.setenv(publish.SHOW_SECRETS_ENV, "1")
    assert "s3cret" in publish.summary_table(servers)


def test_publish_is_current_tracks_entry_and_fleet(tmp_path):
    a = publish.server_entry("a", FP, None, ["x.example"], (5223,))
    b = publish.server_entry("b", FP, None, ["y.example"], (5223,))
    assert not publish.publish_is_current(tmp_path, a, {"a"})
    publish.update_published(tmp_path, a, {"a", "b"})
    publish.update_published(tmp_path, b, {"a", "b"})
    assert publish.publish_is_current(tmp_path, a, {"a", "b"})
    assert not publish.publish_is_current(tmp_path, a, {"a"})  # b left the fleet: rewrite
    publish.update_published(tmp_path, a, {"a"})
    assert [s.host for s in publish.read_published(tmp_path)] == ["a"]
