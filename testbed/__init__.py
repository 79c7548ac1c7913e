"""Local fleet of real Debian test hosts (systemd + sshd under systemd-nspawn) on a private bridge.

Command line: ``python -m smpfleet_testbed image|repo|up N|down|status``; the pytest fixture in
``tests/conftest.py`` uses :mod:`smpfleet_testbed.fleet`.
"""
