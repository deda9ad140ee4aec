"""CLI handler of `revoke`: one serial, every certificate with one key, or all (CA termination).

Does I/O through the backend (database, keys, Redis, CRL files), or hands one serial to a running
`serve` (control/); prints one line per revocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from shirushi.commands.inputs import parse_serial, parse_time, public_key_of, read_file
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError
from shirushi.serials import serial_text

if TYPE_CHECKING:
    from shirushi.backend import Backend
    from shirushi.revocation import Revoked


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    if not args.key_of and not args.all:
        if args.serial is None:
            raise InputError("name a SERIAL, or use --key-of FILE or --all")
        request = RevokeRequest(parse_serial(args.serial), args.reason, parse_time(args.at) if args.at else None)
        from shirushi.control.client import forward

        # A running `serve` on this data directory does it (its CRL group commit, open store
        # and Redis); --key-of and --all, rare and possibly long, always run here.
        forwarded = forward(settings, request.to_json())
        if forwarded is not None:
            return forwarded
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
            return revoke_with(backend, request, sys.stdout, sys.stderr)
    finally:
        backend.close()
    return report(results, sys.stdout, sys.stderr)


@dataclasses.dataclass(frozen=True)
class RevokeRequest:
    """`revoke SERIAL`'s input, parsed by the CLI."""

    serial: int
    reason: str
    at: dt.datetime | None

    def to_json(self) -> dict[str, object]:
        at = None if self.at is None else f"{self.at:%Y-%m-%dT%H:%M:%SZ}"
        return {"command": "revoke", "serial": serial_text(self.serial), "reason": self.reason, "at": at}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RevokeRequest:
        """What `to_json` made (the control socket's request); InputError for anything else."""
        serial, reason, at = data.get("serial"), data.get("reason"), data.get("at")
        if not isinstance(serial, str) or not isinstance(reason, str) or not (at is None or isinstance(at, str)):
            raise InputError("revoke: serial and reason must be text, at text or null")
        return cls(parse_serial(serial), reason, None if at is None else parse_time(at))


def revoke_with(backend: Backend, request: RevokeRequest, out: TextIO, err: TextIO) -> int:
    """Revoke one serial through `backend` and report it; the exit code."""
    result = backend.revoker.revoke(request.serial, request.reason, at=request.at)
    return report([result], out, err)


def report(results: Sequence[Revoked], out: TextIO, err: TextIO) -> int:
    """One line per revocation, what is still pending on stderr; the exit code."""
    for result in results:
        rec = result.record
        # BR 6.1.1.3: say that the key can no longer be certified.
        blocked = " key=blocked" if result.key_blocked else ""
        print(
            f"revoked {serial_text(rec.serial)} reason={rec.revocation_reason} "
            f"at={rec.revoked_at:%Y-%m-%dT%H:%M:%SZ}{blocked}",
            file=out,
        )
    pending = results[-1].pending.messages() if results else []
    for item in pending:
        print(f"shirushi: error: revoked, but {item}; `serve` finishes it", file=err)
    if not results:
        print("nothing to revoke: every matching certificate is already revoked or expired", file=out)
    return ServiceError.exit_code if pending else 0
