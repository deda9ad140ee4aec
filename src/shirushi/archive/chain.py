"""The audit log's hash chain (policy 5.4.4, 5.5: the audit log is append-only and the exported
copy must show it). Pure: bytes in, bytes out.

Each audit row has a canonical byte form (`canonical`); the chain runs over the rows in id order,
each link being SHA-256(previous link || canonical row), starting from 32 zero bytes. A change,
removal or insertion of any row changes every later link, so an export that records the link of
every row (and the last one, the head) lets a later reader check both the exported lines and the
database against it, and two exports that include the same rows agree on the links of those rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

GENESIS = bytes(32)
# The fields of an audit row, as the export writes them (the JSON Lines file adds "chain").
FIELDS = ("id", "at", "action", "issuer_id", "serial", "detail")


@dataclasses.dataclass(frozen=True)
class AuditRow:
    """One row of the audit table, as stored: `detail` is the stored JSON text, unparsed, so that
    the canonical bytes never depend on re-serialising it."""

    id: int
    at: dt.datetime
    action: str
    issuer_id: str | None
    serial: str | None
    detail: str

    def fields(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": time_text(self.at),
            "action": self.action,
            "issuer_id": self.issuer_id,
            "serial": self.serial,
            "detail": self.detail,
        }


def time_text(t: dt.datetime) -> str:
    """UTC with microseconds, the precision both databases keep."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(value: dict[str, Any]) -> str:
    """The one JSON form used for hashing and for the exported lines: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(fields: dict[str, Any]) -> bytes:
    """The bytes a row contributes to the chain: its six fields in `dumps` form, UTF-8."""
    return dumps({name: fields[name] for name in FIELDS}).encode()


def link(previous: bytes, fields: dict[str, Any]) -> bytes:
    return hashlib.sha256(previous + canonical(fields)).digest()


def links(rows: Iterable[dict[str, Any]], start: bytes = GENESIS) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Each row's fields with its link, the chain started at `start`."""
    current = start
    for fields in rows:
        current = link(current, fields)
        yield fields, current


def line(fields: dict[str, Any], chain: bytes) -> str:
    """One line of the exported `audit.jsonl` (without the newline)."""
    return dumps({**fields, "chain": chain.hex()})


def parse_line(text: str) -> tuple[dict[str, Any], bytes]:
    """(fields, recorded link) of an exported line; ValueError when it is not one."""
    value = json.loads(text)
    if not isinstance(value, dict) or set(value) != {*FIELDS, "chain"}:
        raise ValueError("not an audit line: wrong fields")
    recorded = bytes.fromhex(value.pop("chain"))
    if len(recorded) != 32 or not isinstance(value["id"], int) or not isinstance(value["detail"], str):
        raise ValueError("not an audit line: bad id, detail or chain")
    return value, recorded
