"""`python -m shirushi.responder [--config FILE]`: run only the OCSP responder.

Prints `listening on http://HOST:PORT/` on stdout once every worker accepts connections; errors
are one line on stderr with a non-zero status.
"""

from __future__ import annotations

import argparse
import logging
import sys

from shirushi import config
from shirushi.errors import ShirushiError
from shirushi.responder import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shirushi.responder", description=__doc__)
    parser.add_argument("--config", help="TOML configuration file (default: $SHIRUSHI_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d] %(message)s")

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on http://{shown}:{port}/", flush=True)

    try:
        settings = config.load(args.config)
        return run(settings, ready=ready)
    except ShirushiError as exc:
        print(f"shirushi responder: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
