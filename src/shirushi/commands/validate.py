"""`shirushi validate NAME --method dns|website` and `shirushi validate --check ID`: domain
validation for the RA doors (validation/requests.py, BR 3.2.2.4.7 / 3.2.2.4.18), so that
`shirushi issue` and the API can pass the domain gate when `validation.enforce` lists them.
Opens the database (never creates it); network I/O for the check; prints to stdout.
"""

from __future__ import annotations

import argparse

from shirushi.config import Settings
from shirushi.errors import InputError


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.clock import SystemClock
    from shirushi.store import Store
    from shirushi.validation import requests
    from shirushi.validation.dns import Resolver

    if bool(args.check) == bool(args.name):
        raise InputError("give either NAME (with --method) to start a validation or --check ID to check one")
    now = SystemClock().now()
    store = Store.open(settings.database_url, create=False)
    try:
        if args.name:
            request = requests.start(store.acme, args.name, args.method, now)
            print(f"id {request.id}")
            print(f"value {request.value}")
            print(f"{request.where(settings.validation.http_port)}; then run: shirushi validate --check {request.id}")
            print("the value is good for one check within 30 days (policy 3.2.7)")
            return 0
        resolver = Resolver(settings.validation.resolver)
        attempt = requests.check(settings, store.acme, store.validations, resolver, args.check, now)
        print(f"{attempt.name}: validated by BR {attempt.method}; usable for issuance for 30 days")
        return 0
    finally:
        store.close()
