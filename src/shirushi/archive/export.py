"""`shirushi archive export`: the CA's records for auditors (policy 5.5.1), as files they can read
with stock tools. Does I/O: reads the store, the CRL archive and the OCSP access logs; writes the
export directory.

Layout of an export (docs/operations.md, "Records export"):

    ca/NAME.der, ca/NAME.pem          the CA certificates (issuers), issuers.jsonl
    certificates/ISSUER/XX/SERIAL.der and .pem, certificates.jsonl
    revocations.jsonl
    crls/CRLNAME/NUMBER.crl           every archived CRL (DER), crls.jsonl (the CRL records)
    audit.jsonl                       audit records in id order, each with its hash-chain link
    problem-reports.jsonl
    ocsp-access/FILE                  the OCSP access log and its rotated files (decompressed)
    export.json                       what, when, counts, the range, the chain's head
    MANIFEST.sha256                   `sha256sum -c` input for every file above; written last

`since` keeps records made at or after it: certificates issued or revoked, CRLs by thisUpdate,
problem reports received or closed, access log lines; audit records from the first one at or
after it, with the chain link before it (`audit.chain_start`) so the exported part verifies alone.
The chain always runs from the first audit row, so any two exports agree on a row's link.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shirushi import __version__
from shirushi.archive import chain
from shirushi.archive.files import EXPORT_JSON, MANIFEST, ExportDir, clear, prepare, safe_name
from shirushi.config import Settings
from shirushi.errors import InputError, ServiceError
from shirushi.serials import serial_text
from shirushi.store import Store
from shirushi.store import archive as records
from shirushi.store.records import aware, serial_value

FORMAT = "shirushi-archive-1"


def _t(value: dt.datetime | None) -> str | None:
    return None if value is None else chain.time_text(aware(value))  # type: ignore[arg-type]


def _jsonl(line: dict[str, Any]) -> bytes:
    return (chain.dumps(line) + "\n").encode()


def pem(der: bytes, label: str) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label.encode(), b"\n".join(lines), label.encode())


def export(
    settings: Settings, store: Store, out: Path, *, since: dt.datetime | None, now: dt.datetime
) -> dict[str, Any]:
    """Write the export into `out` (absent or empty); returns what export.json says.

    On any failure what was written is removed and the error raised: an export directory either
    has its MANIFEST.sha256 or is empty (or absent).
    """
    created = prepare(out)
    files = ExportDir(out)
    try:
        summary = _write(settings, store, files, since=since, now=now)
        files.finish()
    except BaseException as exc:
        clear(out, created)
        if isinstance(exc, OSError):
            raise ServiceError(f"export to {out} failed: {exc.strerror or exc}; nothing was left there") from None
        raise
    # The export itself goes into the audit log with the head it recorded: the next export (and
    # `archive verify --database`) checks the chain against it.
    store.audit(
        now,
        "archive-export",
        {"through_id": summary["audit"]["through_id"], "head": summary["audit"]["head"], "since": summary["since"]},
    )
    return summary


def _write(
    settings: Settings, store: Store, files: ExportDir, *, since: dt.datetime | None, now: dt.datetime
) -> dict[str, Any]:
    engine = store.engine
    # The audit horizon first: everything else read afterwards is at least as new as the audit
    # rows exported, so no exported certificate or CRL lacks the audit record that made it.
    horizon = records.audit_horizon(engine)
    counts: dict[str, int] = {}
    counts["issuers"] = _issuers(store, files)
    counts["certificates"], counts["revocations"] = _certificates(store, files, since)
    counts["crls"] = _crls(settings, store, files, since)
    audit = _audit(store, files, since, horizon)
    counts["audit"] = audit["rows"]
    counts["problem_reports"] = _reports(store, files, since)
    counts["ocsp_access_lines"], access_files = _access_logs(settings, files, since)
    summary: dict[str, Any] = {
        "format": FORMAT,
        "created_at": _t(now),
        "since": _t(since),
        "until": _t(now),
        "shirushi": __version__,
        "counts": counts,
        "audit": audit,
        "ocsp_access_logs": access_files,
        "manifest": MANIFEST,
    }
    files.write(EXPORT_JSON, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return summary


def _issuers(store: Store, files: ExportDir) -> int:
    rows = records.issuers(store.engine)
    with files.open("issuers.jsonl") as fh:
        for r in rows:
            name = r.name if safe_name(r.name) else r.id
            der = bytes(r.certificate)
            files.write(f"ca/{name}.der", der)
            files.write(f"ca/{name}.pem", pem(der, "CERTIFICATE"))
            fh.write(
                _jsonl(
                    {
                        "id": r.id,
                        "name": r.name,
                        "subject": r.subject,
                        "outside": bool(r.outside),
                        "created_at": _t(r.created_at),
                        "der": f"ca/{name}.der",
                    }
                )
            )
    return len(rows)


def _certificates(store: Store, files: ExportDir, since: dt.datetime | None) -> tuple[int, int]:
    certificates = revocations = 0
    with files.open("certificates.jsonl") as certs, files.open("revocations.jsonl") as revoked:
        for r in records.certificates(store.engine, since):
            issuer = r.issuer_name if safe_name(r.issuer_name) else r.issuer_id
            serial = serial_text(serial_value(r.serial))
            der = bytes(r.der)
            where = None
            if der:  # an outside CA's serial known only from its index file has no DER
                where = f"certificates/{issuer}/{serial[:2]}/{serial}"
                files.write(where + ".der", der)
                files.write(where + ".pem", pem(der, "CERTIFICATE"))
            revoked_at = _t(r.revoked_at)
            certs.write(
                _jsonl(
                    {
                        "issuer": r.issuer_name,
                        "serial": serial,
                        "kind": r.kind,
                        "subject": r.subject,
                        "dns_names": r.dns_names.split(),
                        "not_before": _t(r.not_before),
                        "not_after": _t(r.not_after),
                        "created_at": _t(r.created_at),
                        "spki_sha256": r.spki_sha256,
                        "crl_shard": int(r.crl_shard),
                        "status": "revoked" if revoked_at else "good",
                        "der": None if where is None else where + ".der",
                    }
                )
            )
            certificates += 1
            if revoked_at is not None:
                revoked.write(
                    _jsonl(
                        {
                            "issuer": r.issuer_name,
                            "serial": serial,
                            "revoked_at": revoked_at,
                            "reason": r.revocation_reason,
                        }
                    )
                )
                revocations += 1
    return certificates, revocations


def _crls(settings: Settings, store: Store, files: ExportDir, since: dt.datetime | None) -> int:
    """Every archived CRL (the store's CRL archive, `crl/archive.py`; a file left by an older
    version under data_dir/archive/crl/NAME/NUMBER.crl that is not imported yet) with its record."""
    from shirushi.crl.archive import CrlArchive
    from shirushi.crl.shards import crl_name
    from shirushi.store.crl_archive import ArchiveIndex

    archive = CrlArchive(ArchiveIndex(store.engine))
    legacy_root = settings.layout.crl_archive("x").parent
    archived: dict[tuple[str, int], set[int]] = {}
    count = 0
    with files.open("crls.jsonl") as fh:
        for r in records.crl_records(store.engine):
            if since is not None and aware(r.this_update) < since:  # type: ignore[operator]
                continue
            name, shard, number = crl_name(r.issuer_name, int(r.shard)), int(r.shard), int(r.number)
            scope = (str(r.issuer_id), shard)
            if scope not in archived:
                archived[scope] = set(archive.numbers(*scope))
            der = None
            if number in archived[scope]:
                der = archive.load(str(r.issuer_id), shard, number)
            elif (legacy_root / name / f"{number}.crl").is_file():
                der = (legacy_root / name / f"{number}.crl").read_bytes()
            where = None
            if der is not None and safe_name(name):
                where = f"crls/{name}/{number}.crl"
                files.write(where, der)
            fh.write(
                _jsonl(
                    {
                        "issuer": r.issuer_name,
                        "shard": int(r.shard),
                        "number": int(r.number),
                        "this_update": _t(r.this_update),
                        "next_update": _t(r.next_update),
                        "scheduled": bool(r.scheduled),
                        "entries": r.entries,
                        "sha256": r.sha256,
                        "published_at": _t(r.published_at),
                        "file": where,
                    }
                )
            )
            count += 1
    return count


def _audit(store: Store, files: ExportDir, since: dt.datetime | None, horizon: int) -> dict[str, Any]:
    first = 1 if since is None else records.first_audit_id(store.engine, since)
    if first is None or first > horizon:
        first = horizon + 1  # nothing since then: the chain up to the horizon still goes in
    start = head = chain.GENESIS
    rows = 0
    last_id = 0
    with files.open("audit.jsonl") as fh:
        for fields, link in chain.links(row.fields() for row in records.audit_rows(store.engine, through=horizon)):
            if fields["id"] < first:
                start = link
            else:
                fh.write((chain.line(fields, link) + "\n").encode())
                rows += 1
            head, last_id = link, fields["id"]
    return {
        "rows": rows,
        "first_id": first if rows else None,
        "through_id": last_id,
        "chain_start": start.hex(),
        "head": head.hex(),
        "chain": "SHA-256(previous || canonical row), from 32 zero bytes, over every audit row in id order",
    }


def _reports(store: Store, files: ExportDir, since: dt.datetime | None) -> int:
    rows = records.problem_reports(store.engine, since)
    with files.open("problem-reports.jsonl") as fh:
        for r in rows:
            fh.write(
                _jsonl(
                    {
                        "id": int(r.id),
                        "received_at": _t(r.received_at),
                        "deadline": _t(r.deadline),
                        "serial": serial_text(serial_value(r.serial)),
                        "reason": r.reason,
                        "contact": r.contact,
                        "detail": r.detail,
                        "client": r.client,
                        "closed_at": _t(r.closed_at),
                        "action": r.action,
                        "note": r.note,
                    }
                )
            )
    return len(rows)


def access_log_files(settings: Settings) -> list[Path]:
    """The OCSP access log (`ocsp.access_log`) and its rotated files beside it (logrotate's
    NAME.1, NAME.2.gz, NAME-20250102...), oldest first; none when the log is off."""
    if not settings.ocsp.access_log:
        return []
    path = Path(settings.ocsp.access_log).expanduser()
    if not path.parent.is_dir():
        return []
    found = [
        p
        for p in path.parent.iterdir()
        if p.is_file() and (p.name == path.name or p.name.startswith((path.name + ".", path.name + "-")))
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name != path.name, p.name))


def _lines(path: Path) -> Iterator[bytes]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    fh: IO[bytes]
    with opener(path, "rb") as fh:
        yield from fh


def _access_logs(settings: Settings, files: ExportDir, since: dt.datetime | None) -> tuple[int, list[str]]:
    # Lines start with the time as "2025-01-02T03:04:05Z", which orders as text.
    cutoff = None if since is None else f"{since.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}".encode()
    total = 0
    written: list[str] = []
    for source in access_log_files(settings):
        name = source.name.removesuffix(".gz")
        if not safe_name(name) or f"ocsp-access/{name}" in files.sums:
            continue
        try:
            kept = 0
            with files.open(f"ocsp-access/{name}") as fh:
                for raw in _lines(source):
                    if cutoff is None or raw[:20] >= cutoff:
                        fh.write(raw)
                        kept += 1
        except (OSError, EOFError) as exc:
            raise InputError(f"cannot read OCSP access log {source}: {exc}") from None
        total += kept
        written.append(f"ocsp-access/{name}")
    return total, written
