"""The ``smp-server`` command: ``init``, ``start``, ``delete``, ``cert`` with upstream's options and output.

Differences from upstream, on purpose: ``init`` never empties an existing directory (it refuses
and names what is there), and the address printed by ``start`` omits the port whenever 5223 is
listened on (upstream prints ``:5223,443``, which clients cannot parse).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import certs, config, version
from .paths import ServerPaths

DEFAULT_IP = "127.0.0.1"
CA_KEY_WARNING = (
    "----------\n"
    "You should store CA private key securely and delete it from the server.\n"
    "If server TLS credential is compromised this key can be used to sign a new one, "
    "keeping the same server identity and established connections.\n"
    "CA private key location:\n"
    "{ca_key}\n"
    "----------"
)


class CliError(Exception):
    """A refusal with a message for the operator; exit code 1."""


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smp-server",
        description="SMP server (SimpleX relay). Config: $SMP_SERVER_CFG_PATH (default /etc/opt/simplex), "
        "logs and state: $SMP_SERVER_LOG_PATH (default /var/opt/simplex).",
    )
    p.add_argument("-v", "--version", action="version", version=version.banner())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="Available commands")

    i = sub.add_parser("init", help="Initialize server - creates /etc/opt/simplex and /var/opt/simplex directories and configuration files")
    i.add_argument("-l", "--store-log", action="store_true", help="DEPRECATED, enabled by default")
    i.add_argument("--disable-store-log", action="store_true", help="Disable store log for persistence of queues and messages")
    i.add_argument("-s", "--daily-stats", action="store_true", help="Enable logging daily server statistics")
    i.add_argument("-a", "--sign-algorithm", type=_alg, default=certs.DEFAULT_SIGN_ALGORITHM, metavar="ALG",
                   help="Signature algorithm used for TLS certificates: ED25519, ED448 (default: ED448)")
    i.add_argument("--ip", default=DEFAULT_IP, type=_ip, help="Server IP address, used as Common Name for TLS online certificate if FQDN is not supplied (default: 127.0.0.1)")
    i.add_argument("-n", "--fqdn", type=_fqdn, help="Server FQDN used as Common Name for TLS online certificate")
    pw = i.add_mutually_exclusive_group()
    pw.add_argument("--no-password", action="store_true", help="Allow creating new queues without password")
    pw.add_argument("--password", type=_password, help="Set password to create new messaging queues (default: random)")
    pw.add_argument("--password-file", type=Path, metavar="PATH",
                    help="Read the password from the first line of PATH (keeps it out of `ps`; not in upstream)")
    i.add_argument("--source-code", nargs="?", const=config.DEFAULT_SOURCE_CODE, type=_uri, metavar="URI",
                   help=f"Server source code (default: {config.DEFAULT_SOURCE_CODE})")
    i.add_argument("--web-path", metavar="PATH", help="Directory to store generated static site with server information (default: <log>/www)")
    i.add_argument("--disable-web", action="store_true", help="Disable starting static web server with server information")
    i.add_argument("-y", "--yes", action="store_true", help="Non-interactive initialization using command-line options")

    s = sub.add_parser("start", help="Start server (configuration: /etc/opt/simplex/smp-server.ini)")
    s.add_argument("-m", "--maintenance", action="store_true", help="Do not start the server, only perform start and stop tasks")
    s.add_argument("--log-level", choices=["trace", "debug", "info", "note", "warn", "error"], default="info",
                   help="Log level (default: info)")
    s.add_argument("--skip-warnings", action="store_true", help="Start the server with non-critical start warnings (e.g. messages for unknown queues are dropped)")

    d = sub.add_parser("delete", help="Delete configuration and log files")
    d.add_argument("-y", "--yes", action="store_true", help="Do not ask for confirmation")

    c = sub.add_parser("cert", help="Generate new online TLS server credentials (configuration: /etc/opt/simplex/smp-server.ini)")
    c.add_argument("-a", "--sign-algorithm", type=_alg, metavar="ALG",
                   help="Signature algorithm used for TLS certificates: ED25519, ED448 (default: as the current server.crt)")
    c.add_argument("--cn", type=_fqdn, metavar="FQDN", help="Server FQDN or IP used as Common Name (default: as the current server.crt)")
    c.add_argument("--ca-key", type=Path, metavar="PATH", help="The offline CA private key (default: <cfg>/ca.key)")
    return p


def _alg(v: str) -> str:
    if v.upper() not in certs.SIGN_ALGORITHMS:
        raise argparse.ArgumentTypeError(f"invalid sign algorithm {v!r}: use ED25519 or ED448")
    return v.upper()


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {v!r}") from None


def _fqdn(v: str) -> str:
    try:
        config.host_list(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid host name {v!r}: use one domain name or IP address") from None
    if "," in v:
        raise argparse.ArgumentTypeError(f"invalid host name {v!r}: give one name (add more hosts in smp-server.ini)")
    return v


def _password(v: str) -> str:
    if not config.valid_password(v):
        raise argparse.ArgumentTypeError(
            "invalid password: only latin letters, digits and symbols other than '@', ':' and '/' are allowed"
        )
    return v


def _uri(v: str) -> str:
    try:
        return config.uri(v)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid source code: URI should start from http:// or https://") from None


# -- init -------------------------------------------------------------------------------------


@dataclass
class InitAnswers:
    store_log: bool
    daily_stats: bool
    password: str | None
    ip: str
    fqdn: str | None
    source_code: str | None
    web_path: str | None


def random_password() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


class _Input:
    """Prompts on stdout, answers from stdin: the same for a terminal and a pipe."""

    def ask(self, prompt: str) -> str:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            sys.stdout.write("\n")
            raise CliError("Error: input ended before all questions were answered; nothing was written.\n"
                           "Answer every question, or use `smp-server init -y` with options.")
        return line.rstrip("\r\n")


def ask_answers(a: argparse.Namespace, paths: ServerPaths) -> InitAnswers:
    """The interactive questions, in upstream order (reference §1.4)."""
    inp = _Input()
    print("Use `smp-server init -h` for available options.")
    inp.ask("SMP server will be initialized (press Enter)")
    store = _yes_no(inp, "Enable store log to restore queues and messages on server restart (Yn): ", True)
    stats = _yes_no(inp, "Enable logging daily statistics (yN): ", False)
    print("Require a password to create new messaging queues?")
    while True:
        v = inp.ask("'r' for random (default), 'n' - no password (recommended for public servers), or enter password: ")
        if v in ("", "r", "R"):
            password: str | None = random_password()
            break
        if v in ("n", "N"):
            password = None
            break
        if config.valid_password(v):
            password = v
            break
        print("Invalid password. Only latin letters, digits and symbols other than '@' and ':' are allowed")
    default_host = a.fqdn or a.ip
    fqdn = a.fqdn
    ip = a.ip
    while True:
        v = inp.ask(f"Enter server FQDN or IP address for certificate ({default_host}): ").strip()
        if not v:
            break
        try:
            _fqdn(v)
        except argparse.ArgumentTypeError as e:
            print(f"Invalid input: {e}")
            continue
        fqdn = v
        break
    default_src = a.source_code or config.DEFAULT_SOURCE_CODE
    while True:
        v = inp.ask(f"Enter server source code URI ({default_src}): ").strip()
        if not v:
            src = default_src
            break
        if v.startswith("http://") or v.startswith("https://"):
            src = v
            break
        print("Invalid source code. URI should start from http:// or https://")
    default_web = a.web_path or str(paths.log / "www")
    v = inp.ask(f"Enter path to store generated server pages to show connection links ({default_web}): ").strip()
    return InitAnswers(store, stats, password, ip, fqdn, src, v or default_web)


def _yes_no(inp: _Input, prompt: str, default: bool) -> bool:
    while True:
        v = inp.ask(prompt).strip()
        if v == "":
            return default
        if v in ("y", "Y"):
            return True
        if v in ("n", "N"):
            return False
        print("Invalid input, please enter 'y' or 'n'")


def option_answers(a: argparse.Namespace) -> InitAnswers:
    if a.no_password:
        password = None
    elif a.password is not None:
        password = a.password
    elif a.password_file is not None:
        try:
            lines = a.password_file.read_text().splitlines()
        except OSError as e:
            raise CliError(f"Error: cannot read the password file {a.password_file}: {e.strerror}") from None
        password = lines[0].strip() if lines else ""
        if not config.valid_password(password):
            raise CliError(
                f"Error: invalid password in {a.password_file}: only latin letters, digits and symbols "
                "other than '@', ':' and '/' are allowed, on the first line"
            )
    else:
        password = random_password()
    return InitAnswers(not a.disable_store_log, a.daily_stats, password, a.ip, a.fqdn, a.source_code, a.web_path)


def existing_state(paths: ServerPaths) -> list[Path]:
    """Files ``init`` would otherwise clobber: identity files and persisted queues/messages."""
    found = [p for p in paths.identity_files if p.exists()]
    found += [p for p in (paths.store_log, paths.messages_log) if p.exists()]
    return found


def cmd_init(a: argparse.Namespace, paths: ServerPaths) -> int:
    if paths.ini.exists():
        raise CliError(f"Error: server is already initialized ({paths.ini} exists).\nRun `smp-server start`.")
    found = existing_state(paths)
    if found:
        raise CliError(
            "Error: server is partly initialized: " + ", ".join(str(p) for p in found) + " already exist.\n"
            "init never overwrites keys or logs. Move them away (or run `smp-server delete`) and run init again."
        )
    ans = option_answers(a) if a.yes else ask_answers(a, paths)
    cn = ans.fqdn or ans.ip
    host = ans.fqdn or (ans.ip if ans.ip != DEFAULT_IP else None)
    ini_text = config.render(
        config.IniOptions(
            cfg_path=str(paths.cfg),
            log_path=str(paths.log),
            store_log=ans.store_log,
            log_stats=ans.daily_stats,
            create_password=ans.password,
            hosts=[host] if host else None,
            source_code=ans.source_code,
            web_path=ans.web_path,
            disable_web=a.disable_web,
        )
    )
    ca_key, ca_crt = certs.generate_ca(a.sign_algorithm)
    srv_key, srv_crt = certs.issue_server_cert(ca_key, ca_crt, cn, a.sign_algorithm)
    try:
        paths.cfg.mkdir(parents=True, exist_ok=True)
        paths.log.mkdir(parents=True, exist_ok=True)
        w = certs.write_file_atomic
        w(paths.ca_key, certs.key_pem(ca_key), 0o600, exclusive=True)
        w(paths.ca_crt, certs.cert_pem(ca_crt), 0o644, exclusive=True)
        w(paths.server_key, certs.key_pem(srv_key), 0o600, exclusive=True)
        w(paths.server_crt, certs.cert_pem(srv_crt), 0o644, exclusive=True)
        w(paths.fingerprint, certs.fingerprint_file_content(ca_crt), 0o644, exclusive=True)
        w(paths.ini, ini_text.encode("utf-8"), 0o644, exclusive=True)
    except OSError as e:
        raise CliError(f"Error: cannot write {e.filename or paths.cfg}: {e.strerror or e}") from None
    fp = certs.fingerprint(ca_crt)
    print(f"Server initialized, please provide additional server information in {paths.ini}.")
    print("Run `smp-server start` to start server.")
    print(CA_KEY_WARNING.format(ca_key=paths.ca_key))
    print(version.banner())
    print(f"Fingerprint: {fp}")
    print(f"Server address: {config.server_address(fp, ans.password, [host] if host else None)}")
    if ans.source_code:
        print(f"Server source code: {ans.source_code}")
    else:
        print("Warning: server source code is not specified.")
        print("Add 'source_code' property to [INFORMATION] section of INI file.")
    return 0


# -- cert -------------------------------------------------------------------------------------


def cmd_cert(a: argparse.Namespace, paths: ServerPaths) -> int:
    if not paths.ini.exists():
        raise CliError(f"Error: server is not initialized ({paths.ini} does not exist).\nRun `smp-server init`.")
    ca_key_path = a.ca_key or paths.ca_key
    try:
        ca_key = certs.load_key_pem(ca_key_path.read_bytes(), str(ca_key_path))
    except FileNotFoundError:
        raise CliError(
            f"Error: CA private key {ca_key_path} not found.\n"
            "`cert` signs with the offline CA key: pass it with --ca-key PATH, or run where it is kept."
        ) from None
    except OSError as e:
        raise CliError(f"Error: cannot read {ca_key_path}: {e.strerror}") from None
    except certs.CertError as e:
        raise CliError(f"Error: {e}") from None
    try:
        ca_crt = certs.load_cert_pem(paths.ca_crt.read_bytes(), str(paths.ca_crt))
    except FileNotFoundError:
        raise CliError(f"Error: {paths.ca_crt} not found: it is the server identity and cannot be recreated.") from None
    except certs.CertError as e:
        raise CliError(f"Error: {e}") from None
    old_alg, old_cn = None, None
    if paths.server_crt.exists():
        try:
            old = certs.load_cert_pem(paths.server_crt.read_bytes(), str(paths.server_crt))
            old_alg, old_cn = certs.key_algorithm(old.public_key()), certs.cert_common_name(old)
        except certs.CertError:
            pass  # a broken online certificate is exactly what `cert` replaces
    try:
        key, crt = certs.issue_server_cert(ca_key, ca_crt, a.cn or old_cn or DEFAULT_IP, a.sign_algorithm or old_alg)
    except certs.CertError as e:
        raise CliError(f"Error: {e} ({ca_key_path})") from None
    certs.write_file_atomic(paths.server_key, certs.key_pem(key), 0o600)
    certs.write_file_atomic(paths.server_crt, certs.cert_pem(crt), 0o644)
    print("Generated new server credentials")
    print(CA_KEY_WARNING.format(ca_key=ca_key_path))
    return 0


# -- delete -----------------------------------------------------------------------------------


def cmd_delete(a: argparse.Namespace, paths: ServerPaths) -> int:
    if not a.yes:
        sys.stdout.write(
            "WARNING: deleting the server will make all queues inaccessible, because the server identity "
            "(certificate fingerprint) will change.\nTHIS CANNOT BE UNDONE!\nContinue (Y/n): "
        )
        sys.stdout.flush()
        if sys.stdin.readline().rstrip("\r\n") != "Y":
            print("Server NOT deleted")
            return 1
    for d in (paths.cfg, paths.log):
        if d.is_dir():
            shutil.rmtree(d)
    print("Deleted configuration and log files")
    return 0


# -- start ------------------------------------------------------------------------------------

_LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "note": logging.INFO,
               "warn": logging.WARNING, "error": logging.ERROR}  # fmt: skip


def cmd_start(a: argparse.Namespace, paths: ServerPaths) -> int:
    from . import server

    logging.basicConfig(level=_LOG_LEVELS[a.log_level], stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        return asyncio.run(server.serve(paths, server.StartOptions(a.maintenance, a.skip_warnings), out))
    except server.StartError as e:
        raise CliError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    paths = ServerPaths.from_env()
    try:
        return {"init": cmd_init, "start": cmd_start, "delete": cmd_delete, "cert": cmd_cert}[args.command](args, paths)
    except CliError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; nothing more was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
