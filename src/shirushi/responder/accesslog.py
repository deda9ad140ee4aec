"""The responder's optional access log (CP 5.5.1: OCSP access logs are archived). Does file I/O.

Hot-path rule 1 (docs/standards.md) forbids logging per request in the ordinary sense, so a request
only appends one small tuple to a list in memory (`AccessLog.record`, a fraction of a microsecond);
the lines are formatted and written in batches: every second, when about 64 KiB are buffered,
and when the worker stops.

One line per answered request, fields separated by a tab (shown as two spaces), ending in a
newline:

    2025-01-02T03:04:05Z  192.0.2.7  GET  0123ABCD  sha1  successful  200  1693

time (UTC, whole seconds, as of the worker's 0.25 s clock tick), client IP address, method
(`GET`, `HEAD`, `POST`, or `-` for any other and for HTTP-level refusals), the CertID serial in
upper-case hex (`-` when the request did not decode), its hash algorithm (`sha1`, `sha256` or
`-`), the OCSP outcome (`successful` for a presigned answer, whatever its certificate status,
which the responder does not parse; `malformedRequest`, `unauthorized`, `tryLater`,
`internalError`; `-` for an HTTP-level refusal), the HTTP status, and the bytes sent (header and
body). Every field is made by the responder from parsed values, never copied from client bytes,
so a client cannot forge a line or a field.

Several worker processes append to one file: each batch is ONE `os.write` on a descriptor opened
with O_APPEND, so batches land whole and lines never interleave (on local Linux file systems a
write to a regular file is applied under the inode lock; NFS gives no such promise). Rotation: the
path is `stat`ed before each write and the file reopened when it was moved away or replaced
(logrotate's `create` and plain `mv` both work), and SIGHUP reopens it at once. A write error
never reaches a client: the batch is kept (up to `MAX_PENDING` bytes, then dropped and counted)
and retried on the next flush, and a warning is logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Final

from shirushi.config import Settings
from shirushi.errors import ServiceError
from shirushi.responder.request import INTERNAL_ERROR, MALFORMED_REQUEST, TRY_LATER, UNAUTHORIZED

log = logging.getLogger("shirushi.responder")

FLUSH_INTERVAL: Final = 1.0  # seconds between timed flushes
FLUSH_LINES: Final = 640  # a flush as soon as this many lines wait: about 64 KiB at ~100 bytes a line
MAX_PENDING: Final = 4 << 20  # bytes kept for a retry after a failed write, then dropped
WARN_EVERY: Final = 60.0  # seconds between two warnings about write errors
_FLAGS: Final = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_MODE: Final = 0o640  # the lines hold client addresses: not for every local user

# The middle fields of a line, prebuilt: "METHOD\tSERIAL\tALG" (the route's tag) and
# "OUTCOME\tSTATUS". See routing.Route.
NO_CERT_ID: Final = b"-\t-"
SUCCESSFUL: Final = b"successful\t200"
NOT_MODIFIED: Final = b"successful\t304"
OCSP_ERRORS: Final = {
    MALFORMED_REQUEST: b"malformedRequest\t200",
    INTERNAL_ERROR: b"internalError\t200",
    TRY_LATER: b"tryLater\t200",
    UNAUTHORIZED: b"unauthorized\t200",
}
REFUSED_TAG: Final = b"-\t" + NO_CERT_ID
_REFUSALS: dict[int, bytes] = {}


def refusal(code: int) -> bytes:
    """The outcome field of an HTTP-level refusal (400, 405, 408, 413, 414, 431)."""
    outcome = _REFUSALS.get(code)
    if outcome is None:
        outcome = _REFUSALS[code] = b"-\t%d" % code
    return outcome


def cert_id_fields(serial: int, alg: str) -> bytes:
    """`SERIAL\tALG`: the serial as its DER content octets in hex, as `openssl x509 -serial` prints."""
    return b"%s\t%s" % (serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex().upper().encode(), alg.encode())


def access_log_path(settings: Settings) -> Path | None:
    """`ocsp.access_log`, or None when the access log is off."""
    return Path(settings.ocsp.access_log).expanduser() if settings.ocsp.access_log else None


def check_writable(path: Path) -> None:
    """Open (creating) and close the file; ServiceError naming it when that fails.

    The supervisor calls this before forking, so that a typo in the path is one line at start
    rather than workers that fail one after the other.
    """
    try:
        os.close(os.open(path, _FLAGS, _MODE))
    except OSError as exc:
        raise ServiceError(f"cannot open ocsp.access_log {path}: {exc.strerror or exc}") from None


def _stamp(now: int) -> bytes:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)).encode()


class AccessLog:
    """One worker's buffer and descriptor. Used from the event loop's thread only."""

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.loop = loop
        # (time, client, "METHOD\tSERIAL\tALG", "OUTCOME\tSTATUS", bytes sent) per request.
        self.entries: list[tuple[bytes, bytes, bytes, bytes, int]] = []
        self.pending = b""  # formatted lines a failed write left behind
        self.stamp = b""
        self.now = 0
        self.fd = -1
        self.ident = (0, 0)  # (st_dev, st_ino) of the open file
        self.lines = 0  # lines written
        self.errors = 0  # failed writes and reopens
        self.lost = 0  # lines dropped after failures
        self.last_warning = -WARN_EVERY
        self.timer: asyncio.TimerHandle | None = None
        self.set_time(int(time.time()))

    def open(self) -> None:
        """Open the file (OSError when that fails) and start the timed flushes."""
        self._reopen()
        self.timer = self.loop.call_later(FLUSH_INTERVAL, self._tick)

    def set_time(self, now: int) -> None:
        """The worker's clock moved to a new second."""
        if now != self.now:
            self.now = now
            self.stamp = _stamp(now)

    def record(self, client: bytes, tag: bytes, outcome: bytes, size: int) -> None:
        """One answered request: an append, and a flush once about 64 KiB wait."""
        entries = self.entries
        entries.append((self.stamp, client, tag, outcome, size))
        if len(entries) >= FLUSH_LINES:
            self.flush()

    def _tick(self) -> None:
        self.flush()
        self.timer = self.loop.call_later(FLUSH_INTERVAL, self._tick)

    def flush(self) -> None:
        """Write what is buffered with one os.write; on failure keep it for the next flush."""
        entries = self.entries
        if entries:
            data = b"".join([b"%s\t%s\t%s\t%s\t%d\n" % entry for entry in entries])
            if self.pending:
                data = self.pending + data
            entries.clear()
        elif self.pending:
            data = self.pending
        else:
            return
        try:
            self._follow_rotation()
            written = os.write(self.fd, data)
        except OSError as exc:
            self._failed(exc, data)
            return
        # A short write happens only when the disk fills up (or the file size limit is hit); the
        # rest waits for the next flush. That one line may then be split by another worker's batch.
        self.pending = data[written:]
        self.lines += data.count(b"\n", 0, written)

    def _follow_rotation(self) -> None:
        """Reopen when the path no longer names the open file (moved away, or replaced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reopen()
            return
        if (st.st_dev, st.st_ino) != self.ident or self.fd < 0:
            self._reopen()

    def _reopen(self) -> None:
        """Open the path (creating it) and only then close the old descriptor: OSError keeps it."""
        fd = os.open(self.path, _FLAGS, _MODE)
        st = os.fstat(fd)
        old, self.fd, self.ident = self.fd, fd, (st.st_dev, st.st_ino)
        if old >= 0:
            os.close(old)

    def reopen(self) -> None:
        """SIGHUP: write what is buffered to the old file, then start a new one at the path."""
        self.flush()
        try:
            self._reopen()
        except OSError as exc:
            self._failed(exc, self.pending)

    def _failed(self, exc: OSError, data: bytes) -> None:
        self.errors += 1
        if len(data) > MAX_PENDING:
            self.lost += data.count(b"\n")
            data = b""
        self.pending = data
        mono = time.monotonic()
        if mono - self.last_warning >= WARN_EVERY:
            self.last_warning = mono
            log.warning(
                "access log %s: %s (%d failed writes, %d lines dropped so far; answering goes on)",
                self.path,
                exc.strerror or exc,
                self.errors,
                self.lost,
            )

    def close(self) -> None:
        """Worker shutdown: stop the timer, write the rest, close the file."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.flush()
        if self.pending:
            self.lost += self.pending.count(b"\n")
            log.warning("access log %s: %d lines could not be written", self.path, self.lost)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
