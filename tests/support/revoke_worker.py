"""Test helper run as its own process: revoke the given serials from many threads at once.

    python tests/support/revoke_worker.py THREADS SERIAL_HEX...
    python tests/support/revoke_worker.py bulk SERIAL_HEX...     (one bulk revocation of them all)

Settings come from the SHIRUSHI_* environment. Prints one line per finished revocation
(`revoked HEX` or `pending HEX`), flushed, so a test can kill it part-way.
"""

from __future__ import annotations

import concurrent.futures
import sys

from shirushi import config
from shirushi.backend import Backend


def main() -> int:
    serials = [int(s, 16) for s in sys.argv[2:]]
    backend = Backend(config.load(None))
    if sys.argv[1] == "bulk":
        result = backend.bulk_revoker.revoke(serials, "superseded", requested_by="test")
        print(f"revoked {len(result.revoked)} pending {bool(result.pending)}", flush=True)
        backend.close()
        return 0
    threads = int(sys.argv[1])

    def one(serial: int) -> str:
        result = backend.revoker.revoke(serial, "superseded")
        return f"{'pending' if result.pending else 'revoked'} {serial:x}"

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for line in pool.map(one, serials):
            print(line, flush=True)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
