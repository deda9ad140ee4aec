"""`shirushi archive export --out DIR [--since DATE]` and `shirushi archive verify DIR [--database]`:
the records for auditors (policy 5.5) and their check. Opens the database (never creates it);
writes DIR; prints a summary to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from shirushi.config import Settings
from shirushi.errors import InputError, IntegrityError


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """A day (YYYY-MM-DD, from 00:00 UTC) or an ISO 8601 time with a zone, not in the future."""
    try:
        if len(text) == 10:
            value = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        else:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r} is not a date: YYYY-MM-DD or ISO 8601 with a zone") from None
    if value.tzinfo is None:
        raise InputError(f"--since {text!r} has no time zone; add Z for UTC")
    if value > now:
        raise InputError(f"--since {text!r} is in the future")
    return value.astimezone(dt.UTC)


def cmd_archive(settings: Settings, args: argparse.Namespace) -> int:
    if args.archive_command == "verify":
        return _verify(settings, args)
    from shirushi.archive.export import export
    from shirushi.clock import SystemClock
    from shirushi.store import Store

    now = SystemClock().now()
    since = None if args.since is None else parse_since(args.since, now)
    out = Path(args.out)
    store = Store.open(settings.database_url, create=False)
    try:
        summary = export(settings, store, out, since=since, now=now)
    finally:
        store.close()
    counts = ", ".join(f"{key} {value}" for key, value in summary["counts"].items())
    print(f"exported to {out}: {counts}")
    print(f"audit chain head {summary['audit']['head']} (through audit id {summary['audit']['through_id']})")
    print(f"check it with: (cd {out} && sha256sum -c --quiet MANIFEST.sha256) && shirushi archive verify {out}")
    return 0


def _verify(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.archive.verify import verify
    from shirushi.store import Store

    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory")
    store = Store.open(settings.database_url, create=False) if args.database else None
    try:
        summary, problems = verify(directory, store)
    finally:
        if store is not None:
            store.close()
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        raise IntegrityError(f"{directory} does not verify: {problems[0]}", problems=problems)
    audit = summary["audit"]
    against = " and the database" if store is not None else ""
    print(f"{directory}: OK{against} ({audit['rows']} audit records, chain head {audit['head']})")
    return 0
