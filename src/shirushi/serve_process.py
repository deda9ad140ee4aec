"""`serve` as one process: the stop signal it records (SIGTERM/SIGINT) and the lock that keeps
one `serve` per data directory. Installs signal handlers; takes a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from shirushi.errors import StateError
from shirushi.layout import Layout

log = logging.getLogger("shirushi.serve")


class StopSignal:
    """SIGTERM/SIGINT: the stop token for jobs in threads, and when it came (to report the stop).

    Installed with `signal.signal` for the steps before the event loop runs and after it ends,
    and with `loop.add_signal_handler` while it runs. It only records: printing from a signal
    handler could re-enter a write in progress.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.token = threading.Event()
        self.at: float | None = None
        self.name = ""

    def __call__(self, signum: int, frame: object = None) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self.name = signal.Signals(signum).name
        self.token.set()

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self)

    def report(self) -> None:
        if self.at is not None:
            log.info("stopped", extra={"signal": self.name, "seconds": round(time.monotonic() - self.at, 2)})


@contextlib.contextmanager
def serve_lock(data_dir: Path) -> Iterator[None]:
    """One `serve` per data directory; the lock dies with the process, even on SIGKILL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(Layout(data_dir).serve_lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"another `shirushi serve` is running on {data_dir}") from None
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield
