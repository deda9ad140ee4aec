"""CLI handlers of the CA's own work: init, issue, ca-certs, presign, crl, show, list.

Each builds what it needs from the settings and does its I/O through it (database, keys, Redis,
files); output goes to stdout, warnings to stderr.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.util
import json
import sys
from typing import TYPE_CHECKING, TextIO

from shirushi.commands.inputs import parse_serial, read_file
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError

if TYPE_CHECKING:
    from shirushi.backend import Backend


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
    from shirushi.ca import MAX_CSR_BYTES

    # A responder-only install, then bad input, are refused before anything starts (one line
    # each: cli.py words the missing module as "needs the CA").
    for module in ("sqlalchemy", "pkilint"):
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    csr = read_file(args.csr, "CSR file", MAX_CSR_BYTES)
    request = IssueRequest(csr, args.dns, args.days, args.subject)
    from shirushi.control.client import forward

    # A running `serve` on this data directory does it (warm linter, open store and Redis).
    forwarded = forward(settings, request.to_json())
    if forwarded is not None:
        return forwarded
    # Otherwise here. Before the heavy imports: pkilint loads and builds its validator in a
    # worker on another core while this process does the rest. The lint itself (required before
    # signing, BR 4.3.1.2 and policy) runs there once the certificate is built (CLI start-up).
    from shirushi.ca.lint_pool import LintPool

    lint_pool = LintPool.in_background()
    from shirushi.backend import Backend

    backend = Backend(settings)
    try:
        backend.use_lint_pool(lint_pool)
        return issue_with(backend, request, sys.stdout, sys.stderr)
    finally:
        backend.close()


@dataclasses.dataclass(frozen=True)
class IssueRequest:
    """`issue`'s input, as read by the CLI (the CSR's bytes, not its path)."""

    csr: bytes
    dns: list[str] | None
    days: int | None
    subject: str | None

    def to_json(self) -> dict[str, object]:
        csr = base64.b64encode(self.csr).decode()
        return {"command": "issue", "csr": csr, "dns": self.dns, "days": self.days, "subject": self.subject}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> IssueRequest:
        """What `to_json` made (the control socket's request); InputError for anything else."""
        csr, dns, days, subject = data.get("csr"), data.get("dns"), data.get("days"), data.get("subject")
        if not isinstance(csr, str):
            raise InputError("issue: csr must be base64 text")
        if dns is not None and not (isinstance(dns, list) and all(isinstance(d, str) for d in dns)):
            raise InputError("issue: dns must be a list of names")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
            raise InputError("issue: days must be a whole number")
        if subject is not None and not isinstance(subject, str):
            raise InputError("issue: subject must be text")
        try:
            der = base64.b64decode(csr, validate=True)
        except ValueError:
            raise InputError("issue: csr must be base64 text") from None
        return cls(der, dns, days, subject)


def issue_with(backend: Backend, request: IssueRequest, out: TextIO, err: TextIO) -> int:
    """Issue through `backend`, print the certificate and its issuer; the exit code."""
    from shirushi.ca.hierarchy import load_hierarchy, pem

    issued = backend.authority.issue(
        request.csr, dns_names=request.dns, days=request.days, subject=request.subject, door="cli"
    )
    hierarchy = load_hierarchy(backend.settings)
    out.write(pem(issued.certificate) + pem(hierarchy.issuing))
    # The certificate exists either way; a pending OCSP response is still a failed promise
    # (README, Commands: the response is in Redis before the command returns).
    for warning in issued.warnings:
        print(f"shirushi: error: issued, but {warning}", file=err)
    return ServiceError.exit_code if issued.warnings else 0


def cmd_ca_certs(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.ca.hierarchy import load_hierarchy, pem

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


def cmd_crl(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.backend import Backend

    backend = Backend(settings)
    try:
        names = ["issuing-ca", "root"] if args.issuer == "all" else [args.issuer]
        if args.action == "urls":
            # CCADB policy 6.2: the disclosed URLs are exactly those in the certificates.
            for name in names:
                if backend.store.issuer(name) is not None:
                    print(f"{name}\t{json.dumps(backend.crls.urls(name))}")
            return 0
        for name in names:
            for published in backend.crls.generate_all(name, scheduled=True):
                print(
                    f"published {published.path} number={published.number} entries={published.entries} "
                    f"nextUpdate={published.next_update:%Y-%m-%dT%H:%M:%SZ}"
                )
            pruned = backend.crls.prune_archive(name)
            if any(p.crls or p.chunks for p in pruned):
                print(
                    f"archive of {name}: pruned {sum(p.crls for p in pruned)} CRL(s) and "
                    f"{sum(p.chunks for p in pruned)} chunk(s) past crl.archive_retention_years"
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
