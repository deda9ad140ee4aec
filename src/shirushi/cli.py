"""The `shirushi` command line: parses arguments, calls a handler (`shirushi.commands`), maps errors.

Every ShirushiError becomes one line on stderr and its exit code; nothing else reaches the user
as a traceback (set SHIRUSHI_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from shirushi import __version__
from shirushi.commands.archive import cmd_archive
from shirushi.commands.ca import cmd_ca_certs, cmd_crl, cmd_init, cmd_issue, cmd_list, cmd_presign, cmd_show
from shirushi.commands.outside import cmd_import, cmd_issuer_add, cmd_signer_cert, cmd_signer_csr
from shirushi.commands.reports import cmd_reports
from shirushi.commands.revoke import cmd_revoke
from shirushi.commands.run import cmd_demo, cmd_responder, cmd_serve, cmd_staple
from shirushi.commands.validate import cmd_validate
from shirushi.config import load
from shirushi.errors import ArgumentError, ShirushiError, WeakKeyError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shirushi", description="Shirushi (印): a certificate authority with a fast OCSP/CRL status core."
    )
    parser.add_argument("--config", metavar="PATH", help="TOML settings file (default: $SHIRUSHI_CONFIG)")
    parser.add_argument("--version", action="version", version=f"shirushi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", help="create the CA hierarchy and database where missing")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("issue", help="issue a server certificate from a CSR")
    p.add_argument("--csr", required=True, metavar="FILE", help="PEM or DER CSR ('-' for stdin)")
    p.add_argument("--dns", action="append", metavar="NAME", help="DNS name (repeat); default: the CSR's SANs")
    p.add_argument("--days", type=int, metavar="N", help="validity in days (capped by policy and BR)")
    p.add_argument("--subject", metavar="DN", help="subject as validated by the RA, e.g. 'C=JP, ST=..., L=..., O=...'")
    p.set_defaults(func=cmd_issue)

    p = sub.add_parser("ca-certs", help="print the issuing CA certificate(s) then the root, PEM")
    p.set_defaults(func=cmd_ca_certs)

    p = sub.add_parser("presign", help="re-sign every OCSP response that is due now")
    p.add_argument("--all", action="store_true", help="re-sign every response, due or not")
    p.set_defaults(func=cmd_presign)

    p = sub.add_parser("revoke", help="revoke a certificate (or all with one key, or all)")
    p.add_argument("serial", nargs="?", metavar="SERIAL", help="hex serial as `openssl x509 -serial` prints it")
    p.add_argument(
        "--reason",
        default="unspecified",
        metavar="NAME",
        help="RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, "
        "cessationOfOperation, privilegeWithdrawn",
    )
    p.add_argument("--at", metavar="TIME", help="compromise time for keyCompromise (ISO 8601, UTC)")
    p.add_argument("--key-of", metavar="FILE", help="revoke every certificate with the key of this certificate/CSR")
    p.add_argument("--all", action="store_true", help="revoke every unexpired certificate (CA termination)")
    p.add_argument("--yes", action="store_true", help="confirm --all")
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("crl", help="generate and publish the CRLs now (`crl urls`: list their URLs)")
    p.add_argument(
        "action",
        nargs="?",
        choices=["urls"],
        help="urls: print each CA's name, a tab and the CCADB JSON array of all its CRL URLs",
    )
    p.add_argument("--issuer", choices=["issuing-ca", "root", "all"], default="all")
    p.set_defaults(func=cmd_crl)

    p = sub.add_parser("show", help="one certificate's record and status")
    p.add_argument("serial", metavar="SERIAL", help="hex serial as `openssl x509 -serial` prints it")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("list", help="a table of certificates, soonest expiry first")
    p.add_argument("--revoked", action="store_true", help="only revoked certificates")
    p.add_argument("--expiring", metavar="DAYS", help="only good certificates expiring within DAYS days")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("issuer", help="outside CAs whose certificates' status Shirushi serves")
    issuer = p.add_subparsers(dest="issuer_command", metavar="ACTION", required=True)
    q = issuer.add_parser("add", help="register an outside CA (no key here) by its certificate")
    q.add_argument("name", metavar="NAME", help="a short name for the CA, e.g. easyrsa")
    q.add_argument("--cert", required=True, metavar="FILE", help="the CA certificate, PEM or DER")
    q.set_defaults(func=cmd_issuer_add)
    q = issuer.add_parser("signer-csr", help="make the delegated OCSP signer key; write its CSR")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", required=True, metavar="FILE", help="where to write the PEM CSR ('-' for stdout)")
    q.set_defaults(func=cmd_signer_csr)
    q = issuer.add_parser("signer-cert", help="install the signer certificate the outside CA issued")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--cert", required=True, metavar="FILE", help="the signer certificate, PEM or DER")
    q.set_defaults(func=cmd_signer_cert)

    p = sub.add_parser("import", help="an outside CA's issued serials and revocations")
    p.add_argument("name", metavar="NAME", help="the outside CA (`issuer add`)")
    p.add_argument("--openssl-index", metavar="FILE", help="OpenSSL `ca` / easy-rsa index.txt")
    p.add_argument("--certs", nargs="+", metavar="PATH", help="certificate files or directories of them")
    p.add_argument("--crl", metavar="FILE_OR_URL", help="the CA's CRL (PEM or DER), a file or http(s) URL")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("reports", help="certificate problem reports with their 24 h deadlines (BR 4.9.5)")
    p.add_argument("--open", action="store_true", help="only reports not yet closed")
    p.set_defaults(func=cmd_reports, action="list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    close = actions.add_parser("close", help="close a report with the action taken")
    close.add_argument("id", metavar="ID", help="the report's id, as `shirushi reports` lists it")
    close.add_argument("--action", dest="close_action", required=True, choices=["revoked", "rejected"])
    close.add_argument("--note", required=True, metavar="TEXT", help="what was found and done")

    p = sub.add_parser("validate", help="domain validation for the CLI and API doors (BR 3.2.2.4.7, .18)")
    p.add_argument("name", metavar="NAME", nargs="?", help='the DNS name to validate ("*.NAME": DNS method only)')
    p.add_argument("--method", choices=["dns", "website"], default="dns", help="BR 3.2.2.4.7 or 3.2.2.4.18")
    p.add_argument("--check", metavar="ID", help="check a started validation once and record the result")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("archive", help="records for auditors (policy 5.5): export them, verify an export")
    archive = p.add_subparsers(dest="archive_command", metavar="ACTION", required=True)
    q = archive.add_parser("export", help="write certificates, CRLs, audit records and OCSP access logs to DIR")
    q.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    q.add_argument("--since", metavar="DATE", help="only records from DATE on (YYYY-MM-DD or ISO 8601 with a zone)")
    q.set_defaults(func=cmd_archive)
    q = archive.add_parser("verify", help="check an export's manifest and audit hash chain")
    q.add_argument("directory", metavar="DIR")
    q.add_argument(
        "--database", action="store_true", help="also check the configured database's audit rows against the export"
    )
    q.set_defaults(func=cmd_archive)

    p = sub.add_parser("serve", help="run everything: responder, repository, API, schedules")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("staple", help="write the current OCSP response of a certificate for stapling")
    p.add_argument("--cert", metavar="FILE", help="certificate (PEM, optionally followed by its chain)")
    p.add_argument("--out", metavar="FILE", help="where to write the DER response")
    p.add_argument(
        "--issuer",
        metavar="FILE",
        help="issuer certificate, if not in --cert (default: the local CA's, else the AIA caIssuers URL)",
    )
    p.add_argument("--dir", metavar="DIR", help="every NAME.pem in DIR gets NAME.pem.ocsp (HAProxy naming)")
    p.add_argument("--url", metavar="URL", help="OCSP responder (default: the certificate's AIA)")
    p.add_argument("--every", metavar="DURATION", help="keep running, refreshing this often (e.g. 1h)")
    p.add_argument(
        "--then",
        metavar="COMMAND",
        help="run after each successful refresh, e.g. 'nginx -s reload' (servers read the files at load)",
    )
    p.set_defaults(func=cmd_staple)

    p = sub.add_parser("demo", help="init if needed, serve, issue a sample certificate, print checks")
    p.add_argument("--no-serve", action="store_true", help="stop after printing the checks")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("responder", help="run only the OCSP responder (no keys, no database)")
    p.add_argument(
        "--exit-with-parent",
        nargs="?",
        type=int,
        const=0,
        metavar="PID",
        help="stop when the process that started it (PID, if given) exits (used by serve)",
    )
    p.set_defaults(func=cmd_responder)
    return parser


def worded(exc: ShirushiError) -> str:
    """The error in the CLI's words: an argument is named as its flag; a weak key says what to do."""
    if isinstance(exc, ArgumentError):
        return f"--{exc.argument.replace('_', '-')} {exc.rule}"
    if isinstance(exc, WeakKeyError):
        return f"{exc}; make a new key pair and CSR (the key's SPKI SHA-256 is {exc.spki_sha256})"
    return str(exc)


# The top-level modules of the `backend` extra (pyproject.toml).
BACKEND_MODULES = frozenset({"starlette", "uvicorn", "pkcs11", "sqlalchemy", "alembic", "pkilint", "badkeys"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
        result: int = args.func(settings, args)
        return result
    except (Exception, KeyboardInterrupt) as exc:
        return failed(exc, args.command, sys.stderr)


def failed(exc: BaseException, command: str, err: TextIO) -> int:
    """Say what went wrong in one line on `err`; the exit code (the one mapping of errors to
    exit codes, also used by `serve` for the commands it runs for the CLI, control/server.py)."""
    if isinstance(exc, ShirushiError):
        print(f"shirushi: error: {worded(exc)}", file=err)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, BrokenPipeError):
        return 0
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in BACKEND_MODULES:
        # A responder-only install (no `backend` extra) running a command of the CA.
        print(f"shirushi: error: `{command}` needs the CA: pip install 'shirushi[backend]'", file=err)
        return 2
    if os.environ.get("SHIRUSHI_DEBUG"):
        traceback.print_exception(exc, file=err)
    print(f"shirushi: internal error: {type(exc).__name__}: {exc}", file=err)
    return 70
