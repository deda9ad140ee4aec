"""Durable file writes: readers see the old content or the new, never a part, even after a crash.

The data goes to a hidden temporary file in the target's own directory (so the rename or link
that gives it its name stays on one filesystem, hence atomic), is fsynced, gets its final name,
and the directory is fsynced so the new name survives a crash. Does file I/O.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` (file mode `mode`), creating its directory when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = write_temporary(data, path.parent, path.name, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def write_temporary(data: bytes, directory: Path, name: str, mode: int) -> Path:
    """Write `data` to a new hidden file next to its final `name`, fsynced; return its path."""
    temporary = directory / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return temporary


def fsync_directory(directory: Path) -> None:
    """Make the names created or replaced in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
