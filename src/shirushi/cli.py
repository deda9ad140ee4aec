"""The `shirushi` command line: parses arguments, builds objects from settings, maps errors.

Every ShirushiError becomes one line on stderr and its exit code; nothing else reaches the user
as a traceback (set SHIRUSHI_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shirushi import __version__
from shirushi.clock import whole_seconds
from shirushi.config import Settings, load
from shirushi.errors import InputError, ServiceError, ShirushiError
from shirushi.serials import serial_text

Command = Callable[[Settings, argparse.Namespace], int]


def _read_file(path: str, what: str, limit: int = 1 << 20) -> bytes:
    """Read at most `limit` bytes (a device or a huge file is refused, not swallowed)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} is larger than {limit} bytes")
    return data


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend

    backend = Backend(settings)
    try:
        done = backend.init()
    finally:
        backend.close()
    for line in done:
        print(line)
    if not done:
        print(f"already initialised in {settings.data_path}; nothing to do")
    return 0


def cmd_issue(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend
    from shirushi.ca.authority import load_hierarchy, pem
    from shirushi.ca.csr import MAX_CSR_BYTES

    csr = _read_file(args.csr, "CSR file", MAX_CSR_BYTES)
    backend = Backend(settings)
    try:
        issued = backend.authority.issue(csr, dns_names=args.dns, days=args.days, subject=args.subject)
    finally:
        backend.close()
    hierarchy = load_hierarchy(settings)
    sys.stdout.write(pem(issued.certificate) + pem(hierarchy.issuing))
    # The certificate exists either way; a pending OCSP response is still a failed promise
    # (README, Commands: the response is in Redis before the command returns).
    for warning in issued.warnings:
        print(f"shirushi: error: issued, but {warning}", file=sys.stderr)
    return ServiceError.exit_code if issued.warnings else 0


def cmd_ca_certs(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.ca.authority import load_hierarchy, pem

    hierarchy = load_hierarchy(settings)
    sys.stdout.write(pem(hierarchy.issuing) + pem(hierarchy.root))
    return 0


def cmd_presign(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend

    backend = Backend(settings)
    try:
        for item in backend.drain_outbox():
            print(f"shirushi: warning: pending: {item}", file=sys.stderr)
        if args.all:
            count = backend.presigner.full_load()
        else:
            count = backend.presigner.ensure_complete() or 0
            count += backend.presigner.refresh_due()
    finally:
        backend.close()
    print(f"signed responses for {count} certificate(s)")
    return 0


def parse_serial(text: str) -> int:
    """A serial as `openssl x509 -serial` prints it (hex; colons and 0x tolerated)."""
    cleaned = text.strip().lower().removeprefix("serial=").removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InputError(f"serial {text!r} is not hexadecimal") from None
    if value <= 0 or value.bit_length() > 160:
        raise InputError(f"serial {text!r} is out of range")
    return value


def parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"time {text!r} is not ISO 8601, e.g. 2026-11-29T09:00:00Z") from None
    if value.tzinfo is None:
        raise InputError(f"time {text!r} has no time zone; add Z for UTC")
    return whole_seconds(value)


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.asn1.keys import spki_sha256
    from shirushi.backend import Backend
    from shirushi.ca.csr import load_csr

    backend = Backend(settings)
    try:
        if args.key_of:
            data = _read_file(args.key_of, "certificate or CSR file")
            key = _public_key_of(data, load_csr)
            records = backend.store.certificates_by_key(spki_sha256(key))
            if not records:
                raise InputError("no certificate with that key was issued by this CA")
            if args.reason == "keyCompromise":
                backend.store.block_key(spki_sha256(key), "keyCompromise reported by the operator", backend.clock.now())
            results = backend.revoker.revoke_many(records, args.reason, requested_by="operator")
        elif args.all:
            if not args.yes:
                raise InputError("--all revokes every certificate of the CA (policy 5.8); add --yes to confirm")
            records = backend.store.unrevoked(backend.clock.now())
            results = backend.revoker.revoke_many(records, args.reason, requested_by="operator (CA termination)")
        else:
            if args.serial is None:
                raise InputError("name a SERIAL, or use --key-of FILE or --all")
            results = [
                backend.revoker.revoke(
                    parse_serial(args.serial), args.reason, at=parse_time(args.at) if args.at else None
                )
            ]
    finally:
        backend.close()
    for result in results:
        rec = result.record
        # BR 6.1.1.3: say that the key can no longer be certified.
        blocked = " key=blocked" if result.key_blocked else ""
        print(
            f"revoked {serial_text(rec.serial)} reason={rec.revocation_reason} "
            f"at={rec.revoked_at:%Y-%m-%dT%H:%M:%SZ}{blocked}"
        )
    pending = results[-1].pending.messages() if results else []
    for item in pending:
        print(f"shirushi: error: revoked, but {item}; `serve` finishes it", file=sys.stderr)
    if not results:
        print("nothing to revoke: every matching certificate is already revoked or expired")
    return ServiceError.exit_code if pending else 0


def _public_key_of(data: bytes, load_csr: Callable[[bytes], Any]) -> Any:
    from cryptography import x509

    try:
        if b"CERTIFICATE REQUEST" in data:
            return load_csr(data).public_key()
        return (
            x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
        ).public_key()
    except ValueError:
        raise InputError("expected a PEM/DER certificate or CSR") from None


def cmd_crl(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend

    backend = Backend(settings)
    try:
        names = ["issuing-ca", "root"] if args.issuer == "all" else [args.issuer]
        for name in names:
            published = backend.crls.generate(name, scheduled=True)
            print(
                f"published {published.path} number={published.number} entries={published.entries} "
                f"nextUpdate={published.next_update:%Y-%m-%dT%H:%M:%SZ}"
            )
    finally:
        backend.close()
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.clock import SystemClock
    from shirushi.inventory import show

    return show(settings, parse_serial(args.serial), SystemClock().now())


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.clock import SystemClock
    from shirushi.inventory import list_certificates

    return list_certificates(settings, SystemClock().now(), revoked=args.revoked, expiring=args.expiring)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.serve import serve

    return serve(settings, args.config)


def cmd_staple(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi import staple
    from shirushi.clock import SystemClock
    from shirushi.config import parse_duration
    from shirushi.errors import ServiceError

    clock = SystemClock()
    if bool(args.cert) == bool(args.dir):
        raise InputError("give either --cert FILE --out FILE, or --dir DIR")
    if args.cert and not args.out:
        raise InputError("--cert needs --out FILE")

    def once() -> int:
        # A leaf without its chain: the local CA's certificates are tried before the AIA URL.
        local = staple.local_ca_issuers(settings)
        if args.dir:
            return staple.staple_dir(Path(args.dir), url=args.url, now=clock.now, say=print, local_issuers=local)
        result = staple.staple_one(
            Path(args.cert),
            Path(args.out),
            issuer_path=Path(args.issuer) if args.issuer else None,
            url=args.url,
            now=clock.now,
            local_issuers=local,
        )
        print(f"{result.path}: {result.status}, nextUpdate {result.next_update:%Y-%m-%dT%H:%M:%SZ}")
        return 0

    if not args.every:
        failures = once()
        if failures == 0 and args.then:
            staple.run_hook(args.then, print)
        return 1 if failures else 0
    try:
        every = parse_duration(args.every)
    except ValueError as exc:
        raise InputError(str(exc)) from None

    def round_() -> int:
        # A refresh loop outlives a responder outage: report, retry sooner, never exit.
        try:
            failures = once()
        except (InputError, ServiceError) as exc:
            print(f"{args.cert}: error: {exc}")
            return 1
        if failures == 0 and args.then:
            staple.run_hook(args.then, print)
        return failures

    staple.refresh_forever(round_, every, print)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.demo import demo

    return demo(settings, args.config, serve_after=not args.no_serve)


def cmd_responder(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.lifecycle import die_with_parent
    from shirushi.logs import configure
    from shirushi.responder import Options, run

    configure(settings.log.format, settings.log.level)
    if args.exit_with_parent is not None:
        # A clean stop (SIGTERM) when the starting process dies, even by SIGKILL; with its PID
        # given, also when it died before this line ran.
        die_with_parent(signal.SIGTERM, args.exit_with_parent or os.getppid())
    return run(settings, options=Options(exit_with_parent=args.exit_with_parent is not None))


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

    p = sub.add_parser("crl", help="generate and publish the CRL now")
    p.add_argument("--issuer", choices=["issuing-ca", "root", "all"], default="all")
    p.set_defaults(func=cmd_crl)

    p = sub.add_parser("show", help="one certificate's record and status")
    p.add_argument("serial", metavar="SERIAL", help="hex serial as `openssl x509 -serial` prints it")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("list", help="a table of certificates, soonest expiry first")
    p.add_argument("--revoked", action="store_true", help="only revoked certificates")
    p.add_argument("--expiring", metavar="DAYS", help="only good certificates expiring within DAYS days")
    p.set_defaults(func=cmd_list)

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


# The top-level modules of the `backend` extra (pyproject.toml).
BACKEND_MODULES = frozenset({"starlette", "uvicorn", "pkcs11", "sqlalchemy", "alembic", "pkilint"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
        result: int = args.func(settings, args)
        return result
    except ShirushiError as exc:
        print(f"shirushi: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in BACKEND_MODULES:
            # A responder-only install (no `backend` extra) running a command of the CA.
            print(f"shirushi: error: `{args.command}` needs the CA: pip install 'shirushi[backend]'", file=sys.stderr)
            return 2
        if os.environ.get("SHIRUSHI_DEBUG"):
            traceback.print_exc()
        print(f"shirushi: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70
