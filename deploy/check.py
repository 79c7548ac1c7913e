"""Post-deploy checks, run on every deploy: does the relay listen and present the right identity?

A check is not a change: it is an operation that, in pyinfra's execute stage only, runs its
script as a fact (a read) and yields no command when the check passes, so a run that changes
nothing still verifies every host and reports zero changes, and ``--dry`` does not pretend it
would change anything. A failing check yields a command that prints why and fails the host.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.state import StateStage
from pyinfra.operations import files

from . import render
from .keystore import HostKeys
from .relay import SCRIPTS_DIR
from .settings import RelaySettings

HOST_SCRIPTS = Path(__file__).resolve().parent / "hostscripts"


class CheckResult(FactBase):
    """Output and exit status of a check command (the command itself never fails the fact)."""

    def command(self, command: str) -> str:
        return f"( {command} ) 2>&1; echo \"__smpfleet_exit=$?\""

    def process(self, output: list[str]) -> dict:
        lines = list(output)
        if lines and lines[-1].startswith("__smpfleet_exit="):
            return {"status": int(lines.pop().split("=", 1)[1]), "output": "\n".join(lines)}
        # The shell never reached the echo: the check (or its shell) was killed, or the output cut.
        lines.append("(no exit status: the check was killed or its output was cut off)")
        return {"status": 1, "output": "\n".join(lines)}


@operation(is_idempotent=True)
def execute_only_shell(command: str):
    """Run the check ``command`` when the deploy executes; a pass is no change, a failure fails the host."""
    if host.state.current_stage != StateStage.Execute:
        return
    result = host.get_fact(CheckResult, command=command)
    if result["status"] != 0:
        message = f"check failed (exit {result['status']}): {result['output']}"
        yield f"echo {shlex.quote(message)} >&2; exit 1"


def unit_state(unit: str) -> str:
    """Shell command printing a unit's state, restart count and how its main process ended."""
    return (f"systemctl show {shlex.quote(unit)} --no-pager -p ActiveState,SubState,NRestarts,"
            "ExecMainStartTimestamp,ExecMainCode,ExecMainStatus")


def upload_scripts() -> None:
    files.directory(name="smpfleet scripts dir", path=SCRIPTS_DIR, user="root", group="root", mode="755")
    for script in sorted(HOST_SCRIPTS.glob("*.py")):
        files.put(name=f"script {script.name}", src=str(script), dest=f"{SCRIPTS_DIR}/{script.name}",
                  user="root", group="root", mode="755")


def relay_check_args(fingerprint: str, ports: list[int]) -> list[str]:
    """Arguments of hostscripts/relay_check.py. ``--opt=value`` form: a base64url fingerprint
    may start with "-", which argparse would otherwise take for an option (1 host in 64)."""
    return [f"--fingerprint={fingerprint}", *(f"--port={p}" for p in ports)]


def verify_relay(settings: RelaySettings, keys: HostKeys) -> None:
    args = relay_check_args(keys.fingerprint, settings.ports)
    check = f"{render.VENV_DIR}/bin/python {SCRIPTS_DIR}/relay_check.py " + " ".join(shlex.quote(a) for a in args)
    execute_only_shell(
        name="relay listens and presents the key store identity (TLS + SMP handshake)",
        # On failure, show the unit's state (restarts, how the main process ended: an outside
        # kill shows here) and the relay's last log lines: the operator's next questions.
        command=f"{check} || {{ {unit_state('smp-server')}; journalctl -u smp-server -n 25 --no-pager -o short-precise; exit 1; }}",
    )
