"""What the operator hands the CLI: files (size-bounded), serials, times, keys.

Reads files or stdin (`read_file`); the parsers are pure. Each refusal is an InputError.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

from shirushi.clock import whole_seconds
from shirushi.errors import InputError


def read_file(path: str, what: str, limit: int = 1 << 20) -> bytes:
    """Read at most `limit` bytes (a device or a huge file is refused, not swallowed)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} is larger than {limit} bytes")
    return data


def parse_serial(text: str) -> int:
    """A serial as `openssl x509 -serial` prints it (hex; colons and 0x tolerated)."""
    cleaned = text.strip().lower().removeprefix("serial=").removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InputError(f"serial {text!r} is not hexadecimal") from None
    if value <= 0 or value.bit_length() > 160:
        raise InputError(f"serial {text!r} is out of range")
    return value


def parse_time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"time {text!r} is not ISO 8601, e.g. 2026-11-29T09:00:00Z") from None
    if value.tzinfo is None:
        raise InputError(f"time {text!r} has no time zone; add Z for UTC")
    return whole_seconds(value)


def public_key_of(data: bytes, load_csr: Callable[[bytes], Any]) -> Any:
    from cryptography import x509

    try:
        if b"CERTIFICATE REQUEST" in data:
            return load_csr(data).public_key()
        return (
            x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
        ).public_key()
    except ValueError:
        raise InputError("expected a PEM/DER certificate or CSR") from None
