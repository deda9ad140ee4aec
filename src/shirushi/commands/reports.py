"""`shirushi reports [--open]` and `shirushi reports close ID --action revoked|rejected --note TEXT`:
the operator's side of certificate problem reports (BR 4.9.3, 4.9.5).

The list shows each report with the time left to its 24 h deadline, soonest first. Closing
records the action taken and the note in the report and the audit log. Opens the database
(never creates it); prints to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt

from shirushi.config import Settings
from shirushi.errors import InputError


def _time(t: dt.datetime) -> str:
    return f"{t.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def cmd_reports(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi import reports
    from shirushi.clock import SystemClock
    from shirushi.serials import serial_text
    from shirushi.store import Store

    clock = SystemClock()
    store = Store.open(settings.database_url, create=False)
    try:
        if args.action == "close":
            try:
                report_id = int(args.id)
            except ValueError:
                raise InputError(f"report id {args.id!r} is not a number") from None
            closed = reports.close(store, clock, report_id, action=args.close_action, note=args.note)
            print(f"report {closed.id} closed: {closed.action} ({reports.time_left(closed, clock.now())})")
            return 0
        now = clock.now()
        row = "{:>6}  {:<8}  {:<20}  {:<20}  {:<16}  {:<40}  {}"
        print(row.format("ID", "STATUS", "RECEIVED", "DEADLINE", "LEFT", "SERIAL", "REASON"))
        for r in store.reports.listing(open_only=args.open):
            state = "open" if r.open else r.action or "closed"
            print(
                row.format(
                    r.id,
                    state,
                    _time(r.received_at),
                    _time(r.deadline),
                    reports.time_left(r, now),
                    serial_text(r.serial),
                    _one_line(r.reason, 60),
                )
            )
    finally:
        store.close()
    return 0
