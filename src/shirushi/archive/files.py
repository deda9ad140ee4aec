"""The export directory: files written once, hashed as they are written, the SHA-256 manifest.
Does file I/O.

`MANIFEST.sha256` is in the format `sha256sum -c` reads ("HEX  PATH", paths relative to the
directory), sorted by path, and written last, atomically: an export without it is incomplete.
A failed export removes what it wrote, so nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from shirushi.errors import InputError

MANIFEST = "MANIFEST.sha256"
EXPORT_JSON = "export.json"


def safe_name(name: str) -> bool:
    """A path component the manifest can name as is (sha256sum escapes backslashes and newlines)."""
    return bool(name) and name not in (".", "..") and not any(ch in name for ch in "/\\\n\r\0")


def prepare(out: Path) -> bool:
    """Check `out` can take an export: absent (created here) or an empty, writable directory.
    Returns True when it was created here."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    if out.is_dir():
        try:
            if any(out.iterdir()):
                raise InputError(f"--out {out} is not empty; give a new or empty directory")
        except PermissionError:
            raise InputError(f"--out {out} cannot be read") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise InputError(f"--out {out} is not writable")
        return False
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be created: {exc.strerror or exc}") from None
    return True


def clear(out: Path, created: bool) -> None:
    """Remove what a failed export wrote (the directory was empty, or made, when it began)."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


class _Hashing:
    """A binary file that hashes what goes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.sha.update(data)


class ExportDir:
    """Files of one export, each created once (never overwritten) and recorded with its hash."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sums: dict[str, str] = {}
        self._made: set[str] = set()  # directories made so far (one mkdir each, not one a file)

    def _path(self, relative: str) -> str:
        parts = relative.split("/")
        if not all(safe_name(p) for p in parts):
            raise InputError(f"cannot export a file named {relative!r}")
        parent = "/".join(parts[:-1])
        if parent and parent not in self._made:
            (self.root / parent).mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        return os.path.join(self.root, relative)

    @contextlib.contextmanager
    def open(self, relative: str) -> Iterator[_Hashing]:
        with open(self._path(relative), "xb") as fh:
            hashing = _Hashing(fh)
            yield hashing
        self.sums[relative] = hashing.sha.hexdigest()

    def write(self, relative: str, data: bytes) -> None:
        # One file per certificate: plain system calls, no buffered file object.
        fd = os.open(self._path(relative), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.sums[relative] = hashlib.sha256(data).hexdigest()

    def finish(self) -> None:
        """Make everything durable, then write the manifest (last, atomically)."""
        os.sync()
        text = "".join(f"{digest}  {name}\n" for name, digest in sorted(self.sums.items()))
        temporary = self.root / f".{MANIFEST}.tmp"
        with open(temporary, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(temporary, self.root / MANIFEST)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
