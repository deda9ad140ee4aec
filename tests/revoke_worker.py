"""Test helper run as its own process: revoke the given serials from many threads at once.

    python tests/revoke_worker.py THREADS SERIAL_HEX...

Settings come from the SHIRUSHI_* environment. Prints one line per finished revocation
(`revoked HEX` or `pending HEX`), flushed, so a test can kill it part-way.
"""

from __future__ import annotations

import concurrent.futures
import sys

from shirushi import config
from shirushi.backend import Backend


def main() -> int:
    threads = int(sys.argv[1])
    serials = [int(s, 16) for s in sys.argv[2:]]
    backend = Backend(config.load(None))

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
