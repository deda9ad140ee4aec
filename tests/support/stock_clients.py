"""Test helpers for the stock-client tests: a `serve` with an access log, and reading that log.

The access log (one tab-separated line per answered request: time, client, method, serial, CertID
hash, outcome, HTTP status, bytes) is how the tests see that a client really asked the responder,
and how: GET or POST, SHA-1 or SHA-256.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from support.serving import Site

ACCESS_LOG_DEADLINE = 10.0  # seconds; the responder writes its access log about every second


@contextlib.contextmanager
def serving_site(root: Path) -> Iterator[Site]:
    """`shirushi init`, then `shirushi serve` with its OCSP access log in `root/access.log`."""
    site = Site(root, SHIRUSHI_OCSP__ACCESS_LOG=str(root / "access.log"))
    result = site.cli("init")
    assert result.returncode == 0, result.stderr
    with site.serving():
        yield site


def asked(site: Site, serial: str, count: int) -> list[tuple[str, str]]:
    """(method, CertID hash) of each successful request the responder logged for `serial`, once
    there are at least `count` (a bounded wait: the log is written in batches)."""
    log = site.root / "access.log"
    number = int(serial, 16)
    deadline = time.monotonic() + ACCESS_LOG_DEADLINE
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        fields = [line.split("\t") for line in lines]
        # The log writes whole octets (a leading 0 where the hex has an odd length).
        mine = [(f[2], f[4]) for f in fields if len(f) == 8 and f[5] == "successful" and int(f[3], 16) == number]
        if len(mine) >= count:
            return mine
        assert time.monotonic() < deadline, f"{len(mine)} of {count} requests for {serial} logged:\n" + "\n".join(lines)
        time.sleep(0.2)


def revoke(site: Site, serial: str, reason: str) -> None:
    result = site.cli("revoke", serial, "--reason", reason)
    assert result.returncode == 0, result.stdout + result.stderr
