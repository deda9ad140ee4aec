"""`shirushi archive verify DIR`: check an export (and, with a store, the database) against itself.
Reads files and, when given one, the store.

The export alone: every file listed in MANIFEST.sha256 has its hash and no other file is there;
export.json's counts match the JSON Lines files; each audit line's chain link follows from the
one before (from `audit.chain_start`) and the last is `audit.head`; each exported CRL's bytes
have the SHA-256 its record gives. With the store: the database's audit rows, chained from the
first one, give the same link for every exported row and the same `chain_start`, and every
`archive-export` record in the log names a head the chain still reaches. A row changed, removed
or slipped in since the export is found at the first link that differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shirushi.archive import chain
from shirushi.archive.files import EXPORT_JSON, MANIFEST
from shirushi.store import Store
from shirushi.store import archive as records

# Files whose line counts export.json records.
COUNTED = {
    "issuers.jsonl": "issuers",
    "certificates.jsonl": "certificates",
    "revocations.jsonl": "revocations",
    "crls.jsonl": "crls",
    "audit.jsonl": "audit",
    "problem-reports.jsonl": "problem_reports",
}
MAX_PROBLEMS = 50


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        for text in fh:
            yield text.rstrip("\n")


def verify(directory: Path, store: Store | None = None) -> tuple[dict[str, Any], list[str]]:
    """(export.json, problems found); no problems means the export (and database) verify."""
    problems: list[str] = []
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return {}, [f"{directory} has no {MANIFEST}: not a complete export"]
    listed = _check_manifest(directory, manifest, problems)
    try:
        summary = json.loads((directory / EXPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, [*problems, f"{EXPORT_JSON} cannot be read: {exc}"]
    if EXPORT_JSON not in listed:
        problems.append(f"{EXPORT_JSON} is not in the manifest")
    for name, key in COUNTED.items():
        path = directory / name
        if path.is_file():
            found = sum(1 for _ in _lines(path))
            if found != summary.get("counts", {}).get(key):
                problems.append(f"{name} has {found} lines; {EXPORT_JSON} says {summary.get('counts', {}).get(key)}")
    exported = _check_audit_file(directory / "audit.jsonl", summary.get("audit", {}), problems)
    _check_crls(directory, problems)
    if store is not None:
        _check_database(store, summary.get("audit", {}), exported, problems)
    return summary, problems[:MAX_PROBLEMS]


def _check_manifest(directory: Path, manifest: Path, problems: list[str]) -> set[str]:
    listed: set[str] = set()
    for number, text in enumerate(_lines(manifest), 1):
        digest, sep, name = text.partition("  ")
        if not sep or len(digest) != 64 or name.startswith("/") or ".." in name.split("/"):
            problems.append(f"{MANIFEST} line {number} is not 'SHA256  PATH'")
            continue
        listed.add(name)
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif _sha256(path) != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    for name in sorted(present - listed - {MANIFEST}):
        problems.append(f"{name}: not in the manifest")
    return listed


def _check_audit_file(path: Path, audit: dict[str, Any], problems: list[str]) -> dict[int, bytes]:
    """Recompute the chain over the exported lines; returns each exported row's link."""
    exported: dict[int, bytes] = {}
    if not path.is_file():
        problems.append("audit.jsonl is missing")
        return exported
    try:
        current = bytes.fromhex(audit["chain_start"])
        head = bytes.fromhex(audit["head"])
    except (KeyError, TypeError, ValueError):
        problems.append(f"{EXPORT_JSON} has no audit chain_start / head")
        return exported
    previous_id = 0
    for number, text in enumerate(_lines(path), 1):
        try:
            fields, recorded = chain.parse_line(text)
        except ValueError as exc:
            problems.append(f"audit.jsonl line {number}: {exc}")
            return exported
        current = chain.link(current, fields)
        if fields["id"] <= previous_id:
            problems.append(f"audit.jsonl line {number}: id {fields['id']} is not after {previous_id}")
        if recorded != current:
            problems.append(f"audit.jsonl line {number} (audit id {fields['id']}): chain link does not follow")
            return exported
        exported[fields["id"]] = current
        previous_id = fields["id"]
    if current != head:
        problems.append(f"audit.jsonl ends at a different chain head than {EXPORT_JSON} records")
    return exported


def _check_crls(directory: Path, problems: list[str]) -> None:
    path = directory / "crls.jsonl"
    if not path.is_file():
        return
    for text in _lines(path):
        try:
            record = json.loads(text)
        except ValueError:
            problems.append("crls.jsonl has a line that is not JSON")
            continue
        if record.get("file") and record.get("sha256"):
            crl = directory / record["file"]
            if crl.is_file() and _sha256(crl) != record["sha256"]:
                problems.append(f"{record['file']}: not the CRL its record names (SHA-256 differs)")


def _check_database(store: Store, audit: dict[str, Any], exported: dict[int, bytes], problems: list[str]) -> None:
    first = audit.get("first_id")
    start = bytes.fromhex(audit.get("chain_start", "00" * 32))
    horizon = records.audit_horizon(store.engine)
    checkpoints = _checkpoints(store, horizon)
    previous = chain.GENESIS
    matched = 0
    for fields, current in chain.links(row.fields() for row in records.audit_rows(store.engine, through=horizon)):
        rid = fields["id"]
        if rid == first and previous != start:
            problems.append(f"the database's audit rows before id {rid} no longer give the export's chain_start")
            return
        want = exported.get(rid)
        if want is not None:
            matched += 1
        if (want is not None and want != current) or (
            want is None and first is not None and first <= rid <= int(audit.get("through_id") or 0)
        ):
            problems.append(f"audit row {rid} in the database differs from the export (changed or inserted since)")
            return
        for export_row, head in checkpoints.pop(rid, []):
            if head != current.hex():
                problems.append(
                    f"audit row {rid} no longer gives the chain head the export logged as audit row {export_row}"
                )
                return
        previous = current
    if matched < len(exported):
        problems.append(f"the database lacks {len(exported) - matched} of the exported audit rows (removed since)")
    for rid in checkpoints:
        problems.append(f"an export logged a chain head at audit id {rid}, which the database no longer has")


def _checkpoints(store: Store, horizon: int) -> dict[int, list[tuple[int, str]]]:
    """The heads earlier exports recorded in the audit log, by the audit id they reach."""
    found: dict[int, list[tuple[int, str]]] = {}
    for row in records.audit_rows(store.engine, through=horizon, action="archive-export"):
        try:
            detail = json.loads(row.detail)
            through, head = int(detail["through_id"]), str(detail["head"])
        except (ValueError, KeyError, TypeError):
            continue
        if through > 0:
            found.setdefault(through, []).append((row.id, head))
    return found
