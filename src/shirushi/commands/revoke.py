"""CLI handler of `revoke`: one serial, every certificate with one key, or all (CA termination).

Does I/O through the backend (database, keys, Redis, CRL files); prints one line per revocation.
"""

from __future__ import annotations

import argparse
import sys

from shirushi.commands.inputs import parse_serial, parse_time, public_key_of, read_file
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError
from shirushi.serials import serial_text


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.asn1.keys import spki_sha256
    from shirushi.backend import Backend
    from shirushi.ca.csr import load_csr

    backend = Backend(settings)
    try:
        if args.key_of:
            data = read_file(args.key_of, "certificate or CSR file")
            results = backend.revoker.revoke_key(
                spki_sha256(public_key_of(data, load_csr)),
                args.reason,
                requested_by="operator",
                note="keyCompromise reported by the operator",
            )
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
