"""CLI handlers of the long-running commands: serve, staple, demo, responder.

They start servers, loops or child processes; each imports its machinery only when called.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from shirushi.config import Settings
from shirushi.errors import InputError

# Seconds the interpreter may take to exit once `serve` has stopped everything it started.
EXIT_BOUND = 15.0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import faulthandler
    import sys

    from shirushi.serve import serve

    code = serve(settings, args.config)
    # Every server, thread and child is stopped by now (serve logged "stopped"); what is left is
    # the interpreter's own exit (atexit handlers, finalizers). Should that ever hang, a stop
    # must still end: print every thread's stack to the log and exit with status 1.
    faulthandler.dump_traceback_later(EXIT_BOUND, exit=True, file=sys.stderr)
    return code


def cmd_staple(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi import staple
    from shirushi.clock import SystemClock
    from shirushi.config_values import parse_duration
    from shirushi.errors import ServiceError

    clock = SystemClock()
    if bool(args.cert) == bool(args.dir):
        raise InputError("give either --cert FILE --out FILE, or --dir DIR")
    if args.cert and not args.out:
        raise InputError("--cert needs --out FILE")

    def once() -> int:
        # A leaf without its chain: the local CA's certificates are tried before the AIA URL.
        local = staple.local_ca_issuers(settings)
        if args.dir:
            return staple.staple_dir(Path(args.dir), url=args.url, now=clock.now, say=print, local_issuers=local)
        result = staple.staple_one(
            Path(args.cert),
            Path(args.out),
            issuer_path=Path(args.issuer) if args.issuer else None,
            url=args.url,
            now=clock.now,
            local_issuers=local,
        )
        print(f"{result.path}: {result.status}, nextUpdate {result.next_update:%Y-%m-%dT%H:%M:%SZ}")
        return 0

    if not args.every:
        failures = once()
        if failures == 0 and args.then:
            staple.run_hook(args.then, print)
        return 1 if failures else 0
    try:
        every = parse_duration(args.every)
    except ValueError as exc:
        raise InputError(str(exc)) from None

    def round_() -> int:
        # A refresh loop outlives a responder outage: report, retry sooner, never exit.
        try:
            failures = once()
        except (InputError, ServiceError) as exc:
            print(f"{args.cert}: error: {exc}")
            return 1
        if failures == 0 and args.then:
            staple.run_hook(args.then, print)
        return failures

    staple.refresh_forever(round_, every, print)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.demo import demo

    return demo(settings, args.config, serve_after=not args.no_serve)


def cmd_responder(settings: Settings, args: argparse.Namespace) -> int:
    from shirushi.lifecycle import die_with_parent
    from shirushi.logs import configure
    from shirushi.responder import Options, run

    configure(settings.log.format, settings.log.level)
    if args.exit_with_parent is not None:
        # A clean stop (SIGTERM) when the starting process dies, even by SIGKILL; with its PID
        # given, also when it died before this line ran.
        die_with_parent(signal.SIGTERM, args.exit_with_parent or os.getppid())
    return run(settings, options=Options(exit_with_parent=args.exit_with_parent is not None))
