"""Process life: stop tokens for long jobs, and child processes that die with their parent.

A long job (a full presign, a refill) takes a stop token, a `threading.Event` that `serve` sets on
SIGTERM/SIGINT, and checks it between batches with `check_stop`: work already written stays,
work not yet done is left for the next run (the outbox, or the cache's completion marker that
stays unset). Child processes ask Linux to signal them when their parent dies (even by
SIGKILL) with `die_with_parent`, so that no redis-server, responder or signing worker outlives
the `serve` that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """A long job saw its stop token set and returned before finishing; nothing is lost."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise Stopped when `stop` is set (call between batches of a long job)."""
    if stop is not None and stop.is_set():
        raise Stopped


def die_with_parent(signum: int, parent: int) -> None:
    """Ask Linux to send `signum` to this process when `parent` dies, even by SIGKILL.

    Linux sends it when the *thread* that forked this process ends, not the whole parent: fork
    from a thread that lives as long as the child (the main thread, or the thread that also
    waits for the child). If `parent` died before the request took effect (this process was
    already handed to another reaper), `signum` is sent now. Not Linux: nothing is done, and the
    parent's own stop remains the only one.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)


def exec_with_parent_death(signum: int) -> Callable[[], None]:
    """A `subprocess.Popen(preexec_fn=...)` that ties the child to the calling process.

    Only for a caller with no other threads (preexec_fn runs between fork and exec, where a lock
    held by another thread would never be released); `serve` starts its redis-server that way.
    The setting survives exec (it is cleared only for set-user-ID or capability binaries).
    """
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(signum, parent)

    return preexec


def leave_stop_to_parent() -> None:
    """In a forked worker: ignore SIGTERM and SIGINT; the parent decides the stop.

    A Ctrl-C at the terminal reaches the whole process group, and systemd's default
    `KillMode=control-group` sends SIGTERM to every process of the unit: the parent then stops
    its workers between batches, instead of finding them dead. A fork would otherwise also keep
    the parent's Python-level handlers, which only set the parent's stop flag. The worker still
    dies with its parent (`die_with_parent`) and by SIGKILL.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_resource_tracker() -> None:
    """Stop and reap this process's multiprocessing resource tracker, if one was started.

    A spawned process pool (the lint workers) starts a tracker process that only notices its
    parent is gone when its pipe closes, a moment after the parent has exited; a `serve` that
    says it stopped must have no child left. `_stop` is the standard library's own way to end it
    (closes the pipe, waits for the process); a later pool would start a new one.
    """
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None:
        stop()
