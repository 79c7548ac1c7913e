"""Clear errors for what the operator must fix: not root, a missing tool (and its package), bad input."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from smpfleet_testbed import packages
from smpfleet_testbed.errors import TestbedError
from smpfleet_testbed.system import check_root, check_tools, run


def test_not_root_is_refused():
    with pytest.raises(TestbedError, match="needs root"):
        check_root(euid=1000)
    check_root(euid=0)


def test_missing_tools_name_their_packages(tmp_path):
    with pytest.raises(TestbedError) as e:
        check_tools(["debootstrap", "systemd-nspawn", "dpkg-scanpackages"], path=str(tmp_path))
    msg = str(e.value)
    assert "systemd-nspawn (package systemd-container)" in msg
    assert "dpkg-scanpackages (package dpkg-dev)" in msg
    assert "apt-get install debootstrap dpkg-dev systemd-container" in msg


def test_failed_command_reports_command_and_stderr():
    with pytest.raises(TestbedError, match=r"exit 2.*ls /nonexistent-dir[\s\S]*No such file"):
        run(["ls", "/nonexistent-dir"])


def _cli(*args, user=None):
    cmd = [sys.executable, "-m", "smpfleet_testbed", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_cli_bad_name_exits_nonzero_with_message():
    p = _cli("down", "--name", "Bad-Name")
    assert p.returncode == 1
    assert "invalid testbed name 'Bad-Name'" in p.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_cli_as_non_root_exits_nonzero_with_message():
    p = _cli("up", "1", "--name", "tbnoroot", user=65534)
    assert p.returncode == 1
    assert "needs root" in p.stderr


def test_apt_dependency_listing_is_parsed():
    out = "tor\n  Depends: libc6\n  Depends: <libevent>\nlibc6\n  Depends: libgcc-s1\n<virt>\nlibgcc-s1\nfoo:i386\n"
    assert packages.parse_depends(out) == ["libc6", "libgcc-s1", "tor"]


def test_wheelhouse_covers_stem_and_the_relay_requirements():
    reqs = packages.wheel_requirements()
    assert "stem" in reqs
    assert set(packages.relay_requirements()) <= set(reqs)
    assert any(r.lower().startswith("cryptography") for r in reqs)


HYBRID = """\
35 26 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd
36 26 0:31 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
"""


def test_cgroup_layout_hybrid_is_accepted_and_others_are_refused():
    from smpfleet_testbed.system import check_cgroups
    check_cgroups(HYBRID)
    pure_v2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
    with pytest.raises(TestbedError, match=r"/sys/fs/cgroup/unified \(want cgroup2, found nothing mounted\)"):
        check_cgroups(pure_v2)


@pytest.mark.testbed
@pytest.mark.skipif(os.geteuid() != 0, reason="the testbed needs root")
def test_cli_image_and_repo_report_the_shared_cache():
    from smpfleet_testbed import image as image_mod, packages as pk
    p = _cli("image")
    assert p.returncode == 0, p.stderr
    assert str(image_mod.image_dir()) in p.stdout
    assert (image_mod.image_dir() / "usr/lib/systemd/systemd").exists()
    p = _cli("repo")
    assert p.returncode == 0, p.stderr
    packages_index = (pk.apt_repo_dir() / "Packages").read_text()
    assert "Package: tor\n" in packages_index and "Package: tor-geoipdb\n" in packages_index
    wheels = {w.name.split("-")[0].lower() for w in pk.wheelhouse_dir().glob("*.whl")}
    assert {"stem", "cryptography", "pynacl", "cffi", "pycparser"} <= wheels
