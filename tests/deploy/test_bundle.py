"""The bundle digest follows wheel contents, not zip metadata."""
import zipfile

from smpfleet import bundle


def make_wheel(path, files, date):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=date), data)


def test_digest_ignores_timestamps_but_not_content(tmp_path):
    (tmp_path / "a").mkdir(); (tmp_path / "b").mkdir(); (tmp_path / "c").mkdir()
    files = {"smprelay/__init__.py": b"x = 1\n", "smpfleet_relay-0.1.0.dist-info/RECORD": b"r"}
    make_wheel(tmp_path / "a" / "smpfleet_relay-0.1.0-py3-none-any.whl", files, (2020, 1, 1, 0, 0, 0))
    make_wheel(tmp_path / "b" / "smpfleet_relay-0.1.0-py3-none-any.whl", files, (2024, 5, 5, 5, 5, 5))
    make_wheel(tmp_path / "c" / "smpfleet_relay-0.1.0-py3-none-any.whl",
               {**files, "smprelay/__init__.py": b"x = 2\n"}, (2020, 1, 1, 0, 0, 0))
    a, b, c = (bundle.from_directory(tmp_path / d) for d in "abc")
    assert a.digest == b.digest != c.digest
    assert a.relay_wheel.name.startswith("smpfleet_relay-")
