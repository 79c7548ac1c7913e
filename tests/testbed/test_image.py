"""The shared image cache: builds are serialized by flock, the template fixes are applied, and a
tree that running hosts use as their lower layer is never rebuilt under them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smpfleet_testbed import image
from smpfleet_testbed.errors import TestbedError


def test_second_builder_waits_for_the_lock_holder(tmp_path):
    """A process holds the build lock and writes a marker as it releases it; a build_image that
    started meanwhile must return only after that (it sees the marker)."""
    (image.image_dir(tmp_path)).mkdir()  # cached already: build_image only takes the lock
    marker = tmp_path / "released"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from smpfleet_testbed.image import cache_lock\n"
         f"with cache_lock(Path({str(tmp_path)!r})):\n"
         "    print('locked', flush=True); time.sleep(1.0)\n"
         f"    Path({str(marker)!r}).write_text('x')\n"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert image.build_image(tmp_path, log=lambda _: None) == image.image_dir(tmp_path)
    assert marker.exists()
    holder.wait(10)


def test_template_fixes(tmp_path):
    root = tmp_path / "root"
    for d in ("etc/ssh/sshd_config.d", "etc/systemd/system", "etc/apt/sources.list.d", "var/lib/dbus",
              "var/lib/apt/lists", "var/cache/apt/archives"):
        (root / d).mkdir(parents=True)
    root.chmod(0o700)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/apt/sources.list.d/debian.sources").write_text("Types: deb\n")
    (root / "var/cache/apt/archives/x.deb").write_text("")
    image.apply_template_fixes(root)
    assert root.stat().st_mode & 0o777 == 0o755
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "var/lib/dbus/machine-id").readlink() == Path("/etc/machine-id")
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/apt/sources.list").read_text() == "deb [trusted=yes] file:/srv/testbed-apt ./\n"
    assert not list((root / "etc/apt/sources.list.d").iterdir())
    assert "find-links = /srv/testbed-wheels" in (root / "etc/pip.conf").read_text()
    assert (root / "etc/systemd/system/apt-daily.timer").readlink() == Path("/dev/null")
    assert not (root / "var/cache/apt/archives/x.deb").exists()


def test_rebuild_is_refused_while_hosts_use_the_image(tmp_path):
    target = image.image_dir(tmp_path)
    target.mkdir()
    lower, upper, work, merged = target, tmp_path / "u", tmp_path / "w", tmp_path / "m"
    for d in (upper, work, merged):
        d.mkdir()
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                       f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)]).returncode != 0:
        pytest.skip("cannot mount overlayfs here (needs root)")
    try:
        assert image.overlays_using(target) == [str(merged)]
        with pytest.raises(TestbedError, match="running test hosts use it"):
            image.build_image(tmp_path, rebuild=True, log=lambda _: None)
        assert target.is_dir()
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert image.overlays_using(target) == []


def test_publish_keeps_the_version_running_hosts_use(tmp_path, monkeypatch):
    from smpfleet_testbed import packages
    link = tmp_path / "apt"
    first = tmp_path / ".b1"
    first.mkdir()
    (first / "Packages").write_text("one")
    v1 = packages.publish(first, link)
    assert link.is_symlink() and (link / "Packages").read_text() == "one"
    second = tmp_path / ".b2"
    second.mkdir()
    (second / "Packages").write_text("two")
    monkeypatch.setattr(packages, "hosts_running_from", lambda root: [4242])  # a host uses v1
    v2 = packages.publish(second, link)
    assert (link / "Packages").read_text() == "two" and (v1 / "Packages").read_text() == "one"
    third = tmp_path / ".b3"
    third.mkdir()
    monkeypatch.setattr(packages, "hosts_running_from", lambda root: [])  # nobody: old ones go
    v3 = packages.publish(third, link)
    assert not v1.exists() and not v2.exists() and link.resolve() == v3


def test_publish_replaces_a_plain_directory_of_the_older_layout(tmp_path, monkeypatch):
    from smpfleet_testbed import packages
    monkeypatch.setattr(packages, "hosts_running_from", lambda root: [1])
    link = tmp_path / "wheels"
    link.mkdir()
    (link / "old.whl").write_text("")
    built = tmp_path / ".b"
    built.mkdir()
    packages.publish(built, link)
    assert link.is_symlink() and not (link / "old.whl").exists()
    kept = [p for p in tmp_path.glob("wheels.*") if (p / "old.whl").exists()]
    assert len(kept) == 1  # still there for the hosts that mounted it
