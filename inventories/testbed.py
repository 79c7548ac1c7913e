"""pyinfra inventory of the running local testbed: `pyinfra inventories/testbed.py deploy.py`.

The instance comes from SMPFLEET_TESTBED (default `tb`); `python -m smpfleet_testbed up 3` writes
its inventory (connection data, merged with the deploy's inventories/testbed_data.py) under
/tmp/smpfleet-testbed/<name>/, and this file loads it, so the path to type stays the same.
"""
import os as _os
import runpy as _runpy

_name = _os.environ.get("SMPFLEET_TESTBED", "tb")
_root = _os.environ.get("SMPFLEET_TESTBED_STATE", "/tmp/smpfleet-testbed")
_generated = _os.path.join(_root, _name, "inventory.py")
if not _os.path.isfile(_generated):
    raise SystemExit(f"testbed {_name!r} is not up ({_generated} is missing): run "
                     f".venv/bin/python -m smpfleet_testbed up 3 --name {_name}")
testbed = _runpy.run_path(_generated)["testbed"]
