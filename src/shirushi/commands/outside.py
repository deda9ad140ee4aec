"""CLI handlers for outside CAs: `issuer add`, `issuer signer-csr`, `issuer signer-cert`, `import`.

Each builds the backend from the settings and does its I/O through it; results go to stdout,
warnings and per-line problems to stderr (one line each).
"""

from __future__ import annotations

import argparse
import sys

from shirushi.commands.inputs import read_file
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError


def _warn(lines: list[str] | tuple[str, ...]) -> None:
    for line in lines:
        print(f"shirushi: warning: {line}", file=sys.stderr)


def cmd_issuer_add(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend
    from shirushi.outside import registry

    data = read_file(args.cert, "certificate file")
    backend = Backend(settings)
    try:
        warnings = registry.add(settings, backend.store, backend.redis, args.name, data, backend.clock.now())
    finally:
        backend.close()
    _warn(warnings)
    print(f"registered outside CA {args.name}; next: `shirushi issuer signer-csr {args.name} --out FILE`")
    return 0


def cmd_signer_csr(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend
    from shirushi.files import write_atomic
    from shirushi.outside import registry

    backend = Backend(settings)
    try:
        csr = registry.signer_csr(backend.store, backend.keys, args.name)
    finally:
        backend.close()
    if args.out == "-":
        sys.stdout.write(csr.decode())
    else:
        from pathlib import Path

        write_atomic(Path(args.out), csr)
        print(f"wrote {args.out}: have {args.name} sign it as an OCSP signer, then `shirushi issuer signer-cert`")
    return 0


def cmd_signer_cert(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend
    from shirushi.outside import registry

    data = read_file(args.cert, "certificate file")
    backend = Backend(settings)
    try:
        row = registry.outside_issuer(backend.store, args.name)
        cert, warnings = registry.install_signer(
            settings, backend.store, backend.keys, args.name, data, backend.clock.now()
        )
        _warn(warnings)
        until = f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
        print(f"installed the {args.name} OCSP signer certificate (notAfter {until})")
        presigner = backend.outside_presigner(row.id)
        assert presigner is not None
        try:
            count = presigner.full_load()
        except ServiceError as exc:
            print(
                f"shirushi: error: installed, but responses are not yet signed ({exc}); `serve` does it",
                file=sys.stderr,
            )
            return ServiceError.exit_code
    finally:
        backend.close()
    print(f"signed responses for {count} certificate(s) of {args.name}")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend
    from shirushi.outside import importer, sources

    given = [x for x in (args.openssl_index, args.certs, args.crl) if x]
    if len(given) != 1:
        raise InputError("give one of --openssl-index FILE, --certs PATH..., --crl FILE_OR_URL")
    backend = Backend(settings)
    problems: list[str] = []
    try:
        row = importer.issuer(backend, args.name)
        if args.openssl_index:
            seen = sources.index_seen(args.openssl_index, problems)
            report = importer.run(backend, row, seen, problems, {"source": "openssl-index", "path": args.openssl_index})
        elif args.certs:
            from cryptography import x509

            ca = x509.load_der_x509_certificate(row.certificate)
            seen = sources.certs_seen(args.certs, ca, row.name, problems)
            report = importer.run(backend, row, seen, problems, {"source": "certs"})
        else:
            from cryptography import x509

            ca = x509.load_der_x509_certificate(row.certificate)
            number, this_update, entries = sources.crl_seen(sources.read_crl(args.crl), ca, row.name, args.crl)
            report = importer.run(
                backend, row, entries, problems, {"source": "crl", "where": args.crl}, crl=(number, this_update)
            )
    finally:
        backend.close()
    for line in report.problems:
        print(f"shirushi: error: {line}", file=sys.stderr)
    if report.kept_revoked:
        _warn([f"{report.kept_revoked} certificate(s) shown as not revoked stay revoked (revocation is final)"])
    print(report.summary())
    for line in report.pending:
        print(f"shirushi: warning: {line}", file=sys.stderr)
    return 1 if report.problems else 0
